// revox/ops/cpu/upsample_trilinear.hpp — trilinear upsampling by 2 on D, H and W with
// align_corners=False on the CPU (torch.nn.Upsample(scale_factor=2, mode="trilinear")),
// forward and backward, beside a plain 8-tap reference.
//
// Shapes:   x (N, C, D, H, W)  ->  y (N, C, 2D, 2H, 2W), any positive extents.
// Taps:     on an axis of input size n, output index o reads
//             src = max((o + 0.5) * 0.5 - 0.5, 0),  i0 = floor(src),
//             i1 = i0 + (i0 < n - 1 ? 1 : 0),  l1 = src - i0,  l0 = 1 - l1,
//           computed in T as PyTorch does, and y is the product of the three axes' taps
//           (8 terms, zero weights included, so NaN/inf spread as in PyTorch). With scale 2
//           the weights are exactly 1/0 at the first output, 0.25/0.75 inside, and the
//           last output reads only the last input.
// Forward:  y ASSIGNED. Backward: dx ASSIGNED with the transpose (adjoint) of the forward.
// Fast path: per-axis tap tables (O(extent) host memory), separable: D and H are blended
//           into one input-width row, then W is expanded; the backward contracts D and H
//           into one output-width row, then W. OpenMP over (n*c, output or input slice):
//           every thread owns whole rows of y or dx, and each sum runs in a fixed order,
//           so results do not depend on the thread count. Small volumes run serially.
#pragma once

#include <cstddef>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::cpu {

namespace detail {

// The two input taps of one output index on one axis.
template <class T>
struct UpsampleTap {
  index_t i0 = 0;
  index_t i1 = 0;
  T l0 = T(1);
  T l1 = T(0);
};

template <class T>
UpsampleTap<T> upsample_linear_tap(index_t o, index_t n) {
  T src = (static_cast<T>(o) + T(0.5)) * T(0.5) - T(0.5);
  if (src < T(0)) src = T(0);
  UpsampleTap<T> tap;
  tap.i0 = static_cast<index_t>(src);  // floor: src >= 0
  if (tap.i0 > n - 1) tap.i0 = n - 1;
  tap.i1 = tap.i0 + (tap.i0 < n - 1 ? 1 : 0);
  tap.l1 = src - static_cast<T>(tap.i0);
  tap.l0 = T(1) - tap.l1;
  return tap;
}

template <class T>
std::vector<UpsampleTap<T>> upsample_linear_taps(index_t n) {
  std::vector<UpsampleTap<T>> taps(static_cast<std::size_t>(2 * n));
  for (index_t o = 0; o < 2 * n; ++o) taps[static_cast<std::size_t>(o)] = upsample_linear_tap<T>(o, n);
  return taps;
}

// The transpose of one axis' taps: for input index i, the (output index, weight) pairs that
// read it, in increasing output order (CSR: entries [offsets[i], offsets[i + 1])).
template <class T>
struct UpsampleAdjoint {
  std::vector<index_t> offsets;
  std::vector<index_t> outputs;
  std::vector<T> weights;
};

template <class T>
UpsampleAdjoint<T> upsample_linear_adjoint(index_t n) {
  const std::vector<UpsampleTap<T>> taps = upsample_linear_taps<T>(n);
  UpsampleAdjoint<T> adjoint;
  adjoint.offsets.assign(static_cast<std::size_t>(n + 1), 0);
  for (const auto& tap : taps) {
    ++adjoint.offsets[static_cast<std::size_t>(tap.i0 + 1)];
    ++adjoint.offsets[static_cast<std::size_t>(tap.i1 + 1)];
  }
  for (index_t i = 0; i < n; ++i) {
    adjoint.offsets[static_cast<std::size_t>(i + 1)] += adjoint.offsets[static_cast<std::size_t>(i)];
  }
  adjoint.outputs.resize(taps.size() * 2);
  adjoint.weights.resize(taps.size() * 2);
  std::vector<index_t> next(adjoint.offsets.begin(), adjoint.offsets.end() - 1);
  for (index_t o = 0; o < 2 * n; ++o) {
    const auto& tap = taps[static_cast<std::size_t>(o)];
    const auto k0 = static_cast<std::size_t>(next[static_cast<std::size_t>(tap.i0)]++);
    adjoint.outputs[k0] = o;
    adjoint.weights[k0] = tap.l0;
    const auto k1 = static_cast<std::size_t>(next[static_cast<std::size_t>(tap.i1)]++);
    adjoint.outputs[k1] = o;
    adjoint.weights[k1] = tap.l1;
  }
  return adjoint;
}

// Below this many output voxels the OpenMP fork costs more than the work.
inline constexpr index_t kUpsampleParallelMin = index_t{1} << 15;

inline Shape5 upsample_trilinear_output_extent(const Shape5& in) {
  return Shape5{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
}

}  // namespace detail

template <class T>
void upsample_trilinear(TensorView<const T> x, TensorView<T> y) {
  const Shape5 in = x.shape;
  const Shape5 out = y.shape;
  REVOX_ASSERT(in.valid());
  REVOX_ASSERT(out == detail::upsample_trilinear_output_extent(in));
  const auto taps_d = detail::upsample_linear_taps<T>(in.d);
  const auto taps_h = detail::upsample_linear_taps<T>(in.h);
  const auto first_w = detail::upsample_linear_tap<T>(0, in.w);
  const auto last_w = detail::upsample_linear_tap<T>(out.w - 1, in.w);
  const index_t planes = in.n * in.c;
  const index_t in_w = in.w;
#pragma omp parallel if (out.numel() > detail::kUpsampleParallelMin)
  {
    std::vector<T> blend_row(static_cast<std::size_t>(in_w));  // D and H blended, width W
    T* blend = blend_row.data();
#pragma omp for collapse(2) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      for (index_t od = 0; od < out.d; ++od) {
        const auto& td = taps_d[static_cast<std::size_t>(od)];
        const T* x_plane = x.data + p * in.spatial();
        const T* slice0 = x_plane + td.i0 * in.h * in_w;
        const T* slice1 = x_plane + td.i1 * in.h * in_w;
        for (index_t oh = 0; oh < out.h; ++oh) {
          const auto& th = taps_h[static_cast<std::size_t>(oh)];
          const T* r00 = slice0 + th.i0 * in_w;
          const T* r01 = slice0 + th.i1 * in_w;
          const T* r10 = slice1 + th.i0 * in_w;
          const T* r11 = slice1 + th.i1 * in_w;
#pragma omp simd
          for (index_t w = 0; w < in_w; ++w) {
            blend[w] = td.l0 * (th.l0 * r00[w] + th.l1 * r01[w]) +
                       td.l1 * (th.l0 * r10[w] + th.l1 * r11[w]);
          }
          T* y_row = y.data + p * out.spatial() + (od * out.h + oh) * out.w;
          y_row[0] = first_w.l0 * blend[first_w.i0] + first_w.l1 * blend[first_w.i1];
          // Inside the row, outputs 2k + 1 and 2k + 2 both read inputs k and k + 1, with
          // the taps (0.75, 0.25) and (0.25, 0.75): exactly the values of the tables.
#pragma omp simd
          for (index_t k = 0; k < in_w - 1; ++k) {
            const T left = blend[k];
            const T right = blend[k + 1];
            y_row[2 * k + 1] = T(0.75) * left + T(0.25) * right;
            y_row[2 * k + 2] = T(0.25) * left + T(0.75) * right;
          }
          y_row[out.w - 1] = last_w.l0 * blend[last_w.i0] + last_w.l1 * blend[last_w.i1];
        }
      }
    }
  }
}

// dy (N, C, 2D, 2H, 2W) -> dx (N, C, D, H, W), ASSIGNED.
template <class T>
void upsample_trilinear_backward(TensorView<const T> dy, TensorView<T> dx) {
  const Shape5 in = dx.shape;
  const Shape5 out = dy.shape;
  REVOX_ASSERT(in.valid());
  REVOX_ASSERT(out == detail::upsample_trilinear_output_extent(in));
  const auto adj_d = detail::upsample_linear_adjoint<T>(in.d);
  const auto adj_h = detail::upsample_linear_adjoint<T>(in.h);
  const auto adj_w = detail::upsample_linear_adjoint<T>(in.w);
  const index_t planes = in.n * in.c;
  const index_t out_w = out.w;
#pragma omp parallel if (out.numel() > detail::kUpsampleParallelMin)
  {
    std::vector<T> gathered_row(static_cast<std::size_t>(out_w));  // D and H contracted
    T* gathered = gathered_row.data();
#pragma omp for collapse(2) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      for (index_t d = 0; d < in.d; ++d) {
        const T* dy_plane = dy.data + p * out.spatial();
        T* dx_slice = dx.data + p * in.spatial() + d * in.h * in.w;
        const auto d_begin = adj_d.offsets[static_cast<std::size_t>(d)];
        const auto d_end = adj_d.offsets[static_cast<std::size_t>(d + 1)];
        for (index_t h = 0; h < in.h; ++h) {
          const auto h_begin = adj_h.offsets[static_cast<std::size_t>(h)];
          const auto h_end = adj_h.offsets[static_cast<std::size_t>(h + 1)];
#pragma omp simd
          for (index_t ow = 0; ow < out_w; ++ow) gathered[ow] = T(0);
          for (index_t kd = d_begin; kd < d_end; ++kd) {
            const index_t od = adj_d.outputs[static_cast<std::size_t>(kd)];
            const T wd = adj_d.weights[static_cast<std::size_t>(kd)];
            for (index_t kh = h_begin; kh < h_end; ++kh) {
              const index_t oh = adj_h.outputs[static_cast<std::size_t>(kh)];
              const T weight = wd * adj_h.weights[static_cast<std::size_t>(kh)];
              const T* dy_row = dy_plane + (od * out.h + oh) * out_w;
#pragma omp simd
              for (index_t ow = 0; ow < out_w; ++ow) gathered[ow] += weight * dy_row[ow];
            }
          }
          T* dx_row = dx_slice + h * in.w;
          for (index_t w = 0; w < in.w; ++w) {
            T sum = T(0);
            const auto w_end = adj_w.offsets[static_cast<std::size_t>(w + 1)];
            for (auto k = adj_w.offsets[static_cast<std::size_t>(w)]; k < w_end; ++k) {
              sum += adj_w.weights[static_cast<std::size_t>(k)] *
                     gathered[adj_w.outputs[static_cast<std::size_t>(k)]];
            }
            dx_row[w] = sum;
          }
        }
      }
    }
  }
}

// The 8-tap formula per output voxel, and its scatter-add transpose, straight from the
// definition (the source index computed inline, not from the fast path's tables).
namespace reference {

template <class T>
void upsample_source_index(index_t o, index_t n, index_t& i0, index_t& i1, T& l0, T& l1) {
  T src = (static_cast<T>(o) + T(0.5)) * T(0.5) - T(0.5);
  src = src < T(0) ? T(0) : src;
  i0 = static_cast<index_t>(src);
  i1 = i0 < n - 1 ? i0 + 1 : i0;
  l1 = src - static_cast<T>(i0);
  l0 = T(1) - l1;
}

template <class T>
void upsample_trilinear(TensorView<const T> x, TensorView<T> y) {
  const Shape5 in = x.shape;
  const Shape5 out = y.shape;
  for (index_t n = 0; n < out.n; ++n)
    for (index_t c = 0; c < out.c; ++c)
      for (index_t od = 0; od < out.d; ++od)
        for (index_t oh = 0; oh < out.h; ++oh)
          for (index_t ow = 0; ow < out.w; ++ow) {
            index_t d0, d1, h0, h1, w0, w1;
            T ld0, ld1, lh0, lh1, lw0, lw1;
            upsample_source_index(od, in.d, d0, d1, ld0, ld1);
            upsample_source_index(oh, in.h, h0, h1, lh0, lh1);
            upsample_source_index(ow, in.w, w0, w1, lw0, lw1);
            auto v = [&](index_t d, index_t h, index_t w) { return x.at(n, c, d, h, w); };
            y.at(n, c, od, oh, ow) =
                ld0 * (lh0 * (lw0 * v(d0, h0, w0) + lw1 * v(d0, h0, w1)) +
                       lh1 * (lw0 * v(d0, h1, w0) + lw1 * v(d0, h1, w1))) +
                ld1 * (lh0 * (lw0 * v(d1, h0, w0) + lw1 * v(d1, h0, w1)) +
                       lh1 * (lw0 * v(d1, h1, w0) + lw1 * v(d1, h1, w1)));
          }
}

template <class T>
void upsample_trilinear_backward(TensorView<const T> dy, TensorView<T> dx) {
  const Shape5 in = dx.shape;
  const Shape5 out = dy.shape;
  for (index_t i = 0; i < dx.numel(); ++i) dx[i] = T(0);
  for (index_t n = 0; n < out.n; ++n)
    for (index_t c = 0; c < out.c; ++c)
      for (index_t od = 0; od < out.d; ++od)
        for (index_t oh = 0; oh < out.h; ++oh)
          for (index_t ow = 0; ow < out.w; ++ow) {
            index_t d0, d1, h0, h1, w0, w1;
            T ld0, ld1, lh0, lh1, lw0, lw1;
            upsample_source_index(od, in.d, d0, d1, ld0, ld1);
            upsample_source_index(oh, in.h, h0, h1, lh0, lh1);
            upsample_source_index(ow, in.w, w0, w1, lw0, lw1);
            const T g = dy.at(n, c, od, oh, ow);
            dx.at(n, c, d0, h0, w0) += ld0 * lh0 * lw0 * g;
            dx.at(n, c, d0, h0, w1) += ld0 * lh0 * lw1 * g;
            dx.at(n, c, d0, h1, w0) += ld0 * lh1 * lw0 * g;
            dx.at(n, c, d0, h1, w1) += ld0 * lh1 * lw1 * g;
            dx.at(n, c, d1, h0, w0) += ld1 * lh0 * lw0 * g;
            dx.at(n, c, d1, h0, w1) += ld1 * lh0 * lw1 * g;
            dx.at(n, c, d1, h1, w0) += ld1 * lh1 * lw0 * g;
            dx.at(n, c, d1, h1, w1) += ld1 * lh1 * lw1 * g;
          }
}

}  // namespace reference
}  // namespace revox::cpu
