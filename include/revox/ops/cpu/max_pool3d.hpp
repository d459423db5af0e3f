// revox/ops/cpu/max_pool3d.hpp — 2x2x2 max pooling with stride 2 and no padding on the
// CPU (torch.nn.MaxPool3d(2)), forward and backward, beside a plain reference.
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
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::cpu {

namespace detail {

// Below this many input voxels the OpenMP fork costs more than the work.
inline constexpr index_t kMaxPoolParallelMin = index_t{1} << 16;

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

template <class T, bool kWriteArgmax>
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
#pragma omp simd
        for (index_t ow = 0; ow < out.w; ++ow) {
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

// argmax may be empty (inference): then only y is written.
template <class T>
void max_pool3d(TensorView<const T> x, TensorView<T> y, TensorView<std::uint8_t> argmax) {
  REVOX_ASSERT(x.shape.d >= 2 && x.shape.h >= 2 && x.shape.w >= 2);
  REVOX_ASSERT(y.shape == detail::max_pool3d_output_extent(x.shape));
  if (argmax.empty()) {
    detail::max_pool3d_forward_planes<T, false>(x, y, nullptr);
  } else {
    REVOX_ASSERT(argmax.shape == y.shape);
    detail::max_pool3d_forward_planes<T, true>(x, y, argmax.data);
  }
}

// dx has the input's shape; dy and argmax the output's.
template <class T>
void max_pool3d_backward(TensorView<const T> dy, TensorView<const std::uint8_t> argmax,
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
  // Windows do not overlap, so each (plane, od) writes its own two input slices whole:
  // window positions get dy or 0, floored-away trailing voxels get 0.
#pragma omp parallel for collapse(2) schedule(static) \
    if (in.numel() > detail::kMaxPoolParallelMin)
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
            T* dx_row = dx_slice + (2 * oh + kh) * row;
            const auto first = static_cast<std::uint8_t>((kd * 2 + kh) * 2);
            const auto second = static_cast<std::uint8_t>(first + 1);
#pragma omp simd
            for (index_t ow = 0; ow < out.w; ++ow) {
              const std::uint8_t position = argmax_row[ow];
              const T g = dy_row[ow];
              dx_row[2 * ow] = position == first ? g : T(0);
              dx_row[2 * ow + 1] = position == second ? g : T(0);
            }
            if (odd_w) dx_row[in.w - 1] = T(0);
          }
        }
        if (odd_h) {
          T* dx_row = dx_slice + (in.h - 1) * row;
          for (index_t w = 0; w < in.w; ++w) dx_row[w] = T(0);
        }
      }
      if (odd_d && od == out.d - 1) {
        T* dx_slice = dx_plane + (in.d - 1) * slice;
        for (index_t i = 0; i < slice; ++i) dx_slice[i] = T(0);
      }
    }
  }
}

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
