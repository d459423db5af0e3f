// revox/ops/cpu/conv3d.hpp — dense 3D convolution on the CPU: stride 1, 'same' zero padding
// (kernel_size / 2 on every side), groups 1, odd kernel_size (the Conv3d layer uses 1 and 3).
// Like PyTorch, it is a cross-correlation:
//   y[n, co, d, h, w] = b[co] + sum_{ci, kd, kh, kw} W[co, ci, kd, kh, kw] *
//                       x[n, ci, d + kd - p, h + kh - p, w + kw - p],   p = kernel_size / 2.
//
//   x, dx  (N, Cin, D, H, W)     weight, dweight (Cout, Cin, k, k, k)
//   y, dy  (N, Cout, D, H, W)    bias, dbias     (Cout), or nullptr for none
//
//   conv3d_forward(x, weight, bias, y, k):           y ASSIGNED
//   conv3d_backward_data(dy, weight, dx, k):         dx ASSIGNED
//   conv3d_backward_weight(x, dy, dweight, dbias, k):  dweight, dbias ACCUMULATED (+=)
//
// kernel_size 1 runs the pointwise kernels of ops/cpu/pointwise_conv3d.hpp. Larger kernels
// run im2col + the GEMMs of ops/cpu/gemm.hpp over chunks of output rows (consecutive (d, h)
// pairs, i.e. a chunk of whole depth planes when a plane fits): the column buffer for a chunk is
// (Cin * k^3, rows * W), at most `scratch_bytes` (default 16 MiB) unless a single row is
// larger, allocated once per call as a revox Tensor so the tracking allocator sees it.
//   forward:          col = im2col(x_n, chunk);  y_n[:, chunk] = W col (+ b)       gemm_ax
//   backward_data:    Cout <= Cin: the forward of dy with the kernel flipped in space and
//                     transposed in channels (its column buffer within the Cin-sized one);
//                     Cout > Cin: col = W^T dy_n[:, chunk];  dx_n += col2im(col)  gemm_ax
//                     (dx zeroed first; W^T is a transposed copy of the weight)
//   backward_weight:  col = im2col(x_n, chunk);  dW += dy_n[:, chunk] col^T      gemm_abt
//                     (summed in double per chunk)
// im2col and col2im run on OpenMP (col2im over input channels, so each dx element is summed
// in a fixed order); the GEMMs parallelise themselves, so these functions must be called from
// serial code. Results do not depend on the number of threads. The bias gradient is summed
// in double. Outputs must not alias inputs. namespace reference has the plain loops the tests
// compare against.
#pragma once

#include <algorithm>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/fill.hpp"
#include "revox/ops/cpu/gemm.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"

namespace revox::cpu {

// Default bound on the im2col column buffer of one conv3d call.
inline constexpr index_t kConv3dScratchBytes = index_t{16} << 20;

// How conv3d splits the D*H output rows of one batch item into chunks.
struct Conv3dChunking {
  index_t rows_per_chunk = 0;    // (d, h) rows of W voxels each; the last chunk may be shorter
  index_t chunks = 0;
  index_t scratch_elements = 0;  // column buffer: Cin * k^3 * rows_per_chunk * W
};

// The chunking conv3d uses for an input of extent `x` and elements of `element_bytes` bytes:
// as many rows as fit in `scratch_bytes` (at least one), balanced so that the chunks are
// about equally long.
inline Conv3dChunking conv3d_chunking(const Shape5& x, int kernel_size, index_t element_bytes,
                                      index_t scratch_bytes = kConv3dScratchBytes) {
  const index_t k = kernel_size;
  const index_t rows = x.d * x.h;
  const index_t row_bytes = x.c * k * k * k * x.w * element_bytes;
  Conv3dChunking chunking;
  if (rows <= 0) return chunking;
  const index_t fitting =
      row_bytes > 0 ? std::clamp<index_t>(scratch_bytes / row_bytes, 1, rows) : rows;
  chunking.chunks = (rows + fitting - 1) / fitting;
  chunking.rows_per_chunk = (rows + chunking.chunks - 1) / chunking.chunks;
  chunking.scratch_elements = x.c * k * k * k * chunking.rows_per_chunk * x.w;
  return chunking;
}

namespace conv3d_detail {

inline void check_kernel_size(const char* op, int kernel_size) {
  REVOX_CHECK(kernel_size > 0 && kernel_size % 2 == 1, op,
              ": kernel_size must be odd and positive ('same' padding), got ", kernel_size);
}

// col (Cin * k^3, (row_end - row_begin) * W), row-major, rows ordered (ci, kd, kh, kw) like
// the weight: col[(ci, kd, kh, kw), (row - row_begin) * W + w] =
// x_n[ci, d + kd - p, h + kh - p, w + kw - p] (0 outside), where row = d * H + h.
template <class T>
void im2col(const T* xn, const Shape5& s, index_t k, index_t row_begin, index_t row_end,
            T* col) {
  const index_t pad = k / 2;
  const index_t taps = k * k * k;
  const index_t col_rows = s.c * taps;
  const index_t cols = (row_end - row_begin) * s.w;
  const index_t width = s.w;
#pragma omp parallel for schedule(static) if (col_rows * cols > (index_t{1} << 15))
  for (index_t r = 0; r < col_rows; ++r) {
    const index_t ci = r / taps;
    const index_t kd = (r / (k * k)) % k;
    const index_t kh = (r / k) % k;
    const index_t shift_w = r % k - pad;  // input w = output w + shift_w
    // Output w in [w_begin, w_end) reads an input voxel inside the row.
    const index_t w_begin = std::clamp<index_t>(-shift_w, 0, width);
    const index_t w_end = std::clamp<index_t>(width - shift_w, w_begin, width);
    const T* xc = xn + ci * s.spatial();
    T* out = col + r * cols;
    for (index_t row = row_begin; row < row_end; ++row) {
      const index_t id = row / s.h + kd - pad;
      const index_t ih = row % s.h + kh - pad;
      T* dst = out + (row - row_begin) * width;
      if (id < 0 || id >= s.d || ih < 0 || ih >= s.h) {
#pragma omp simd
        for (index_t w = 0; w < width; ++w) dst[w] = T(0);
        continue;
      }
      const index_t base = (id * s.h + ih) * width + shift_w;  // + w: an in-bounds input index
      // The zero margins are a few elements (k / 2 at most): plain loops, no memset calls.
      for (index_t w = 0; w < w_begin; ++w) dst[w] = T(0);
#pragma omp simd
      for (index_t w = w_begin; w < w_end; ++w) dst[w] = xc[base + w];
      for (index_t w = w_end; w < width; ++w) dst[w] = T(0);
    }
  }
}

// The adjoint of im2col: dx_n[ci, d + kd - p, h + kh - p, w + kw - p] += col[...] for the
// in-bounds taps. Parallel over input channels, so no two threads touch the same element and
// each element receives its terms in a fixed order.
template <class T>
void col2im_accumulate(const T* col, const Shape5& s, index_t k, index_t row_begin,
                       index_t row_end, T* dxn) {
  const index_t pad = k / 2;
  const index_t taps = k * k * k;
  const index_t cols = (row_end - row_begin) * s.w;
  const index_t width = s.w;
#pragma omp parallel for schedule(static) if (s.c * taps * cols > (index_t{1} << 15))
  for (index_t ci = 0; ci < s.c; ++ci) {
    T* dxc = dxn + ci * s.spatial();
    for (index_t tap = 0; tap < taps; ++tap) {
      const index_t kd = tap / (k * k);
      const index_t kh = (tap / k) % k;
      const index_t shift_w = tap % k - pad;
      const index_t w_begin = std::clamp<index_t>(-shift_w, 0, width);
      const index_t w_end = std::clamp<index_t>(width - shift_w, w_begin, width);
      const T* in = col + (ci * taps + tap) * cols;
      for (index_t row = row_begin; row < row_end; ++row) {
        const index_t id = row / s.h + kd - pad;
        const index_t ih = row % s.h + kh - pad;
        if (id < 0 || id >= s.d || ih < 0 || ih >= s.h) continue;
        const T* src = in + (row - row_begin) * width;
        const index_t base = (id * s.h + ih) * width + shift_w;
#pragma omp simd
        for (index_t w = w_begin; w < w_end; ++w) dxc[base + w] += src[w];
      }
    }
  }
}

}  // namespace conv3d_detail

template <class T>
void conv3d_forward(TensorView<const T> x, conv3d_detail::const_ptr<T> weight,
                    conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size,
                    index_t scratch_bytes = kConv3dScratchBytes) {
  conv3d_detail::check_kernel_size("cpu::conv3d_forward", kernel_size);
  conv3d_detail::check_same_extents("cpu::conv3d_forward", "x", x.shape, "y", y.shape);
  if (kernel_size == 1) {
    pointwise_conv3d_forward(x, weight, bias, y);
    return;
  }
  const index_t k = kernel_size;
  const index_t cout = y.shape.c;
  const index_t col_rows = x.shape.c * k * k * k;
  const index_t spatial = x.shape.spatial();
  const index_t width = x.shape.w;
  const Conv3dChunking chunking =
      conv3d_chunking(x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  Tensor<T> col(flat_shape(chunking.scratch_elements));
  for (index_t n = 0; n < x.shape.n; ++n) {
    for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
      const index_t row_begin = chunk * chunking.rows_per_chunk;
      const index_t row_end = std::min(row_begin + chunking.rows_per_chunk, x.shape.d * x.shape.h);
      const index_t cols = (row_end - row_begin) * width;
      conv3d_detail::im2col(x.data + n * x.shape.c * spatial, x.shape, k, row_begin, row_end,
                            col.data());
      gemm_ax<T>(cout, col_rows, cols, weight, col_rows, col.data(), cols,
                 y.data + n * cout * spatial + row_begin * width, spatial, bias, false);
    }
  }
}

template <class T>
void conv3d_backward_data(TensorView<const T> dy, conv3d_detail::const_ptr<T> weight,
                          TensorView<T> dx, int kernel_size,
                          index_t scratch_bytes = kConv3dScratchBytes) {
  conv3d_detail::check_kernel_size("cpu::conv3d_backward_data", kernel_size);
  conv3d_detail::check_same_extents("cpu::conv3d_backward_data", "dy", dy.shape, "dx", dx.shape);
  if (kernel_size == 1) {
    pointwise_conv3d_backward_data(dy, weight, dx);
    return;
  }
  const index_t k = kernel_size;
  const index_t cout = dy.shape.c;
  const index_t col_rows = dx.shape.c * k * k * k;
  const index_t spatial = dx.shape.spatial();
  const index_t width = dx.shape.w;
  const Conv3dChunking chunking =
      conv3d_chunking(dx.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  if (cout <= dx.shape.c) {
    // Stride 1 and 'same' padding: dx is the forward correlation of dy with the kernel
    // flipped in space and transposed in channels, W'[ci, co, t] = W[co, ci, k^3 - 1 - t].
    // Its column buffer (Cout k^3 rows) is held to this call's Cin-sized one.
    const index_t taps = k * k * k;
    std::vector<T> flipped(static_cast<std::size_t>(dx.shape.c * cout * taps));
    for (index_t co = 0; co < cout; ++co) {
      for (index_t ci = 0; ci < dx.shape.c; ++ci) {
        for (index_t t = 0; t < taps; ++t) {
          flipped[static_cast<std::size_t>((ci * cout + co) * taps + taps - 1 - t)] =
              weight[(co * dx.shape.c + ci) * taps + t];
        }
      }
    }
    conv3d_forward<T>(dy, flipped.data(), nullptr, dx, kernel_size,
                      chunking.scratch_elements * static_cast<index_t>(sizeof(T)));
    return;
  }
  Tensor<T> col(flat_shape(chunking.scratch_elements));
  const std::vector<T> weight_t = conv3d_detail::transpose(weight, cout, col_rows);
  cpu::fill(dx, T(0));
  for (index_t n = 0; n < dy.shape.n; ++n) {
    for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
      const index_t row_begin = chunk * chunking.rows_per_chunk;
      const index_t row_end =
          std::min(row_begin + chunking.rows_per_chunk, dx.shape.d * dx.shape.h);
      const index_t cols = (row_end - row_begin) * width;
      gemm_ax<T>(col_rows, cout, cols, weight_t.data(), cout,
                 dy.data + n * cout * spatial + row_begin * width, spatial, col.data(), cols,
                 nullptr, false);
      conv3d_detail::col2im_accumulate(col.data(), dx.shape, k, row_begin, row_end,
                                       dx.data + n * dx.shape.c * spatial);
    }
  }
}

template <class T>
void conv3d_backward_weight(TensorView<const T> x, TensorView<const T> dy,
                            conv3d_detail::mut_ptr<T> dweight, conv3d_detail::mut_ptr<T> dbias,
                            int kernel_size, index_t scratch_bytes = kConv3dScratchBytes) {
  conv3d_detail::check_kernel_size("cpu::conv3d_backward_weight", kernel_size);
  conv3d_detail::check_same_extents("cpu::conv3d_backward_weight", "x", x.shape, "dy", dy.shape);
  if (kernel_size == 1) {
    pointwise_conv3d_backward_weight(x, dy, dweight, dbias);
    return;
  }
  const index_t k = kernel_size;
  const index_t cout = dy.shape.c;
  const index_t col_rows = x.shape.c * k * k * k;
  const index_t spatial = x.shape.spatial();
  const index_t width = x.shape.w;
  const Conv3dChunking chunking =
      conv3d_chunking(x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  Tensor<T> col(flat_shape(chunking.scratch_elements));
  for (index_t n = 0; n < x.shape.n; ++n) {
    for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
      const index_t row_begin = chunk * chunking.rows_per_chunk;
      const index_t row_end = std::min(row_begin + chunking.rows_per_chunk, x.shape.d * x.shape.h);
      const index_t cols = (row_end - row_begin) * width;
      conv3d_detail::im2col(x.data + n * x.shape.c * spatial, x.shape, k, row_begin, row_end,
                            col.data());
      gemm_abt<T>(cout, col_rows, cols, dy.data + n * cout * spatial + row_begin * width, spatial,
                  col.data(), cols, dweight, col_rows);
    }
  }
  if (dbias != nullptr) conv3d_detail::accumulate_channel_sums(dy, dbias);
}

// Plain loops with bounds checks, accumulating in double: what the fast path is tested
// against.
namespace reference {

template <class T>
void conv3d_forward(TensorView<const T> x, conv3d_detail::const_ptr<T> weight,
                    conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size) {
  conv3d_detail::check_kernel_size("cpu::reference::conv3d_forward", kernel_size);
  conv3d_detail::check_same_extents("cpu::reference::conv3d_forward", "x", x.shape, "y",
                                    y.shape);
  const index_t k = kernel_size;
  const index_t pad = k / 2;
  const index_t cin = x.shape.c;
  const Shape5 s = y.shape;
  for (index_t n = 0; n < s.n; ++n)
    for (index_t co = 0; co < s.c; ++co)
      for (index_t d = 0; d < s.d; ++d)
        for (index_t h = 0; h < s.h; ++h)
          for (index_t w = 0; w < s.w; ++w) {
            double sum = bias != nullptr ? static_cast<double>(bias[co]) : 0.0;
            for (index_t ci = 0; ci < cin; ++ci)
              for (index_t kd = 0; kd < k; ++kd)
                for (index_t kh = 0; kh < k; ++kh)
                  for (index_t kw = 0; kw < k; ++kw) {
                    const index_t id = d + kd - pad;
                    const index_t ih = h + kh - pad;
                    const index_t iw = w + kw - pad;
                    if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) {
                      continue;
                    }
                    const index_t tap = (((co * cin + ci) * k + kd) * k + kh) * k + kw;
                    sum += static_cast<double>(weight[tap]) *
                           static_cast<double>(x.at(n, ci, id, ih, iw));
                  }
            y.at(n, co, d, h, w) = static_cast<T>(sum);
          }
}

template <class T>
void conv3d_backward_data(TensorView<const T> dy, conv3d_detail::const_ptr<T> weight,
                          TensorView<T> dx, int kernel_size) {
  conv3d_detail::check_kernel_size("cpu::reference::conv3d_backward_data", kernel_size);
  conv3d_detail::check_same_extents("cpu::reference::conv3d_backward_data", "dy", dy.shape,
                                    "dx", dx.shape);
  const index_t k = kernel_size;
  const index_t pad = k / 2;
  const index_t cout = dy.shape.c;
  const Shape5 s = dx.shape;
  // dx[ci, i] gathers every output voxel o = i - (tap - p) that read it through that tap.
  for (index_t n = 0; n < s.n; ++n)
    for (index_t ci = 0; ci < s.c; ++ci)
      for (index_t id = 0; id < s.d; ++id)
        for (index_t ih = 0; ih < s.h; ++ih)
          for (index_t iw = 0; iw < s.w; ++iw) {
            double sum = 0.0;
            for (index_t co = 0; co < cout; ++co)
              for (index_t kd = 0; kd < k; ++kd)
                for (index_t kh = 0; kh < k; ++kh)
                  for (index_t kw = 0; kw < k; ++kw) {
                    const index_t d = id - kd + pad;
                    const index_t h = ih - kh + pad;
                    const index_t w = iw - kw + pad;
                    if (d < 0 || d >= s.d || h < 0 || h >= s.h || w < 0 || w >= s.w) continue;
                    const index_t tap = (((co * s.c + ci) * k + kd) * k + kh) * k + kw;
                    sum += static_cast<double>(weight[tap]) *
                           static_cast<double>(dy.at(n, co, d, h, w));
                  }
            dx.at(n, ci, id, ih, iw) = static_cast<T>(sum);
          }
}

template <class T>
void conv3d_backward_weight(TensorView<const T> x, TensorView<const T> dy,
                            conv3d_detail::mut_ptr<T> dweight, conv3d_detail::mut_ptr<T> dbias,
                            int kernel_size) {
  conv3d_detail::check_kernel_size("cpu::reference::conv3d_backward_weight", kernel_size);
  conv3d_detail::check_same_extents("cpu::reference::conv3d_backward_weight", "x", x.shape,
                                    "dy", dy.shape);
  const index_t k = kernel_size;
  const index_t pad = k / 2;
  const index_t cin = x.shape.c;
  const Shape5 s = dy.shape;
  for (index_t co = 0; co < s.c; ++co) {
    for (index_t ci = 0; ci < cin; ++ci)
      for (index_t kd = 0; kd < k; ++kd)
        for (index_t kh = 0; kh < k; ++kh)
          for (index_t kw = 0; kw < k; ++kw) {
            double sum = 0.0;
            for (index_t n = 0; n < s.n; ++n)
              for (index_t d = 0; d < s.d; ++d)
                for (index_t h = 0; h < s.h; ++h)
                  for (index_t w = 0; w < s.w; ++w) {
                    const index_t id = d + kd - pad;
                    const index_t ih = h + kh - pad;
                    const index_t iw = w + kw - pad;
                    if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) {
                      continue;
                    }
                    sum += static_cast<double>(dy.at(n, co, d, h, w)) *
                           static_cast<double>(x.at(n, ci, id, ih, iw));
                  }
            T& g = dweight[(((co * cin + ci) * k + kd) * k + kh) * k + kw];
            g = static_cast<T>(static_cast<double>(g) + sum);
          }
    if (dbias != nullptr) {
      double sum = 0.0;
      for (index_t n = 0; n < s.n; ++n)
        for (index_t d = 0; d < s.d; ++d)
          for (index_t h = 0; h < s.h; ++h)
            for (index_t w = 0; w < s.w; ++w) sum += static_cast<double>(dy.at(n, co, d, h, w));
      dbias[co] = static_cast<T>(static_cast<double>(dbias[co]) + sum);
    }
  }
}

}  // namespace reference
}  // namespace revox::cpu
