// revox/ops/cpu/conv3d.hpp — Conv3dKernels<Cpu>: dense 3D convolution on the CPU: stride 1, 'same' zero padding
// (kernel_size / 2 on every side), groups 1, odd kernel_size (the Conv3d layer uses 1 and 3).
// Like PyTorch, it is a cross-correlation:
//   y[n, co, d, h, w] = b[co] + sum_{ci, kd, kh, kw} W[co, ci, kd, kh, kw] *
//                       x[n, ci, d + kd - p, h + kh - p, w + kw - p],   p = kernel_size / 2.
//
//   x, dx  (N, Cin, D, H, W)     weight, dweight (Cout, Cin, k, k, k)
//   y, dy  (N, Cout, D, H, W)    bias, dbias     (Cout), or nullptr for none
//
//   conv3d_forward(dev, x, weight, bias, y, k):           y ASSIGNED
//   conv3d_backward_data(dev, dy, weight, dx, k):         dx ASSIGNED
//   conv3d_backward_weight(dev, x, dy, dweight, dbias, k):  dweight, dbias ACCUMULATED (+=)
//
// kernel_size 1 runs the pointwise kernels of ops/cpu/pointwise_conv3d.hpp. Larger kernels
// take one of two paths:
//  * direct (W a multiple of the vector width, k / 2 at most one vector; every U-Net level of
//    16 voxels or more with AVX-512): no column buffer. For each output row (n, d, h) the input
//    rows it reads are copied with zero margins into a small per-thread buffer, and the k taps
//    along w are k shifted vector loads of the same buffered row.
//      forward:          threads split the output rows; a register tile of output channels x
//                        vectors sums bias + W x over (ci, kd, kh, kw) in order (packed W).
//      backward_data:    Cout <= Cin: the forward of dy with the kernel flipped in space and
//                        transposed in channels; otherwise the column-buffer path below.
//      backward_weight:  the voxels are cut into ranges of rows within a depth plane (about
//                        kDirectRangeVoxels, fixed by the shape); per range, threads split the
//                        (output-channel tile, input channel) pairs, sum dy * x in vectors (lane
//                        l: voxels w = l mod N, rows in order), then add the lanes in order into
//                        a double total, ranges in order.
//  * column buffer (other widths): im2col + the GEMMs of ops/cpu/gemm.hpp over chunks of
//    output rows (consecutive (d, h) pairs, i.e. a chunk of whole depth planes when a plane
//    fits): the column buffer for a chunk is (Cin * k^3, rows * W), at most `scratch_bytes`
//    (default 16 MiB) unless a single row is larger, allocated once per call as a revox
//    Tensor so the tracking allocator sees it.
//      forward:          col = im2col(x_n, chunk);  y_n[:, chunk] = W col (+ b)       gemm_ax
//      backward_data:    Cout <= Cin: the flipped forward, as above (its column buffer within
//                        the Cin-sized one);
//                        Cout > Cin: col = W^T dy_n[:, chunk];  dx_n += col2im(col)  gemm_ax
//                        (dx zeroed first; W^T is a transposed copy of the weight)
//      backward_weight:  col = im2col(x_n, chunk);  dW += dy_n[:, chunk] col^T      gemm_abt
//                        (summed in double per chunk)
//    im2col and col2im run on OpenMP (col2im over input channels, so each dx element is
//    summed in a fixed order); the GEMMs parallelise themselves.
// The direct path's per-thread buffers (Cin * k^2 padded rows, a few hundred KiB at most for
// the U-Net's shapes) are plain aligned allocations, not tracked; the weight gradient's double
// total (Cout * Cin * k^3) is a std::vector like gemm_abt's. All of these functions must be
// called from serial code. Every output element is summed by one thread in an order fixed by
// the shapes: results do not depend on the number of threads. The bias gradient is summed in
// double. Outputs must not alias inputs. namespace reference has the plain loops the tests
// compare against.
#pragma once

#include <algorithm>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/conv3d.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/cpu/fill.hpp"
#include "revox/ops/cpu/gemm.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/ops/cpu/simd.hpp"

namespace revox::cpu {

namespace conv3d_detail {

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

// ---- direct path (forward with W a multiple of the vector width) -----------------------------
// For one output row (n, d, h), the Cin * k * k input rows it reads (ci, d + kd - p,
// h + kh - p) are copied into a per-thread buffer, each with zero margins, so that the k taps
// along w are k shifted loads of the same row: the GEMM over K = Cin * k^3 reads its X rows
// straight from that buffer and no column buffer exists. Rows outside the volume are left out
// (their terms are zero). Each output element is summed by one thread in k order.

// Row stride (elements) of the padded row buffer: the W voxels start at offset N (aligned),
// with N zeros before and at least N after.
template <int N>
index_t direct_row_stride(index_t width) {
  return width + 2 * N;
}

// Y tile (MR rows x NV vectors) = bias (or 0) + sum over the rows j < rows of the buffer and
// the taps kw < k of A[taps[j] + kw] * X_j[kw + ...]; src: buffer row 0 at the tile's first
// column shifted by -pad; a: the m tile of the packed weight, (K, MR) row-major.
template <class T, int N, int MR, int NV, int KW>
void direct_tile(index_t rows, const index_t* taps, int k, const T* src, index_t stride,
                 const T* a, T* y, index_t ldy, const T* bias) {
  using V = simd::Vec<T, N>;
  const int kws = KW > 0 ? KW : k;
  V acc[MR][NV];
REVOX_UNROLL(8)
  for (int m = 0; m < MR; ++m) {
REVOX_UNROLL(4)
    for (int v = 0; v < NV; ++v) simd::broadcast<T, N>(acc[m][v], bias != nullptr ? bias[m] : T(0));
  }
  for (index_t j = 0; j < rows; ++j) {
    const T* x = src + j * stride;
    const T* aj = a + taps[j] * MR;
REVOX_UNROLL(3)
    for (int kw = 0; kw < kws; ++kw) {
      V xv[NV];
REVOX_UNROLL(4)
      for (int v = 0; v < NV; ++v) simd::load<T, N>(xv[v], x + kw + v * N);
REVOX_UNROLL(8)
      for (int m = 0; m < MR; ++m) {
        const T av = aj[kw * MR + m];
REVOX_UNROLL(4)
        for (int v = 0; v < NV; ++v) acc[m][v] += av * xv[v];
      }
    }
  }
REVOX_UNROLL(8)
  for (int m = 0; m < MR; ++m) {
REVOX_UNROLL(4)
    for (int v = 0; v < NV; ++v) simd::store<T, N>(y + m * ldy + v * N, acc[m][v]);
  }
}

// direct_tile for `m_rows` <= MR rows (the last m tile, packed with that many rows).
template <class T, int N, int MR, int NV, int KW>
void direct_rows(int m_rows, index_t rows, const index_t* taps, int k, const T* src,
                 index_t stride, const T* a, T* y, index_t ldy, const T* bias) {
  if constexpr (MR > 1) {
    if (m_rows < MR) {
      direct_rows<T, N, MR - 1, NV, KW>(m_rows, rows, taps, k, src, stride, a, y, ldy, bias);
      return;
    }
  }
  direct_tile<T, N, MR, NV, KW>(rows, taps, k, src, stride, a, y, ldy, bias);
}

// direct_rows over `vectors` <= NV vectors (the last column tile of a row).
template <class T, int N, int MR, int NV, int KW>
void direct_columns(int vectors, int m_rows, index_t rows, const index_t* taps, int k,
                    const T* src, index_t stride, const T* a, T* y, index_t ldy,
                    const T* bias) {
  if constexpr (NV > 1) {
    if (vectors < NV) {
      direct_columns<T, N, MR, NV - 1, KW>(vectors, m_rows, rows, taps, k, src, stride, a, y,
                                           ldy, bias);
      return;
    }
  }
  direct_rows<T, N, MR, NV, KW>(m_rows, rows, taps, k, src, stride, a, y, ldy, bias);
}

// Register tile of the direct path: MR output channels x NV vectors of voxels.
inline constexpr int kDirectRows = simd::kNativeBytes >= 64 ? 8 : 3;
inline constexpr int kDirectVectors = simd::kNativeBytes >= 64 ? 3 : 4;

template <class T>
bool direct_applies(const Shape5& x, index_t k) {
  return direct_applies_lanes(x, k, simd::native_lanes<T>);
}

template <class T, int KW>
void direct_forward(const T* x, const Shape5& s, index_t cout, const T* weight, const T* bias,
                    T* y, index_t k) {
  constexpr int N = simd::native_lanes<T>;
  constexpr int MR = kDirectRows;
  constexpr int NV = kDirectVectors;
  const index_t pad = k / 2;
  const index_t cin = s.c;
  const index_t taps = k * k * k;
  const index_t kk = cin * taps;
  const index_t width = s.w;
  const index_t spatial = s.spatial();
  const index_t stride = direct_row_stride<N>(width);
  const index_t buffer_rows = cin * k * k;
  const index_t vectors = width / N;
  // Packed weight: m tile t holds rows [t * MR, t * MR + m_rows) as a (K, m_rows) matrix.
  const index_t m_tiles = (cout + MR - 1) / MR;
  std::vector<T> packed(static_cast<std::size_t>(cout * kk));
  for (index_t t = 0; t < m_tiles; ++t) {
    const index_t m0 = t * MR;
    const index_t m_rows = std::min<index_t>(MR, cout - m0);
    T* dst = packed.data() + m0 * kk;
    for (index_t kidx = 0; kidx < kk; ++kidx) {
      for (index_t m = 0; m < m_rows; ++m) dst[kidx * m_rows + m] = weight[(m0 + m) * kk + kidx];
    }
  }
  const index_t out_rows = s.n * s.d * s.h;
#pragma omp parallel if (out_rows * cout * kk * width > (index_t{1} << 18))
  {
    simd::AlignedBuffer<T> buffer(buffer_rows * stride);  // zeroed: the margins stay zero
    std::vector<index_t> row_taps(static_cast<std::size_t>(buffer_rows));
#pragma omp for schedule(static)
    for (index_t row = 0; row < out_rows; ++row) {
      const index_t n = row / (s.d * s.h);
      const index_t d = (row / s.h) % s.d;
      const index_t h = row % s.h;
      const T* xn = x + n * cin * spatial;
      index_t rows = 0;
      for (index_t ci = 0; ci < cin; ++ci) {
        for (index_t kd = 0; kd < k; ++kd) {
          const index_t id = d + kd - pad;
          if (id < 0 || id >= s.d) continue;
          for (index_t kh = 0; kh < k; ++kh) {
            const index_t ih = h + kh - pad;
            if (ih < 0 || ih >= s.h) continue;
            const T* src = xn + ci * spatial + (id * s.h + ih) * width;
            T* dst = buffer.data() + rows * stride + N;
#pragma omp simd
            for (index_t w = 0; w < width; ++w) dst[w] = src[w];
            row_taps[static_cast<std::size_t>(rows)] = ((ci * k + kd) * k + kh) * k;
            ++rows;
          }
        }
      }
      T* yrow = y + n * cout * spatial + (d * s.h + h) * width;
      for (index_t t = 0; t < m_tiles; ++t) {
        const index_t m0 = t * MR;
        const int m_rows = static_cast<int>(std::min<index_t>(MR, cout - m0));
        const T* a = packed.data() + m0 * kk;
        const T* row_bias = bias != nullptr ? bias + m0 : nullptr;
        for (index_t v0 = 0; v0 < vectors; v0 += NV) {
          const int nv = static_cast<int>(std::min<index_t>(NV, vectors - v0));
          direct_columns<T, N, MR, NV, KW>(nv, m_rows, rows, row_taps.data(),
                                           static_cast<int>(k),
                                           buffer.data() + N - pad + v0 * N, stride, a,
                                           yrow + m0 * spatial + v0 * N, spatial, row_bias);
        }
      }
    }
  }
}

// Backward weight, direct: the voxels of one batch item are cut into ranges of whole rows
// within one depth plane (about kDirectRangeVoxels voxels each, fixed by the shape). For a
// range, one task per (m tile of output channels, input channel) copies the input rows the
// range reads (k planes of R + k - 1 padded rows, zeros outside the volume) into a per-thread
// buffer and, for every (kd, kh), keeps the MR x k sums of dy_m * x(kw-shifted) in vectors of N
// lanes over the range (lane l: the voxels w = l mod N, in row order); their lanes are then
// added in lane order into a double total, ranges in order. Every dweight element has one
// owner per range and a fixed summation order: results do not depend on the thread count.
inline constexpr index_t kDirectRangeVoxels = 8192;
inline constexpr index_t kDirectBlockVoxels = 2048;

// sums[m][kw] (vectors of N lanes, row stride kMaxTaps vectors) += the sums over rows r < rows
// and the vectors of a row of dy_m[r * width + ...] * x_r[kw + ...], x_r = src + r * stride.
template <class T, int N, int MR, int KW>
void direct_weight_tile(index_t rows, index_t width, int k, const T* dy, index_t ldy,
                        const T* src, index_t stride, T* sums) {
  using V = simd::Vec<T, N>;
  const int kws = KW > 0 ? KW : k;
  constexpr int kMaxTaps = KW > 0 ? KW : 2 * N + 1;
  V acc[MR][kMaxTaps];
  for (int m = 0; m < MR; ++m) {
    for (int kw = 0; kw < kws; ++kw) simd::load<T, N>(acc[m][kw], sums + (m * kMaxTaps + kw) * N);
  }
  for (index_t r = 0; r < rows; ++r) {
    const T* x = src + r * stride;
    const T* d = dy + r * width;
    for (index_t w = 0; w < width; w += N) {
      V xv[kMaxTaps];
REVOX_UNROLL(3)
      for (int kw = 0; kw < kws; ++kw) simd::load<T, N>(xv[kw], x + kw + w);
REVOX_UNROLL(8)
      for (int m = 0; m < MR; ++m) {
        V dv;
        simd::load<T, N>(dv, d + m * ldy + w);
REVOX_UNROLL(3)
        for (int kw = 0; kw < kws; ++kw) acc[m][kw] += dv * xv[kw];
      }
    }
  }
  for (int m = 0; m < MR; ++m) {
    for (int kw = 0; kw < kws; ++kw) simd::store<T, N>(sums + (m * kMaxTaps + kw) * N, acc[m][kw]);
  }
}

template <class T, int N, int MR, int KW>
void direct_weight_rows(int m_rows, index_t rows, index_t width, int k, const T* dy,
                        index_t ldy, const T* src, index_t stride, T* sums) {
  if constexpr (MR > 1) {
    if (m_rows < MR) {
      direct_weight_rows<T, N, MR - 1, KW>(m_rows, rows, width, k, dy, ldy, src, stride, sums);
      return;
    }
  }
  direct_weight_tile<T, N, MR, KW>(rows, width, k, dy, ldy, src, stride, sums);
}

// Register tile of the direct weight gradient: MR output channels x k taps along w.
inline constexpr int kDirectWeightRows = simd::kNativeBytes >= 64 ? 6 : 3;

template <class T, int KW>
void direct_backward_weight(const T* x, const Shape5& s, const T* dy, index_t cout, T* dweight,
                            index_t k) {
  constexpr int N = simd::native_lanes<T>;
  constexpr int MR = kDirectWeightRows;
  const index_t pad = k / 2;
  const index_t cin = s.c;
  const index_t kk = cin * k * k * k;
  const index_t width = s.w;
  const index_t spatial = s.spatial();
  const index_t stride = direct_row_stride<N>(width);
  const index_t range_rows = std::clamp<index_t>(kDirectRangeVoxels / width, 1, s.h);
  const index_t ranges_per_plane = (s.h + range_rows - 1) / range_rows;
  const index_t ranges = s.n * s.d * ranges_per_plane;
  const index_t m_tiles = (cout + MR - 1) / MR;
  const index_t tasks = m_tiles * cin;
  const index_t span = range_rows + k - 1;  // buffer rows per kd plane
  const index_t block_rows = std::max<index_t>(1, kDirectBlockVoxels / width);
  const index_t max_taps = KW > 0 ? KW : 2 * N + 1;
  std::vector<double> total(static_cast<std::size_t>(cout * kk), 0.0);
#pragma omp parallel if (s.n * spatial * cout * kk > (index_t{1} << 18))
  {
    simd::AlignedBuffer<T> buffer(k * span * stride);  // zeroed: the margins stay zero
    simd::AlignedBuffer<T> sums(k * k * MR * max_taps * N);
    for (index_t range = 0; range < ranges; ++range) {
      const index_t n = range / (s.d * ranges_per_plane);
      const index_t d = (range / ranges_per_plane) % s.d;
      const index_t h0 = (range % ranges_per_plane) * range_rows;
      const index_t rows = std::min(range_rows, s.h - h0);
#pragma omp for schedule(static)
      for (index_t task = 0; task < tasks; ++task) {
        const index_t t = task / cin;
        const index_t ci = task % cin;
        const index_t m0 = t * MR;
        const int m_rows = static_cast<int>(std::min<index_t>(MR, cout - m0));
        const T* xc = x + (n * cin + ci) * spatial;
        for (index_t kd = 0; kd < k; ++kd) {
          const index_t id = d + kd - pad;
          if (id < 0 || id >= s.d) continue;
          for (index_t j = 0; j < rows + k - 1; ++j) {
            const index_t ih = h0 + j - pad;
            T* dst = buffer.data() + (kd * span + j) * stride + N;
            if (ih < 0 || ih >= s.h) {
              for (index_t w = 0; w < width; ++w) dst[w] = T(0);
              continue;
            }
            const T* src = xc + (id * s.h + ih) * width;
#pragma omp simd
            for (index_t w = 0; w < width; ++w) dst[w] = src[w];
          }
        }
        // Blocks of a few rows (dy's block and its input rows stay in L1) for every (kd, kh),
        // each lane's terms still in row order; then the lanes in order into the total.
        std::fill(sums.data(), sums.data() + k * k * MR * max_taps * N, T(0));
        const T* dyt = dy + (n * cout + m0) * spatial + (d * s.h + h0) * width;
        for (index_t r0 = 0; r0 < rows; r0 += block_rows) {
          const index_t r1 = std::min(rows, r0 + block_rows);
          for (index_t kd = 0; kd < k; ++kd) {
            const index_t id = d + kd - pad;
            if (id < 0 || id >= s.d) continue;
            for (index_t kh = 0; kh < k; ++kh) {
              direct_weight_rows<T, N, MR, KW>(
                  m_rows, r1 - r0, width, static_cast<int>(k), dyt + r0 * width, spatial,
                  buffer.data() + (kd * span + kh + r0) * stride + N - pad, stride,
                  sums.data() + (kd * k + kh) * MR * max_taps * N);
            }
          }
        }
        for (index_t kd = 0; kd < k; ++kd) {
          if (d + kd - pad < 0 || d + kd - pad >= s.d) continue;
          for (index_t kh = 0; kh < k; ++kh) {
            for (index_t m = 0; m < m_rows; ++m) {
              for (index_t kw = 0; kw < k; ++kw) {
                const T* lanes = sums.data() + (((kd * k + kh) * MR + m) * max_taps + kw) * N;
                double sum = 0.0;
                for (int l = 0; l < N; ++l) sum += static_cast<double>(lanes[l]);
                const index_t tap = ((ci * k + kd) * k + kh) * k + kw;
                total[static_cast<std::size_t>((m0 + m) * kk + tap)] += sum;
              }
            }
          }
        }
      }
    }
  }
  for (index_t i = 0; i < cout * kk; ++i) {
    const double sum = total[static_cast<std::size_t>(i)];
    dweight[i] = static_cast<T>(static_cast<double>(dweight[i]) + sum);
  }
}

}  // namespace conv3d_detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct Conv3dKernels<Cpu> {
  template <class T>
  static void conv3d_forward(const Cpu& dev, TensorView<const T> x,
                             cpu::conv3d_detail::const_ptr<T> weight,
                             cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y,
                             int kernel_size, index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    cpu::conv3d_detail::check_kernel_size("cpu::conv3d_forward", kernel_size);
    cpu::conv3d_detail::check_same_extents("cpu::conv3d_forward", "x", x.shape, "y", y.shape);
    if (kernel_size == 1) {
      PointwiseConv3dKernels<Cpu>::pointwise_conv3d_forward(dev, x, weight, bias, y);
      return;
    }
    const index_t k = kernel_size;
    const index_t cout = y.shape.c;
    if (cpu::conv3d_detail::direct_applies<T>(x.shape, k)) {
      if (k == 3) {
        cpu::conv3d_detail::direct_forward<T, 3>(x.data, x.shape, cout, weight, bias, y.data, k);
      } else {
        cpu::conv3d_detail::direct_forward<T, 0>(x.data, x.shape, cout, weight, bias, y.data, k);
      }
      return;
    }
    const index_t col_rows = x.shape.c * k * k * k;
    const index_t spatial = x.shape.spatial();
    const index_t width = x.shape.w;
    const cpu::Conv3dChunking chunking = cpu::conv3d_chunking(
        x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
    Tensor<T> col(flat_shape(chunking.scratch_elements));
    for (index_t n = 0; n < x.shape.n; ++n) {
      for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
        const index_t row_begin = chunk * chunking.rows_per_chunk;
        const index_t row_end =
            std::min(row_begin + chunking.rows_per_chunk, x.shape.d * x.shape.h);
        const index_t cols = (row_end - row_begin) * width;
        cpu::conv3d_detail::im2col(x.data + n * x.shape.c * spatial, x.shape, k, row_begin,
                                   row_end, col.data());
        cpu::gemm_ax<T>(cout, col_rows, cols, weight, col_rows, col.data(), cols,
                        y.data + n * cout * spatial + row_begin * width, spatial, bias, false);
      }
    }
  }

  template <class T>
  static void conv3d_backward_data(const Cpu& dev, TensorView<const T> dy,
                                   cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                                   int kernel_size,
                                   index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    cpu::conv3d_detail::check_kernel_size("cpu::conv3d_backward_data", kernel_size);
    cpu::conv3d_detail::check_same_extents("cpu::conv3d_backward_data", "dy", dy.shape, "dx",
                                           dx.shape);
    if (kernel_size == 1) {
      PointwiseConv3dKernels<Cpu>::pointwise_conv3d_backward_data(dev, dy, weight, dx);
      return;
    }
    const index_t k = kernel_size;
    const index_t cout = dy.shape.c;
    const index_t col_rows = dx.shape.c * k * k * k;
    const index_t spatial = dx.shape.spatial();
    const index_t width = dx.shape.w;
    const cpu::Conv3dChunking chunking = cpu::conv3d_chunking(
        dx.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
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
      conv3d_forward<T>(dev, dy, flipped.data(), nullptr, dx, kernel_size,
                        chunking.scratch_elements * static_cast<index_t>(sizeof(T)));
      return;
    }
    Tensor<T> col(flat_shape(chunking.scratch_elements));
    const std::vector<T> weight_t = cpu::conv3d_detail::transpose(weight, cout, col_rows);
    FillKernels<Cpu>::fill(dev, dx, T(0));
    for (index_t n = 0; n < dy.shape.n; ++n) {
      for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
        const index_t row_begin = chunk * chunking.rows_per_chunk;
        const index_t row_end =
            std::min(row_begin + chunking.rows_per_chunk, dx.shape.d * dx.shape.h);
        const index_t cols = (row_end - row_begin) * width;
        cpu::gemm_ax<T>(col_rows, cout, cols, weight_t.data(), cout,
                        dy.data + n * cout * spatial + row_begin * width, spatial, col.data(),
                        cols, nullptr, false);
        cpu::conv3d_detail::col2im_accumulate(col.data(), dx.shape, k, row_begin, row_end,
                                              dx.data + n * dx.shape.c * spatial);
      }
    }
  }

  template <class T>
  static void conv3d_backward_weight(const Cpu& dev, TensorView<const T> x,
                                     TensorView<const T> dy,
                                     cpu::conv3d_detail::mut_ptr<T> dweight,
                                     cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size,
                                     index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    cpu::conv3d_detail::check_kernel_size("cpu::conv3d_backward_weight", kernel_size);
    cpu::conv3d_detail::check_same_extents("cpu::conv3d_backward_weight", "x", x.shape, "dy",
                                           dy.shape);
    if (kernel_size == 1) {
      PointwiseConv3dKernels<Cpu>::pointwise_conv3d_backward_weight(dev, x, dy, dweight, dbias);
      return;
    }
    const index_t k = kernel_size;
    const index_t cout = dy.shape.c;
    if (cpu::conv3d_detail::direct_applies<T>(x.shape, k)) {
      if (k == 3) {
        cpu::conv3d_detail::direct_backward_weight<T, 3>(x.data, x.shape, dy.data, cout,
                                                         dweight, k);
      } else {
        cpu::conv3d_detail::direct_backward_weight<T, 0>(x.data, x.shape, dy.data, cout,
                                                         dweight, k);
      }
      if (dbias != nullptr) cpu::conv3d_detail::accumulate_channel_sums(dy, dbias);
      return;
    }
    const index_t col_rows = x.shape.c * k * k * k;
    const index_t spatial = x.shape.spatial();
    const index_t width = x.shape.w;
    const cpu::Conv3dChunking chunking = cpu::conv3d_chunking(
        x.shape, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
    Tensor<T> col(flat_shape(chunking.scratch_elements));
    for (index_t n = 0; n < x.shape.n; ++n) {
      for (index_t chunk = 0; chunk < chunking.chunks; ++chunk) {
        const index_t row_begin = chunk * chunking.rows_per_chunk;
        const index_t row_end =
            std::min(row_begin + chunking.rows_per_chunk, x.shape.d * x.shape.h);
        const index_t cols = (row_end - row_begin) * width;
        cpu::conv3d_detail::im2col(x.data + n * x.shape.c * spatial, x.shape, k, row_begin,
                                   row_end, col.data());
        cpu::gemm_abt<T>(cout, col_rows, cols, dy.data + n * cout * spatial + row_begin * width,
                         spatial, col.data(), cols, dweight, col_rows);
      }
    }
    if (dbias != nullptr) cpu::conv3d_detail::accumulate_channel_sums(dy, dbias);
  }
};

}  // namespace revox::ops

namespace revox::cpu {

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
