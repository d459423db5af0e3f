// revox/ops/kernel_bodies/pointwise_conv3d.hpp — the CUDA pointwise (1x1x1) convolution, written
// once over an executor (kernels/executor.hpp): cuBLAS GEMMs for the products, kernel bodies for
// the bias. Plain C++; runs on the GPU through revox/ops/cuda/pointwise_conv3d.cuh and on the
// CPU, in tests, through kernels::EmulatedExecutor. Shapes and semantics are those of
// ops/cpu/pointwise_conv3d.hpp:
//   x (N, Cin, D, H, W), y and dy (N, Cout, D, H, W), weight (Cout, Cin), bias (Cout) or null
//   pointwise_conv3d_forward(exec, x, weight, bias, y)       y_n = W x_n + b       ASSIGNED
//   pointwise_conv3d_backward_data(exec, dy, weight, dx)     dx_n = W^T dy_n       ASSIGNED
//   pointwise_conv3d_backward_weight(exec, x, dy, dW, db)    dW += sum_n dy_n x_n^T,
//                                                            db += sum dy          ACCUMULATED
// With S = D*H*W, x_n is the row-major (Cin, S) matrix of batch item n, i.e. the column-major
// (S, Cin) matrix x_n^T, so in cuBLAS's terms:
//   forward:         y_n^T (S, Cout)  = x_n^T (S, Cin) * W^T (Cin, Cout)      one strided-
//   backward_data:   dx_n^T (S, Cin)  = dy_n^T (S, Cout) * W (Cout, Cin)      batched GEMM
//   backward_weight: dW^T (Cin, Cout) += x_n (Cin, S) * dy_n^T (S, Cout)      one GEMM per n,
//                                                                              beta = 1
// The bias is broadcast by BiasRows before the forward GEMM (which then runs with beta = 1);
// the bias gradient is a two-stage reduction (ChannelSumPartials: one double partial per
// channel, batch item and chunk of `chunk` voxels; ChannelSumAccumulate: each channel adds
// its partials in a fixed order), so every result is deterministic and no atomics are used.
// Pointers are memory of the executor's device. Outputs must not alias inputs.
#pragma once

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/gemm.hpp"

namespace revox::kernels {

// Voxels per partial sum of the bias-gradient reduction.
inline constexpr index_t kChannelSumChunk = 4096;

// y[r * ld + q] = bias[r % period] for r in [0, rows), q in [0, cols); one i per element.
template <class T>
struct BiasRows {
  T* y;
  const T* bias;
  index_t cols;
  index_t ld;
  index_t period;
  REVOX_HD void operator()(index_t i) const {
    const index_t r = i / cols;
    const index_t q = i - r * cols;
    y[r * ld + q] = bias[r % period];
  }
};

// Stage 1 of db[c] += sum_{n, s} dy[n, c, s]: partial[(c * N + n) * chunks + j] = the sum of
// dy[n, c, s] over s in [j * chunk, (j + 1) * chunk), in double. One i per partial.
template <class T>
struct ChannelSumPartials {
  const T* dy;
  double* partial;
  index_t batch;
  index_t channels;
  index_t spatial;
  index_t chunk;
  index_t chunks;  // per (n, c) plane
  REVOX_HD void operator()(index_t i) const {
    const index_t j = i % chunks;
    const index_t n = (i / chunks) % batch;
    const index_t c = i / (chunks * batch);
    const index_t begin = j * chunk;
    const index_t end = begin + chunk < spatial ? begin + chunk : spatial;
    const T* plane = dy + (n * channels + c) * spatial;
    double sum = 0.0;
    for (index_t s = begin; s < end; ++s) sum += static_cast<double>(plane[s]);
    partial[i] = sum;
  }
};

// Stage 2: db[c] += the `per_channel` partials of channel c, added in order. One i per c.
template <class T>
struct ChannelSumAccumulate {
  const double* partial;
  T* db;
  index_t per_channel;
  REVOX_HD void operator()(index_t c) const {
    double sum = 0.0;
    for (index_t p = 0; p < per_channel; ++p) sum += partial[c * per_channel + p];
    db[c] = static_cast<T>(static_cast<double>(db[c]) + sum);
  }
};

// db[c] += sum over batch and voxels of dy[n, c] (both stages).
template <class Exec, class T>
void accumulate_channel_sums(const Exec& exec, TensorView<const T> dy, T* db,
                             index_t chunk = kChannelSumChunk) {
  REVOX_CHECK(chunk > 0, "accumulate_channel_sums: chunk must be positive, got ", chunk);
  const Shape5 s = dy.shape;
  if (s.c == 0) return;
  const index_t chunks = (s.spatial() + chunk - 1) / chunk;
  const index_t per_channel = s.n * chunks;
  if (per_channel == 0) return;  // nothing to add: db stays as it is
  Tensor<double, typename Exec::device_type> partial(flat_shape(s.c * per_channel));
  exec.for_each(s.c * per_channel, ChannelSumPartials<T>{dy.data, partial.data(), s.n, s.c,
                                                         s.spatial(), chunk, chunks});
  exec.for_each(s.c, ChannelSumAccumulate<T>{partial.data(), db, per_channel});
}

// The GEMM descriptors (column-major, see the header comment).
template <class T>
Gemm<T> pointwise_forward_gemm(TensorView<const T> x, const T* weight, TensorView<T> y,
                               T beta) {
  const index_t cin = x.shape.c;
  const index_t cout = y.shape.c;
  const index_t spatial = x.shape.spatial();
  Gemm<T> g;
  g.trans_a = Op::n;
  g.trans_b = Op::n;
  g.m = spatial;
  g.n = cout;
  g.k = cin;
  g.a = x.data;
  g.lda = spatial > 1 ? spatial : 1;
  g.stride_a = cin * spatial;
  g.b = weight;
  g.ldb = cin > 1 ? cin : 1;
  g.stride_b = 0;
  g.beta = beta;
  g.c = y.data;
  g.ldc = g.lda;
  g.stride_c = cout * spatial;
  g.batch = x.shape.n;
  return g;
}

template <class T>
Gemm<T> pointwise_backward_data_gemm(TensorView<const T> dy, const T* weight, TensorView<T> dx) {
  const index_t cin = dx.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = dy.shape.spatial();
  Gemm<T> g;
  g.trans_a = Op::n;
  g.trans_b = Op::t;
  g.m = spatial;
  g.n = cin;
  g.k = cout;
  g.a = dy.data;
  g.lda = spatial > 1 ? spatial : 1;
  g.stride_a = cout * spatial;
  g.b = weight;
  g.ldb = cin > 1 ? cin : 1;
  g.stride_b = 0;
  g.beta = T(0);
  g.c = dx.data;
  g.ldc = g.lda;
  g.stride_c = cin * spatial;
  g.batch = dy.shape.n;
  return g;
}

// dW^T += x_n dy_n^T for batch item n.
template <class T>
Gemm<T> pointwise_backward_weight_gemm(TensorView<const T> x, TensorView<const T> dy,
                                       index_t n, T* dweight) {
  const index_t cin = x.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = x.shape.spatial();
  Gemm<T> g;
  g.trans_a = Op::t;
  g.trans_b = Op::n;
  g.m = cin;
  g.n = cout;
  g.k = spatial;
  g.a = x.data + n * cin * spatial;
  g.lda = spatial > 1 ? spatial : 1;
  g.b = dy.data + n * cout * spatial;
  g.ldb = g.lda;
  g.beta = T(1);
  g.c = dweight;
  g.ldc = cin > 1 ? cin : 1;
  return g;
}

template <class Exec, class T>
void pointwise_conv3d_forward(const Exec& exec, TensorView<const T> x, const T* weight,
                              const T* bias, TensorView<T> y) {
  cpu::conv3d_detail::check_same_extents("cuda::pointwise_conv3d_forward", "x", x.shape, "y",
                                         y.shape);
  REVOX_CHECK(weight != nullptr, "cuda::pointwise_conv3d_forward: weight must not be null");
  if (y.numel() == 0) return;
  const index_t spatial = y.shape.spatial();
  if (bias != nullptr) {
    exec.for_each(y.numel(), BiasRows<T>{y.data, bias, spatial, spatial, y.shape.c});
  }
  exec.gemm(pointwise_forward_gemm(x, weight, y, bias != nullptr ? T(1) : T(0)));
}

template <class Exec, class T>
void pointwise_conv3d_backward_data(const Exec& exec, TensorView<const T> dy, const T* weight,
                                    TensorView<T> dx) {
  cpu::conv3d_detail::check_same_extents("cuda::pointwise_conv3d_backward_data", "dy", dy.shape,
                                         "dx", dx.shape);
  REVOX_CHECK(weight != nullptr, "cuda::pointwise_conv3d_backward_data: weight must not be null");
  if (dx.numel() == 0) return;
  exec.gemm(pointwise_backward_data_gemm(dy, weight, dx));
}

template <class Exec, class T>
void pointwise_conv3d_backward_weight(const Exec& exec, TensorView<const T> x,
                                      TensorView<const T> dy, T* dweight, T* dbias,
                                      index_t chunk = kChannelSumChunk) {
  cpu::conv3d_detail::check_same_extents("cuda::pointwise_conv3d_backward_weight", "x", x.shape,
                                         "dy", dy.shape);
  REVOX_CHECK(dweight != nullptr,
              "cuda::pointwise_conv3d_backward_weight: dweight must not be null");
  if (x.shape.spatial() > 0) {
    for (index_t n = 0; n < x.shape.n; ++n) {
      exec.gemm(pointwise_backward_weight_gemm(x, dy, n, dweight));
    }
  }
  if (dbias != nullptr) accumulate_channel_sums(exec, dy, dbias, chunk);
}

}  // namespace revox::kernels
