// revox/ops/kernel_bodies/conv3d.hpp — the CUDA dense 3D convolution (stride 1, 'same' zero
// padding p = k / 2, groups 1, odd kernel_size k), written once over an executor
// (kernels/executor.hpp): im2col and col2im kernel bodies around cuBLAS GEMMs. Plain C++; runs
// on the GPU through revox/ops/cuda/conv3d.cuh and on the CPU, in tests, through
// kernels::EmulatedExecutor. Shapes and semantics are those of ops/cpu/conv3d.hpp:
//   x, dx (N, Cin, D, H, W)   y, dy (N, Cout, D, H, W)   weight (Cout, Cin, k, k, k)
//   conv3d_forward(exec, x, weight, bias, y, k)                y ASSIGNED
//   conv3d_backward_data(exec, dy, weight, dx, k)              dx ASSIGNED
//   conv3d_backward_weight(exec, x, dy, dweight, dbias, k)     dweight, dbias ACCUMULATED
// kernel_size 1 runs kernels/pointwise_conv3d.hpp. Larger kernels work on chunks of output
// rows exactly as the CPU does (cpu::conv3d_chunking: consecutive (d, h) rows whose column
// buffer, (K = Cin * k^3, cols = rows * W) row-major, fits in `scratch_bytes`; the buffer is
// one tensor from the executor device's tracking allocator, reused by every chunk). Per
// batch item n and chunk, with y_c / dy_c the chunk's (Cout, cols) columns of y_n / dy_n
// (leading dimension S = D*H*W), in cuBLAS's column-major terms (kernels/gemm.hpp):
//   forward:          col = Im2col(x_n);   y_c^T (cols, Cout) = col^T (cols, K) * W^T (K, Cout)
//                     after BiasRows set y = b (beta = 1), or with beta = 0 without a bias
//   backward_data:    col^T (cols, K) = dy_c^T (cols, Cout) * W (Cout, K);
//                     dx_n += Col2imGather(col)   (dx set to zero first)
//   backward_weight:  col = Im2col(x_n);   dW^T (K, Cout) += col (K, cols) * dy_c^T (cols, Cout)
//                     db: the two-stage channel sum of kernels/pointwise_conv3d.hpp
// Col2imGather is a gather: one body instance per dx element of the input rows the chunk
// can reach adds that element's taps in a fixed order, so no two instances write the same
// element and there are no atomics. Outputs must not alias inputs.
#pragma once

#include <algorithm>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/gemm.hpp"
#include "revox/ops/kernel_bodies/pointwise_conv3d.hpp"

namespace revox::kernels {

// col[r, q] for r = (ci, kd, kh, kw) in [0, Cin * k^3) and q = (row - row_begin) * W + w in
// [0, cols): x_n[ci, d + kd - p, h + kh - p, w + kw - p], 0 outside the volume, where
// row = d * H + h. One i = r * cols + q per column element; xn is batch item n of x.
template <class T>
struct Im2col {
  const T* xn;
  T* col;
  Shape5 shape;  // of x
  index_t k;
  index_t row_begin;
  index_t cols;
  REVOX_HD void operator()(index_t i) const {
    const index_t r = i / cols;
    const index_t q = i - r * cols;
    const index_t taps = k * k * k;
    const index_t ci = r / taps;
    const index_t tap = r - ci * taps;
    const index_t pad = k / 2;
    const index_t row = row_begin + q / shape.w;
    const index_t id = row / shape.h + tap / (k * k) - pad;
    const index_t ih = row % shape.h + (tap / k) % k - pad;
    const index_t iw = q % shape.w + tap % k - pad;
    const bool inside = id >= 0 && id < shape.d && ih >= 0 && ih < shape.h && iw >= 0 &&
                        iw < shape.w;
    col[i] = inside ? xn[ci * shape.spatial() + (id * shape.h + ih) * shape.w + iw] : T(0);
  }
};

// The adjoint of Im2col for the chunk of output rows [row_begin, row_end), as a gather:
// dx_n[ci, in_row, iw] += sum over the taps (kd, kh, kw) whose output voxel
// (id - kd + p, ih - kh + p, iw - kw + p) lies in the volume and in the chunk of
// col[(ci, kd, kh, kw), (row - row_begin) * W + w]. One i per dx element of the input rows
// [in_row_begin, in_row_begin + in_rows) of every input channel.
template <class T>
struct Col2imGather {
  const T* col;
  T* dxn;
  Shape5 shape;  // of dx
  index_t k;
  index_t row_begin;
  index_t row_end;
  index_t in_row_begin;
  index_t in_rows;
  REVOX_HD void operator()(index_t i) const {
    const index_t width = shape.w;
    const index_t iw = i % width;
    const index_t t = i / width;
    const index_t in_row = in_row_begin + t % in_rows;
    const index_t ci = t / in_rows;
    const index_t id = in_row / shape.h;
    const index_t ih = in_row % shape.h;
    const index_t pad = k / 2;
    const index_t taps = k * k * k;
    const index_t cols = (row_end - row_begin) * width;
    const T* col_c = col + ci * taps * cols;
    T sum = T(0);
    for (index_t kd = 0; kd < k; ++kd) {
      const index_t d = id - kd + pad;
      if (d < 0 || d >= shape.d) continue;
      for (index_t kh = 0; kh < k; ++kh) {
        const index_t h = ih - kh + pad;
        if (h < 0 || h >= shape.h) continue;
        const index_t row = d * shape.h + h;
        if (row < row_begin || row >= row_end) continue;
        for (index_t kw = 0; kw < k; ++kw) {
          const index_t w = iw - kw + pad;
          if (w < 0 || w >= width) continue;
          const index_t tap = (kd * k + kh) * k + kw;
          sum += col_c[tap * cols + (row - row_begin) * width + w];
        }
      }
    }
    dxn[ci * shape.spatial() + in_row * width + iw] += sum;
  }
};

// The input rows whose dx elements the output rows [row_begin, row_end) reach: output row
// d * H + h reads input rows within (p * H + p) of it.
struct InputRowRange {
  index_t begin;
  index_t end;
};
inline InputRowRange conv3d_input_rows(const Shape5& s, index_t k, index_t row_begin,
                                       index_t row_end) {
  const index_t reach = (k / 2) * s.h + k / 2;
  return InputRowRange{std::max<index_t>(0, row_begin - reach),
                       std::min<index_t>(s.d * s.h, row_end + reach)};
}

namespace conv3d_gemm {

// y_c^T = col^T W^T (forward; beta 1 after the bias was broadcast, else 0).
template <class T>
Gemm<T> forward(const T* col, const T* weight, T* yc, index_t cols, index_t col_rows,
                index_t cout, index_t spatial, T beta) {
  Gemm<T> g;
  g.trans_a = Op::n;
  g.trans_b = Op::n;
  g.m = cols;
  g.n = cout;
  g.k = col_rows;
  g.a = col;
  g.lda = cols;
  g.b = weight;
  g.ldb = col_rows;
  g.beta = beta;
  g.c = yc;
  g.ldc = spatial;
  return g;
}

// col^T = dy_c^T W (backward data).
template <class T>
Gemm<T> backward_data(const T* dyc, const T* weight, T* col, index_t cols, index_t col_rows,
                      index_t cout, index_t spatial) {
  Gemm<T> g;
  g.trans_a = Op::n;
  g.trans_b = Op::t;
  g.m = cols;
  g.n = col_rows;
  g.k = cout;
  g.a = dyc;
  g.lda = spatial;
  g.b = weight;
  g.ldb = col_rows;
  g.beta = T(0);
  g.c = col;
  g.ldc = cols;
  return g;
}

// dW^T += col dy_c^T (backward weight).
template <class T>
Gemm<T> backward_weight(const T* col, const T* dyc, T* dweight, index_t cols, index_t col_rows,
                        index_t cout, index_t spatial) {
  Gemm<T> g;
  g.trans_a = Op::t;
  g.trans_b = Op::n;
  g.m = col_rows;
  g.n = cout;
  g.k = cols;
  g.a = col;
  g.lda = cols;
  g.b = dyc;
  g.ldb = spatial;
  g.beta = T(1);
  g.c = dweight;
  g.ldc = col_rows;
  return g;
}

}  // namespace conv3d_gemm

template <class Exec, class T>
void conv3d_forward(const Exec& exec, TensorView<const T> x, const T* weight, const T* bias,
                    TensorView<T> y, int kernel_size,
                    index_t scratch_bytes = cpu::kConv3dScratchBytes) {
  cpu::conv3d_detail::check_kernel_size("cuda::conv3d_forward", kernel_size);
  if (kernel_size == 1) {
    pointwise_conv3d_forward(exec, x, weight, bias, y);
    return;
  }
  cpu::conv3d_detail::check_same_extents("cuda::conv3d_forward", "x", x.shape, "y", y.shape);
  REVOX_CHECK(weight != nullptr, "cuda::conv3d_forward: weight must not be null");
  if (y.numel() == 0) return;
  const index_t k = kernel_size;
  const index_t cout = y.shape.c;
  const index_t col_rows = x.shape.c * k * k * k;
  const index_t spatial = x.shape.spatial();
  const index_t rows = x.shape.d * x.shape.h;
  const cpu::Conv3dChunking chunking =
      cpu::conv3d_chunking(x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  Tensor<T, typename Exec::device_type> col(flat_shape(chunking.scratch_elements));
  if (bias != nullptr) {
    exec.for_each(y.numel(), BiasRows<T>{y.data, bias, spatial, spatial, cout});
  }
  const T beta = bias != nullptr ? T(1) : T(0);
  for (index_t n = 0; n < x.shape.n; ++n) {
    const T* xn = x.data + n * x.shape.c * spatial;
    T* yn = y.data + n * cout * spatial;
    for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
      const index_t row_begin = chunk * chunking.rows_per_chunk;
      const index_t row_end = std::min(row_begin + chunking.rows_per_chunk, rows);
      const index_t cols = (row_end - row_begin) * x.shape.w;
      exec.for_each(col_rows * cols, Im2col<T>{xn, col.data(), x.shape, k, row_begin, cols});
      exec.gemm(conv3d_gemm::forward<T>(col.data(), weight, yn + row_begin * x.shape.w, cols,
                                        col_rows, cout, spatial, beta));
    }
  }
}

template <class Exec, class T>
void conv3d_backward_data(const Exec& exec, TensorView<const T> dy, const T* weight,
                          TensorView<T> dx, int kernel_size,
                          index_t scratch_bytes = cpu::kConv3dScratchBytes) {
  cpu::conv3d_detail::check_kernel_size("cuda::conv3d_backward_data", kernel_size);
  if (kernel_size == 1) {
    pointwise_conv3d_backward_data(exec, dy, weight, dx);
    return;
  }
  cpu::conv3d_detail::check_same_extents("cuda::conv3d_backward_data", "dy", dy.shape, "dx",
                                         dx.shape);
  REVOX_CHECK(weight != nullptr, "cuda::conv3d_backward_data: weight must not be null");
  if (dx.numel() == 0) return;
  const index_t k = kernel_size;
  const index_t cout = dy.shape.c;
  const index_t cin = dx.shape.c;
  const index_t col_rows = cin * k * k * k;
  const index_t spatial = dx.shape.spatial();
  const index_t width = dx.shape.w;
  const index_t rows = dx.shape.d * dx.shape.h;
  const cpu::Conv3dChunking chunking = cpu::conv3d_chunking(
      dx.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  Tensor<T, typename Exec::device_type> col(flat_shape(chunking.scratch_elements));
  exec.zero(dx.data, dx.numel());
  for (index_t n = 0; n < dy.shape.n; ++n) {
    const T* dyn = dy.data + n * cout * spatial;
    T* dxn = dx.data + n * cin * spatial;
    for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
      const index_t row_begin = chunk * chunking.rows_per_chunk;
      const index_t row_end = std::min(row_begin + chunking.rows_per_chunk, rows);
      const index_t cols = (row_end - row_begin) * width;
      exec.gemm(conv3d_gemm::backward_data<T>(dyn + row_begin * width, weight, col.data(), cols,
                                              col_rows, cout, spatial));
      const InputRowRange in = conv3d_input_rows(dx.shape, k, row_begin, row_end);
      exec.for_each(cin * (in.end - in.begin) * width,
                    Col2imGather<T>{col.data(), dxn, dx.shape, k, row_begin, row_end, in.begin,
                                    in.end - in.begin});
    }
  }
}

template <class Exec, class T>
void conv3d_backward_weight(const Exec& exec, TensorView<const T> x, TensorView<const T> dy,
                            T* dweight, T* dbias, int kernel_size,
                            index_t scratch_bytes = cpu::kConv3dScratchBytes,
                            index_t bias_chunk = kChannelSumChunk) {
  cpu::conv3d_detail::check_kernel_size("cuda::conv3d_backward_weight", kernel_size);
  if (kernel_size == 1) {
    pointwise_conv3d_backward_weight(exec, x, dy, dweight, dbias, bias_chunk);
    return;
  }
  cpu::conv3d_detail::check_same_extents("cuda::conv3d_backward_weight", "x", x.shape, "dy",
                                         dy.shape);
  REVOX_CHECK(dweight != nullptr, "cuda::conv3d_backward_weight: dweight must not be null");
  const index_t k = kernel_size;
  const index_t cout = dy.shape.c;
  const index_t col_rows = x.shape.c * k * k * k;
  const index_t spatial = x.shape.spatial();
  const index_t width = x.shape.w;
  const index_t rows = x.shape.d * x.shape.h;
  if (x.numel() > 0 && cout > 0) {
    const cpu::Conv3dChunking chunking =
        cpu::conv3d_chunking(x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
    Tensor<T, typename Exec::device_type> col(flat_shape(chunking.scratch_elements));
    for (index_t n = 0; n < x.shape.n; ++n) {
      const T* xn = x.data + n * x.shape.c * spatial;
      const T* dyn = dy.data + n * cout * spatial;
      for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
        const index_t row_begin = chunk * chunking.rows_per_chunk;
        const index_t row_end = std::min(row_begin + chunking.rows_per_chunk, rows);
        const index_t cols = (row_end - row_begin) * width;
        exec.for_each(col_rows * cols, Im2col<T>{xn, col.data(), x.shape, k, row_begin, cols});
        exec.gemm(conv3d_gemm::backward_weight<T>(col.data(), dyn + row_begin * width, dweight,
                                                  cols, col_rows, cout, spatial));
      }
    }
  }
  if (dbias != nullptr) accumulate_channel_sums(exec, dy, dbias, bias_chunk);
}

}  // namespace revox::kernels
