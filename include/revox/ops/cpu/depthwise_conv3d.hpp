// revox/ops/cpu/depthwise_conv3d.hpp — depthwise 3x3x3 convolution (groups = channels,
// stride 1, zero padding 1) on the CPU: forward, backward-data and backward-weight, each
// with a plain reference in revox::cpu::reference beside the fast path.
//
//   x, y, dy, dx : (N, C, D, H, W), all of the same shape
//   weight       : (C, 1, 3, 3, 3), PyTorch's Conv3d(C, C, 3, padding=1, groups=C) layout
//   bias, dbias  : (C), or nullptr for none
//   forward:          y[n,c,d,h,w] = bias[c] + sum_{i,j,k in 0..2} weight[c,0,i,j,k] *
//                                    x[n,c,d+i-1,h+j-1,w+k-1]   (x outside the volume is 0)
//                     ASSIGNS y.
//   backward_data:    dx = the same correlation of dy with the kernel flipped along all three
//                     axes (and no bias): dx = (dy/dx)^T dy.                      ASSIGNS dx.
//   backward_weight:  dweight[c,0,i,j,k] += sum_{n,d,h,w} dy[n,c,d,h,w] * x[n,c,d+i-1,h+j-1,w+k-1]
//                     dbias[c] += sum_{n,d,h,w} dy[n,c,d,h,w] (skipped when dbias is nullptr).
//                     ACCUMULATES, summing in double.
// Preconditions: outputs do not overlap inputs; weight is not nullptr.
// Only the output view or dweight deduces T (the other arguments are written
// std::add_const_t<T> / std::add_pointer_t<T>, which do not deduce): callers may pass mutable
// views for inputs and a plain nullptr for bias and dbias.
//
// Fast path: OpenMP over (n, c) planes (forward, backward_data) or over channels
// (backward_weight). Each output row (d, h) reads nine input rows (i, j); rows that fall
// outside the volume are replaced by a row of zeros with zero weights, so the interior of the
// row (w = 1 .. W-2) is one bounds-check-free `omp simd` loop and only w = 0 and w = W-1 check
// bounds. Deterministic: every output element and every per-channel sum is computed by one
// thread in a fixed order, whatever the number of threads.
#pragma once

#include <initializer_list>
#include <type_traits>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::cpu {
namespace detail {

inline constexpr int kDepthwiseTaps = 27;
// Below this many elements a call runs on the calling thread: starting a team costs more.
inline constexpr index_t kDepthwiseParallelMin = index_t{1} << 15;

inline void check_depthwise_shapes(const char* op, const char* in_name, const Shape5& in,
                                   const char* out_name, const Shape5& out, const void* weight) {
  REVOX_CHECK(in == out, op, ": ", out_name, " shape ", out, " must equal ", in_name, " shape ",
              in, " (stride 1, padding 1)");
  REVOX_CHECK(weight != nullptr, op, ": weight must not be null");
}

template <class T>
inline T depthwise_row_taps(const T* row, const T* w3, index_t i) {
  return w3[0] * row[i - 1] + w3[1] * row[i] + w3[2] * row[i + 1];
}

// out = init + sum_{i,j,k} w27[9i+3j+k] * in[d+i-1, h+j-1, w+k-1] over one (D, H, W) plane.
// zero_row holds W zeros; it stands in for the input rows outside the plane.
template <class T>
void depthwise_correlate_plane(const T* in, const T* w27, T init, const T* zero_row, T* out,
                               index_t depth, index_t height, index_t width) {
  for (index_t d = 0; d < depth; ++d) {
    for (index_t h = 0; h < height; ++h) {
      const T* rows[9];
      T w[kDepthwiseTaps];
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          const index_t id = d + i - 1;
          const index_t ih = h + j - 1;
          const bool inside = id >= 0 && id < depth && ih >= 0 && ih < height;
          const int r = 3 * i + j;
          rows[r] = inside ? in + (id * height + ih) * width : zero_row;
          for (int k = 0; k < 3; ++k) w[3 * r + k] = inside ? w27[3 * r + k] : T(0);
        }
      }
      T* o = out + (d * height + h) * width;
      // The two edge columns, with bounds checks along W (they coincide when W == 1).
      for (const index_t edge : {index_t{0}, width - 1}) {
        T acc = init;
        for (int r = 0; r < 9; ++r) {
          for (int k = 0; k < 3; ++k) {
            const index_t src = edge + k - 1;
            if (src >= 0 && src < width) acc += w[3 * r + k] * rows[r][src];
          }
        }
        o[edge] = acc;
      }
      const T* r0 = rows[0];
      const T* r1 = rows[1];
      const T* r2 = rows[2];
      const T* r3 = rows[3];
      const T* r4 = rows[4];
      const T* r5 = rows[5];
      const T* r6 = rows[6];
      const T* r7 = rows[7];
      const T* r8 = rows[8];
#pragma omp simd
      for (index_t x = 1; x < width - 1; ++x) {
        o[x] = init + depthwise_row_taps(r0, w + 0, x) + depthwise_row_taps(r1, w + 3, x) +
               depthwise_row_taps(r2, w + 6, x) + depthwise_row_taps(r3, w + 9, x) +
               depthwise_row_taps(r4, w + 12, x) + depthwise_row_taps(r5, w + 15, x) +
               depthwise_row_taps(r6, w + 18, x) + depthwise_row_taps(r7, w + 21, x) +
               depthwise_row_taps(r8, w + 24, x);
      }
    }
  }
}

}  // namespace detail

template <class T>
void depthwise_conv3d_forward(TensorView<std::add_const_t<T>> x, std::add_const_t<T>* weight,
                              std::add_const_t<T>* bias, TensorView<T> y) {
  detail::check_depthwise_shapes("depthwise_conv3d_forward", "x", x.shape, "y", y.shape, weight);
  const Shape5 s = x.shape;
  if (s.empty()) return;
  const Tensor<T> zero_row = Tensor<T>::zeros(flat_shape(s.w));
  const T* zeros = zero_row.data();
  const index_t planes = s.n * s.c;
  const index_t plane = s.spatial();
#pragma omp parallel for schedule(static) if (s.numel() >= detail::kDepthwiseParallelMin)
  for (index_t p = 0; p < planes; ++p) {
    const index_t c = p % s.c;
    detail::depthwise_correlate_plane(x.data + p * plane, weight + c * detail::kDepthwiseTaps,
                                      bias != nullptr ? bias[c] : T(0), zeros,
                                      y.data + p * plane, s.d, s.h, s.w);
  }
}

template <class T>
void depthwise_conv3d_backward_data(TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  detail::check_depthwise_shapes("depthwise_conv3d_backward_data", "dy", dy.shape, "dx", dx.shape,
                                 weight);
  const Shape5 s = dy.shape;
  if (s.empty()) return;
  const Tensor<T> zero_row = Tensor<T>::zeros(flat_shape(s.w));
  const T* zeros = zero_row.data();
  const index_t planes = s.n * s.c;
  const index_t plane = s.spatial();
#pragma omp parallel for schedule(static) if (s.numel() >= detail::kDepthwiseParallelMin)
  for (index_t p = 0; p < planes; ++p) {
    const T* w = weight + (p % s.c) * detail::kDepthwiseTaps;
    // Tap (i, j, k) of the flipped kernel is tap (2-i, 2-j, 2-k), i.e. index 26 - index.
    T flipped[detail::kDepthwiseTaps];
    for (int t = 0; t < detail::kDepthwiseTaps; ++t) {
      flipped[t] = w[detail::kDepthwiseTaps - 1 - t];
    }
    detail::depthwise_correlate_plane(dy.data + p * plane, flipped, T(0), zeros,
                                      dx.data + p * plane, s.d, s.h, s.w);
  }
}

template <class T>
void depthwise_conv3d_backward_weight(TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  detail::check_depthwise_shapes("depthwise_conv3d_backward_weight", "x", x.shape, "dy",
                                 dy.shape, dweight);
  const Shape5 s = x.shape;
  if (s.empty()) return;
  const index_t width = s.w;
  // Channels are independent, so each thread owns whole channels and the sums of a channel
  // run over n, d, h in order: the result does not depend on the number of threads.
#pragma omp parallel for schedule(static) if (s.numel() >= detail::kDepthwiseParallelMin)
  for (index_t c = 0; c < s.c; ++c) {
    double acc[detail::kDepthwiseTaps] = {};
    double bias_acc = 0.0;
    for (index_t n = 0; n < s.n; ++n) {
      const T* xp = x.channel(n, c);
      const T* gp = dy.channel(n, c);
      for (index_t d = 0; d < s.d; ++d) {
        for (index_t h = 0; h < s.h; ++h) {
          const T* g = gp + (d * s.h + h) * width;
          if (dbias != nullptr) {
            T row_sum = 0;
#pragma omp simd reduction(+ : row_sum)
            for (index_t w = 0; w < width; ++w) row_sum += g[w];
            bias_acc += row_sum;
          }
          for (int i = 0; i < 3; ++i) {
            const index_t id = d + i - 1;
            if (id < 0 || id >= s.d) continue;
            for (int j = 0; j < 3; ++j) {
              const index_t ih = h + j - 1;
              if (ih < 0 || ih >= s.h) continue;
              const T* r = xp + (id * s.h + ih) * width;
              // s0, s1, s2: taps k = 0, 1, 2, which read x[w-1], x[w], x[w+1].
              T s0 = 0;
              T s1 = g[0] * r[0];
              T s2 = 0;
              if (width > 1) {
                s1 += g[width - 1] * r[width - 1];
                s2 = g[0] * r[1];
                s0 = g[width - 1] * r[width - 2];
#pragma omp simd reduction(+ : s0, s1, s2)
                for (index_t w = 1; w < width - 1; ++w) {
                  s0 += g[w] * r[w - 1];
                  s1 += g[w] * r[w];
                  s2 += g[w] * r[w + 1];
                }
              }
              double* a = acc + 3 * (3 * i + j);
              a[0] += s0;
              a[1] += s1;
              a[2] += s2;
            }
          }
        }
      }
    }
    T* dw = dweight + c * detail::kDepthwiseTaps;
    for (int t = 0; t < detail::kDepthwiseTaps; ++t) {
      dw[t] = static_cast<T>(static_cast<double>(dw[t]) + acc[t]);
    }
    if (dbias != nullptr) dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + bias_acc);
  }
}

// Plain loops straight from the definitions above, summing in double; what tests compare
// the fast path against.
namespace reference {

template <class T>
void depthwise_conv3d_forward(TensorView<std::add_const_t<T>> x, std::add_const_t<T>* weight,
                              std::add_const_t<T>* bias, TensorView<T> y) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_forward", "x", x.shape,
                                             "y", y.shape, weight);
  const Shape5 s = x.shape;
  for (index_t n = 0; n < s.n; ++n)
    for (index_t c = 0; c < s.c; ++c)
      for (index_t d = 0; d < s.d; ++d)
        for (index_t h = 0; h < s.h; ++h)
          for (index_t w = 0; w < s.w; ++w) {
            double acc = bias != nullptr ? static_cast<double>(bias[c]) : 0.0;
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 3; ++j)
                for (index_t k = 0; k < 3; ++k) {
                  const index_t id = d + i - 1, ih = h + j - 1, iw = w + k - 1;
                  if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  acc += static_cast<double>(weight[c * 27 + i * 9 + j * 3 + k]) *
                         static_cast<double>(x.at(n, c, id, ih, iw));
                }
            y.at(n, c, d, h, w) = static_cast<T>(acc);
          }
}

// dx[n,c,d,h,w] = sum over the outputs (od, oh, ow) = (d-i+1, h-j+1, w-k+1) that read x[d,h,w]
// through tap (i, j, k).
template <class T>
void depthwise_conv3d_backward_data(TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_backward_data", "dy",
                                             dy.shape, "dx", dx.shape, weight);
  const Shape5 s = dy.shape;
  for (index_t n = 0; n < s.n; ++n)
    for (index_t c = 0; c < s.c; ++c)
      for (index_t d = 0; d < s.d; ++d)
        for (index_t h = 0; h < s.h; ++h)
          for (index_t w = 0; w < s.w; ++w) {
            double acc = 0.0;
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 3; ++j)
                for (index_t k = 0; k < 3; ++k) {
                  const index_t od = d - i + 1, oh = h - j + 1, ow = w - k + 1;
                  if (od < 0 || od >= s.d || oh < 0 || oh >= s.h || ow < 0 || ow >= s.w) continue;
                  acc += static_cast<double>(weight[c * 27 + i * 9 + j * 3 + k]) *
                         static_cast<double>(dy.at(n, c, od, oh, ow));
                }
            dx.at(n, c, d, h, w) = static_cast<T>(acc);
          }
}

template <class T>
void depthwise_conv3d_backward_weight(TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_backward_weight", "x",
                                             x.shape, "dy", dy.shape, dweight);
  const Shape5 s = x.shape;
  for (index_t c = 0; c < s.c; ++c) {
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 3; ++j)
        for (index_t k = 0; k < 3; ++k) {
          double acc = 0.0;
          for (index_t n = 0; n < s.n; ++n)
            for (index_t d = 0; d < s.d; ++d)
              for (index_t h = 0; h < s.h; ++h)
                for (index_t w = 0; w < s.w; ++w) {
                  const index_t id = d + i - 1, ih = h + j - 1, iw = w + k - 1;
                  if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  acc += static_cast<double>(dy.at(n, c, d, h, w)) *
                         static_cast<double>(x.at(n, c, id, ih, iw));
                }
          T& dw = dweight[c * 27 + i * 9 + j * 3 + k];
          dw = static_cast<T>(static_cast<double>(dw) + acc);
        }
    if (dbias != nullptr) {
      double acc = 0.0;
      for (index_t n = 0; n < s.n; ++n)
        for (index_t i = 0; i < s.spatial(); ++i) acc += static_cast<double>(dy.channel(n, c)[i]);
      dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + acc);
    }
  }
}

}  // namespace reference
}  // namespace revox::cpu
