// revox/ops/cpu/max_pool3d.hpp — MaxPool3dKernels<Cpu>: 2x2x2 max pooling with stride 2 and
// no padding on the CPU (torch.nn.MaxPool3d(2)), forward and backward, beside a plain
// reference.
//
// Shapes:   x (N, C, D, H, W) with D, H, W >= 2; y and argmax (N, C, D/2, H/2, W/2), floored:
//           a trailing odd row, column or slice of x is never read.
// Forward:  y ASSIGNED with the maximum of each window; argmax ASSIGNED, one byte per output,
//           with the window position (kd * 2 + kh) * 2 + kw of that maximum (skipped when
//           argmax is empty). Ties and NaN exactly as PyTorch's CPU kernel: the window is
//           scanned in (kd, kh, kw) order and a value replaces the maximum when
//           `value > max || isnan(value)`, so the first of equal maxima wins and the last
//           NaN in a window wins (its y is NaN).
// Backward: dx ASSIGNED: dy of each window routed to the argmax position, 0 elsewhere,
//           including the floored-away trailing voxels.
// Fast path: OpenMP over (plane, output slice); every output and dx row is written by one
//           thread. The forward scans N windows at once with simd.hpp vectors (each input
//           row's even and odd lanes deinterleaved) where the compiler has vector shuffles,
//           the leftover windows one by one. The backward builds each dx row in a per-thread
//           buffer and copies it out, with streaming stores when dx has kMaxPoolStreamBytes
//           or more.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/simd.hpp"
#include "revox/ops/max_pool3d.hpp"

namespace revox::cpu {

namespace detail {

// Below this many input voxels the OpenMP fork costs more than the work.
inline constexpr index_t kMaxPoolParallelMin = index_t{1} << 16;
// A dx of at least this many bytes is written with streaming stores (simd.hpp).
inline constexpr index_t kMaxPoolStreamBytes = index_t{16} << 20;

inline Shape5 max_pool3d_output_extent(const Shape5& in) {
  return Shape5{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};
}

// One window position of the scan: replace the running maximum as PyTorch does.
template <class T>
inline void max_pool3d_take(T value, std::uint8_t position, T& best, std::uint8_t& best_position) {
  const bool take = value > best || std::isnan(value);
  best = take ? value : best;
  best_position = take ? position : best_position;
}

#if REVOX_SIMD_SHUFFLE
// One output row of N-lane blocks: the four input rows' even and odd lanes (kw = 0, 1) are
// deinterleaved, then the eight window positions are scanned in order with the same rule as
// max_pool3d_take, lane-wise. Returns the first output column not done (the leftover < N).
template <class T, int N, bool kWriteArgmax>
index_t max_pool3d_row_vectors(const T* const rows[4], index_t out_w, T* y_row,
                               std::uint8_t* argmax_row) {
  using V = simd::Vec<T, N>;
  using Mask = decltype(V{} > V{});
  using Bytes = simd::Vec<std::uint8_t, N>;
  index_t ow = 0;
  for (; ow + N <= out_w; ow += N) {
    V best{};
    Mask best_position{};
    Mask position{};
    for (int r = 0; r < 4; ++r) {
      V lo{}, hi{}, lanes[2] = {};
      simd::load<T, N>(lo, rows[r] + 2 * ow);
      simd::load<T, N>(hi, rows[r] + 2 * ow + N);
      simd::deinterleave<T, N>(lo, hi, lanes[0], lanes[1]);
      for (int kw = 0; kw < 2; ++kw) {
        const V value = lanes[kw];
        if (r == 0 && kw == 0) {
          best = value;
        } else {
          const Mask take = (value > best) | (value != value);
          best = take ? value : best;
          best_position = take ? position : best_position;
        }
        position += 1;
      }
    }
    simd::store<T, N>(y_row + ow, best);
    if constexpr (kWriteArgmax) {
      const Bytes bytes = __builtin_convertvector(best_position, Bytes);
      std::memcpy(argmax_row + ow, &bytes, N);
    }
  }
  return ow;
}
#endif

#if REVOX_SIMD_SHUFFLE
// N argmax bytes widened to the lanes of a comparison mask of N T lanes. GCC 12 lowers
// __builtin_convertvector from bytes to 32-bit lanes one byte at a time, which made the
// backward 2x slower than the plain loop; x86's zero-extending moves do it in one
// instruction.
// (An out-parameter, like simd.hpp's: returning a vector wider than the baseline target's
// registers changes the ABI and GCC warns.)
template <class Mask, int N>
REVOX_SIMD_INLINE void max_pool3d_widen_positions(Mask& out, const std::uint8_t* p) {
#if REVOX_SIMD_X86_STREAM && defined(__AVX512F__)
  if constexpr (sizeof(Mask) == 64 && N == 16) {
    // The zero-masked form: the unmasked one trips GCC 12's -Wmaybe-uninitialized inside
    // its own header (_mm512_undefined_epi32).
    const __m512i wide = _mm512_maskz_cvtepu8_epi32(
        __mmask16(0xFFFF), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    std::memcpy(&out, &wide, sizeof(out));
    return;
  }
#endif
#if REVOX_SIMD_X86_STREAM && defined(__AVX2__)
  if constexpr (sizeof(Mask) == 32 && N == 8) {
    const __m256i wide =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    std::memcpy(&out, &wide, sizeof(out));
    return;
  }
#endif
  simd::Vec<std::uint8_t, N> bytes{};
  std::memcpy(&bytes, p, N);
  out = __builtin_convertvector(bytes, Mask);
}

// One dx row of the backward (kernel row (kd, kh), window positions first and first + 1),
// N outputs at a time: dy where the argmax is the position, 0 elsewhere, the two columns
// interleaved. Returns the first output column not done (the leftover < N). Written with
// explicit vectors because a single loop over out.w left out.w % 32 outputs to a scalar
// epilogue with a branch per element: a third of each row at W = 96, 2.4x slower overall.
template <class T, int N>
index_t max_pool3d_backward_row_vectors(const T* dy_row, const std::uint8_t* argmax_row,
                                        index_t out_w, std::uint8_t first, T* buffer) {
  using V = simd::Vec<T, N>;
  using Mask = decltype(V{} > V{});
  const V zero{};
  index_t ow = 0;
  for (; ow + N <= out_w; ow += N) {
    V g{};
    simd::load<T, N>(g, dy_row + ow);
    Mask position{};
    max_pool3d_widen_positions<Mask, N>(position, argmax_row + ow);
    const V even = position == static_cast<Mask>(Mask{} + first) ? g : zero;
    const V odd = position == static_cast<Mask>(Mask{} + (first + 1)) ? g : zero;
    V lo{}, hi{};
    simd::interleave<T, N>(even, odd, lo, hi);
    simd::store<T, N>(buffer + 2 * ow, lo);
    simd::store<T, N>(buffer + 2 * ow + N, hi);
  }
  return ow;
}
#endif

template <class T, int N, bool kWriteArgmax>
void max_pool3d_forward_planes(TensorView<const T> x, TensorView<T> y,
                               std::uint8_t* argmax) {
  const Shape5 in = x.shape;
  const Shape5 out = y.shape;
  const index_t planes = in.n * in.c;
  const index_t in_plane = in.spatial();
  const index_t out_plane = out.spatial();
  const index_t row = in.w;
  const index_t slice = in.h * in.w;
#pragma omp parallel for collapse(2) schedule(static) if (in.numel() > kMaxPoolParallelMin)
  for (index_t p = 0; p < planes; ++p) {
    for (index_t od = 0; od < out.d; ++od) {
      for (index_t oh = 0; oh < out.h; ++oh) {
        const T* r00 = x.data + p * in_plane + (2 * od) * slice + (2 * oh) * row;
        const T* r01 = r00 + row;
        const T* r10 = r00 + slice;
        const T* r11 = r10 + row;
        const index_t out_row = p * out_plane + (od * out.h + oh) * out.w;
        T* y_row = y.data + out_row;
        index_t first = 0;
#if REVOX_SIMD_SHUFFLE
        const T* const rows[4] = {r00, r01, r10, r11};
        first = max_pool3d_row_vectors<T, N, kWriteArgmax>(
            rows, out.w, y_row, kWriteArgmax ? argmax + out_row : nullptr);
#endif
#pragma omp simd
        for (index_t ow = first; ow < out.w; ++ow) {
          const index_t w0 = 2 * ow;
          T best = r00[w0];
          std::uint8_t best_position = 0;
          max_pool3d_take(r00[w0 + 1], 1, best, best_position);
          max_pool3d_take(r01[w0], 2, best, best_position);
          max_pool3d_take(r01[w0 + 1], 3, best, best_position);
          max_pool3d_take(r10[w0], 4, best, best_position);
          max_pool3d_take(r10[w0 + 1], 5, best, best_position);
          max_pool3d_take(r11[w0], 6, best, best_position);
          max_pool3d_take(r11[w0 + 1], 7, best, best_position);
          y_row[ow] = best;
          if constexpr (kWriteArgmax) argmax[out_row + ow] = best_position;
        }
      }
    }
  }
}

}  // namespace detail

namespace detail {

// The forward at vector width N (the public function uses the native width).
template <class T, int N>
void max_pool3d_impl(TensorView<const T> x, TensorView<T> y, TensorView<std::uint8_t> argmax) {
  REVOX_ASSERT(x.shape.d >= 2 && x.shape.h >= 2 && x.shape.w >= 2);
  REVOX_ASSERT(y.shape == max_pool3d_output_extent(x.shape));
  if (argmax.empty()) {
    max_pool3d_forward_planes<T, N, false>(x, y, nullptr);
  } else {
    REVOX_ASSERT(argmax.shape == y.shape);
    max_pool3d_forward_planes<T, N, true>(x, y, argmax.data);
  }
}

}  // namespace detail

namespace detail {

// The backward at vector width N (the public function uses the native width).
template <class T, int N>
void max_pool3d_backward_impl(TensorView<const T> dy, TensorView<const std::uint8_t> argmax,
                              TensorView<T> dx) {
  const Shape5 in = dx.shape;
  const Shape5 out = dy.shape;
  REVOX_ASSERT(out == detail::max_pool3d_output_extent(in));
  REVOX_ASSERT(argmax.shape == out);
  const index_t planes = in.n * in.c;
  const index_t in_plane = in.spatial();
  const index_t out_plane = out.spatial();
  const index_t row = in.w;
  const index_t slice = in.h * in.w;
  const bool odd_w = in.w % 2 != 0;
  const bool odd_h = in.h % 2 != 0;
  const bool odd_d = in.d % 2 != 0;
  const bool stream = in.numel() * static_cast<index_t>(sizeof(T)) >= detail::kMaxPoolStreamBytes;
  // Windows do not overlap, so each (plane, od) writes its own two input slices whole:
  // window positions get dy or 0, floored-away trailing voxels get 0. Each dx row is built in
  // a per-thread row buffer and copied out (with streaming stores for large dx).
#pragma omp parallel if (in.numel() > detail::kMaxPoolParallelMin)
  {
    std::vector<T> row_buffer(static_cast<std::size_t>(in.w), T(0));
    T* buffer = row_buffer.data();
    auto write_row = [&](T* dx_row) {
      if (stream) {
        simd::stream_row<T, N>(buffer, in.w, dx_row);
      } else {
        std::memcpy(dx_row, buffer, static_cast<std::size_t>(in.w) * sizeof(T));
      }
    };
#pragma omp for collapse(2) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      for (index_t od = 0; od < out.d; ++od) {
        T* dx_plane = dx.data + p * in_plane;
        for (index_t kd = 0; kd < 2; ++kd) {
          T* dx_slice = dx_plane + (2 * od + kd) * slice;
          for (index_t oh = 0; oh < out.h; ++oh) {
            const index_t out_row = p * out_plane + (od * out.h + oh) * out.w;
            const T* dy_row = dy.data + out_row;
            const std::uint8_t* argmax_row = argmax.data + out_row;
            for (index_t kh = 0; kh < 2; ++kh) {
              const auto first = static_cast<std::uint8_t>((kd * 2 + kh) * 2);
              const auto second = static_cast<std::uint8_t>(first + 1);
              index_t done = 0;
#if REVOX_SIMD_SHUFFLE
              done = detail::max_pool3d_backward_row_vectors<T, N>(dy_row, argmax_row, out.w,
                                                                   first, buffer);
#endif
#pragma omp simd
              for (index_t ow = done; ow < out.w; ++ow) {
                const std::uint8_t position = argmax_row[ow];
                const T g = dy_row[ow];
                buffer[2 * ow] = position == first ? g : T(0);
                buffer[2 * ow + 1] = position == second ? g : T(0);
              }
              if (odd_w) buffer[in.w - 1] = T(0);
              write_row(dx_slice + (2 * oh + kh) * row);
            }
          }
          if (odd_h) {
            std::fill(buffer, buffer + in.w, T(0));
            write_row(dx_slice + (in.h - 1) * row);
          }
        }
        if (odd_d && od == out.d - 1) {
          std::fill(buffer, buffer + in.w, T(0));
          for (index_t h = 0; h < in.h; ++h) write_row(dx_plane + (in.d - 1) * slice + h * row);
        }
      }
    }
    simd::stream_fence();
  }
}

}  // namespace detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct MaxPool3dKernels<Cpu> {
  // argmax may be empty (inference): then only y is written.
  template <class T>
  static void max_pool3d(const Cpu& /*dev*/, TensorView<const T> x, TensorView<T> y,
                         TensorView<std::uint8_t> argmax) {
    cpu::detail::max_pool3d_impl<T, cpu::simd::native_lanes<T>>(x, y, argmax);
  }

  // dx has the input's shape; dy and argmax the output's.
  template <class T>
  static void max_pool3d_backward(const Cpu& /*dev*/, TensorView<const T> dy,
                                  TensorView<const std::uint8_t> argmax, TensorView<T> dx) {
    cpu::detail::max_pool3d_backward_impl<T, cpu::simd::native_lanes<T>>(dy, argmax, dx);
  }
};

}  // namespace revox::ops

namespace revox::cpu {

// Straight from the definition: PyTorch's scan from -inf, then a scatter-add backward.
namespace reference {

template <class T>
void max_pool3d(TensorView<const T> x, TensorView<T> y, TensorView<std::uint8_t> argmax) {
  const Shape5 out = y.shape;
  for (index_t n = 0; n < out.n; ++n)
    for (index_t c = 0; c < out.c; ++c)
      for (index_t od = 0; od < out.d; ++od)
        for (index_t oh = 0; oh < out.h; ++oh)
          for (index_t ow = 0; ow < out.w; ++ow) {
            T best = -std::numeric_limits<T>::infinity();
            int best_position = 0;
            for (int kd = 0; kd < 2; ++kd)
              for (int kh = 0; kh < 2; ++kh)
                for (int kw = 0; kw < 2; ++kw) {
                  const T v = x.at(n, c, 2 * od + kd, 2 * oh + kh, 2 * ow + kw);
                  if (v > best || std::isnan(v)) {
                    best = v;
                    best_position = (kd * 2 + kh) * 2 + kw;
                  }
                }
            y.at(n, c, od, oh, ow) = best;
            if (!argmax.empty()) {
              argmax.at(n, c, od, oh, ow) = static_cast<std::uint8_t>(best_position);
            }
          }
}

template <class T>
void max_pool3d_backward(TensorView<const T> dy, TensorView<const std::uint8_t> argmax,
                         TensorView<T> dx) {
  for (index_t i = 0; i < dx.numel(); ++i) dx[i] = T(0);
  const Shape5 out = dy.shape;
  for (index_t n = 0; n < out.n; ++n)
    for (index_t c = 0; c < out.c; ++c)
      for (index_t od = 0; od < out.d; ++od)
        for (index_t oh = 0; oh < out.h; ++oh)
          for (index_t ow = 0; ow < out.w; ++ow) {
            const int position = argmax.at(n, c, od, oh, ow);
            const index_t kd = position / 4;
            const index_t kh = (position / 2) % 2;
            const index_t kw = position % 2;
            dx.at(n, c, 2 * od + kd, 2 * oh + kh, 2 * ow + kw) += dy.at(n, c, od, oh, ow);
          }
}

}  // namespace reference
}  // namespace revox::cpu
