// revox/ops/kernel_bodies/depthwise_conv3d.hpp — the CUDA depthwise 3x3x3 convolution (groups =
// channels, stride 1, zero padding 1) as kernel bodies, written once over an executor
// (kernels/executor.hpp). Plain C++; runs on the GPU through revox/ops/cuda/depthwise_conv3d.cuh
// and on the CPU, in tests, through kernels::EmulatedExecutor. Shapes and semantics are those
// of ops/cpu/depthwise_conv3d.hpp:
//   x, y, dy, dx (N, C, D, H, W), all the same   weight (C, 1, 3, 3, 3)   bias (C) or null
//   depthwise_conv3d_forward(exec, x, weight, bias, y)              y ASSIGNED
//   depthwise_conv3d_backward_data(exec, dy, weight, dx)            dx ASSIGNED
//   depthwise_conv3d_backward_weight(exec, x, dy, dweight, dbias)   ACCUMULATED
// Forward and backward-data run one body instance per output element, summing its 27 taps
// in T in a fixed order. The weight (and bias) gradient is a two-stage reduction without
// atomics: DepthwiseWeightPartials writes, per (channel, batch item, chunk of `chunk`
// voxels of the plane), the 27 tap sums and the bias sum in double; DepthwiseWeightAccumulate
// adds each channel's partials in a fixed order. Results are deterministic.
// Pointers are memory of the executor's device. Outputs must not alias inputs.
#pragma once

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/gemm.hpp"

namespace revox::kernels {

inline constexpr index_t kDepthwiseTaps = 27;
// Partial sums per (channel, batch item, chunk): 27 taps, then the bias.
inline constexpr index_t kDepthwisePartials = kDepthwiseTaps + 1;
// Voxels per partial of the weight-gradient reduction.
inline constexpr index_t kDepthwiseWeightChunk = 2048;

// y[n,c,d,h,w] = bias[c] + sum_{i,j,k} weight[c,i,j,k] * x[n,c,d+i-1,h+j-1,w+k-1] (zero
// outside). With `flip`, tap (i, j, k) uses weight[c, 2-i, 2-j, 2-k] and there is no bias:
// that is backward-data, dx = sum_{i,j,k} weight[c,i,j,k] * dy[n,c,d-i+1,h-j+1,w-k+1].
// One i per output element.
template <class T>
struct DepthwiseCorrelate {
  const T* in;
  const T* weight;
  const T* bias;  // null: none
  T* out;
  Shape5 shape;
  bool flip;
  REVOX_HD void operator()(index_t i) const {
    const index_t w = i % shape.w;
    const index_t h = (i / shape.w) % shape.h;
    const index_t d = (i / (shape.w * shape.h)) % shape.d;
    const index_t plane = i / shape.spatial();  // n * C + c
    const index_t c = plane % shape.c;
    const T* src = in + plane * shape.spatial();
    const T* taps = weight + c * kDepthwiseTaps;
    T sum = bias != nullptr ? bias[c] : T(0);
    for (index_t a = 0; a < 3; ++a) {
      const index_t id = d + a - 1;
      if (id < 0 || id >= shape.d) continue;
      for (index_t b = 0; b < 3; ++b) {
        const index_t ih = h + b - 1;
        if (ih < 0 || ih >= shape.h) continue;
        for (index_t e = 0; e < 3; ++e) {
          const index_t iw = w + e - 1;
          if (iw < 0 || iw >= shape.w) continue;
          const index_t tap = (a * 3 + b) * 3 + e;
          sum += taps[flip ? kDepthwiseTaps - 1 - tap : tap] *
                 src[(id * shape.h + ih) * shape.w + iw];
        }
      }
    }
    out[i] = sum;
  }
};

// Stage 1 of the weight gradient: for partial p = (c * N + n) * chunks + j,
//   partial[p * 28 + tap] = sum over voxels v of chunk j of plane (n, c) of
//                           dy[v] * x[v shifted by (i-1, j-1, k-1)]  (zero outside), tap < 27
//   partial[p * 28 + 27]  = sum over the same voxels of dy[v]
// in double. One i per p.
template <class T>
struct DepthwiseWeightPartials {
  const T* x;
  const T* dy;
  double* partial;
  Shape5 shape;
  index_t chunk;
  index_t chunks;  // per (n, c) plane
  REVOX_HD void operator()(index_t p) const {
    const index_t j = p % chunks;
    const index_t n = (p / chunks) % shape.n;
    const index_t c = p / (chunks * shape.n);
    const index_t spatial = shape.spatial();
    const index_t begin = j * chunk;
    const index_t end = begin + chunk < spatial ? begin + chunk : spatial;
    const T* xp = x + (n * shape.c + c) * spatial;
    const T* gp = dy + (n * shape.c + c) * spatial;
    double acc[kDepthwisePartials];
    for (index_t t = 0; t < kDepthwisePartials; ++t) acc[t] = 0.0;
    for (index_t v = begin; v < end; ++v) {
      const index_t w = v % shape.w;
      const index_t h = (v / shape.w) % shape.h;
      const index_t d = v / (shape.w * shape.h);
      const double g = static_cast<double>(gp[v]);
      acc[kDepthwiseTaps] += g;
      for (index_t a = 0; a < 3; ++a) {
        const index_t id = d + a - 1;
        if (id < 0 || id >= shape.d) continue;
        for (index_t b = 0; b < 3; ++b) {
          const index_t ih = h + b - 1;
          if (ih < 0 || ih >= shape.h) continue;
          for (index_t e = 0; e < 3; ++e) {
            const index_t iw = w + e - 1;
            if (iw < 0 || iw >= shape.w) continue;
            acc[(a * 3 + b) * 3 + e] +=
                g * static_cast<double>(xp[(id * shape.h + ih) * shape.w + iw]);
          }
        }
      }
    }
    double* out = partial + p * kDepthwisePartials;
    for (index_t t = 0; t < kDepthwisePartials; ++t) out[t] = acc[t];
  }
};

// Stage 2: for q = c * 28 + t, adds the `per_channel` partials of channel c and slot t in
// order to dweight[c * 27 + t] (t < 27) or to dbias[c] (t = 27, skipped when dbias is null).
// One i per q.
template <class T>
struct DepthwiseWeightAccumulate {
  const double* partial;
  T* dweight;
  T* dbias;  // null: none
  index_t per_channel;
  REVOX_HD void operator()(index_t q) const {
    const index_t c = q / kDepthwisePartials;
    const index_t t = q - c * kDepthwisePartials;
    if (t == kDepthwiseTaps && dbias == nullptr) return;
    double sum = 0.0;
    for (index_t p = 0; p < per_channel; ++p) {
      sum += partial[(c * per_channel + p) * kDepthwisePartials + t];
    }
    T& target = t < kDepthwiseTaps ? dweight[c * kDepthwiseTaps + t] : dbias[c];
    target = static_cast<T>(static_cast<double>(target) + sum);
  }
};

template <class Exec, class T>
void depthwise_conv3d_forward(const Exec& exec, TensorView<const T> x, const T* weight,
                              const T* bias, TensorView<T> y) {
  cpu::detail::check_depthwise_shapes("cuda::depthwise_conv3d_forward", "x", x.shape, "y",
                                      y.shape, weight);
  exec.for_each(y.numel(), DepthwiseCorrelate<T>{x.data, weight, bias, y.data, x.shape, false});
}

template <class Exec, class T>
void depthwise_conv3d_backward_data(const Exec& exec, TensorView<const T> dy, const T* weight,
                                    TensorView<T> dx) {
  cpu::detail::check_depthwise_shapes("cuda::depthwise_conv3d_backward_data", "dy", dy.shape,
                                      "dx", dx.shape, weight);
  exec.for_each(dx.numel(),
                DepthwiseCorrelate<T>{dy.data, weight, nullptr, dx.data, dy.shape, true});
}

template <class Exec, class T>
void depthwise_conv3d_backward_weight(const Exec& exec, TensorView<const T> x,
                                      TensorView<const T> dy, T* dweight, T* dbias,
                                      index_t chunk = kDepthwiseWeightChunk) {
  cpu::detail::check_depthwise_shapes("cuda::depthwise_conv3d_backward_weight", "x", x.shape,
                                      "dy", dy.shape, dweight);
  REVOX_CHECK(chunk > 0, "cuda::depthwise_conv3d_backward_weight: chunk must be positive, got ",
              chunk);
  const Shape5 s = x.shape;
  if (s.empty()) return;
  const index_t chunks = (s.spatial() + chunk - 1) / chunk;
  const index_t per_channel = s.n * chunks;
  Tensor<double, typename Exec::device_type> partial(
      flat_shape(s.c * per_channel * kDepthwisePartials));
  exec.for_each(s.c * per_channel,
                DepthwiseWeightPartials<T>{x.data, dy.data, partial.data(), s, chunk, chunks});
  exec.for_each(s.c * kDepthwisePartials,
                DepthwiseWeightAccumulate<T>{partial.data(), dweight, dbias, per_channel});
}

}  // namespace revox::kernels
