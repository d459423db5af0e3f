// revox/ops/cpu/upsample_trilinear.hpp — UpsampleTrilinearKernels<Cpu>: trilinear upsampling
// by 2 on D, H and W with align_corners=False on the CPU (torch.nn.Upsample(scale_factor=2,
// mode="trilinear")), forward and backward, beside a plain 8-tap reference.
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
//           into one input-width row, then W is expanded (simd.hpp vectors: N output pairs
//           computed at once and interleaved into place; outputs of kUpsampleStreamBytes or
//           more written with streaming stores); the backward contracts D and H into one
//           output-width row, then W (its even and odd lanes deinterleaved, four taps per
//           input inside the row, the adjoint table at the edges). OpenMP over (n*c, output
//           or input slice): every thread owns whole rows of y or dx, and each sum runs in a
//           fixed order, so results do not depend on the thread count. Small volumes run
//           serially.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/simd.hpp"
#include "revox/ops/upsample_trilinear.hpp"

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
// Outputs of at least this many bytes are written with streaming stores (simd.hpp): far
// larger than the caches, they would only cost write-allocation reads there.
inline constexpr index_t kUpsampleStreamBytes = index_t{16} << 20;
// Entries of an input's adjoint along one axis: 4 inside (outputs 2k-1 .. 2k+2), at most 5
// at the edges (input 1 also gets output 0's zero-weight tap), so at most 25 (od, oh) rows
// per input row.
inline constexpr int kUpsampleMaxEntries = 25;

inline Shape5 upsample_trilinear_output_extent(const Shape5& in) {
  return Shape5{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
}

}  // namespace detail

namespace detail {

// The D/H blend of one output row: the four input rows r00, r01 (slice i0, rows i0 and i1
// along H), r10, r11 (slice i1) weighted by the D taps (wd0, wd1) and H taps (wh0, wh1).
template <class T>
struct UpsampleBlend {
  const T* r00;
  const T* r01;
  const T* r10;
  const T* r11;
  T wd0, wd1, wh0, wh1;

  T at(index_t w) const {
    return wd0 * (wh0 * r00[w] + wh1 * r01[w]) + wd1 * (wh0 * r10[w] + wh1 * r11[w]);
  }
  template <int N>
  void vector_at(index_t w, simd::Vec<T, N>& b) const {
    simd::Vec<T, N> a00, a01, a10, a11;
    simd::load<T, N>(a00, r00 + w);
    simd::load<T, N>(a01, r01 + w);
    simd::load<T, N>(a10, r10 + w);
    simd::load<T, N>(a11, r11 + w);
    b = wd0 * (wh0 * a00 + wh1 * a01) + wd1 * (wh0 * a10 + wh1 * a11);
  }
};

// One output row along W from its blended input row b[0..n): inside the row, outputs 2k and
// 2k+1 read
//   y[2k] = 0.25 b[k-1] + 0.75 b[k],   y[2k+1] = 0.75 b[k] + 0.25 b[k+1]
// exactly the tables' taps; y[0] and y[2n-1] use the edge taps. N pairs at a time: the
// blended vectors stay in registers (their neighbours by lane shifts, no reload of a row
// just stored) and are interleaved into place.
template <class T, int N>
void upsample_expand_row(const UpsampleBlend<T>& blend, index_t n, const UpsampleTap<T>& first,
                         const UpsampleTap<T>& last, bool stream, T* y_row) {
  using V = simd::Vec<T, N>;
  const T y_first = first.l0 * blend.at(first.i0) + first.l1 * blend.at(first.i1);
  const T y_last = last.l0 * blend.at(last.i0) + last.l1 * blend.at(last.i1);
  const index_t vectors = n / N;
  if (vectors > 0) {
    V previous{}, current{}, next{};
    blend.template vector_at<N>(0, current);
    previous = current;  // reaches y[0] only, which is replaced
    for (index_t j = 0; j < vectors; ++j) {
      const index_t k = j * N;
      if (j + 1 < vectors) {
        blend.template vector_at<N>(k + N, next);
      } else {
        // Only lane 0 is read: b[k + N], or nothing that survives when k + N == n.
        simd::broadcast<T, N>(next, k + N < n ? blend.at(k + N) : T(0));
      }
      V left{}, right{};
      simd::shift_in<T, N>(previous, current, left);
      simd::shift_out<T, N>(current, next, right);
      const V even = T(0.25) * left + T(0.75) * current;
      const V odd = T(0.75) * current + T(0.25) * right;
      V lo{}, hi{};
      simd::interleave<T, N>(even, odd, lo, hi);
      if (k == 0) lo[0] = y_first;
      if (k + N == n) hi[N - 1] = y_last;
      if (stream) {
        simd::stream_store<T, N>(y_row + 2 * k, lo);
        simd::stream_store<T, N>(y_row + 2 * k + N, hi);
      } else {
        simd::store<T, N>(y_row + 2 * k, lo);
        simd::store<T, N>(y_row + 2 * k + N, hi);
      }
      previous = current;
      current = next;
    }
  }
  for (index_t k = vectors * N; k < n; ++k) {
    const T centre = blend.at(k);
    y_row[2 * k] = k == 0 ? y_first : T(0.25) * blend.at(k - 1) + T(0.75) * centre;
    y_row[2 * k + 1] = k == n - 1 ? y_last : T(0.75) * centre + T(0.25) * blend.at(k + 1);
  }
}

// The adjoint of upsample_expand_row: dx[k] for the n inputs of one row from the 2n output
// gradients g. Inside the row the adjoint's four entries, in output order:
//   dx[k] = 0.25 g[2k-1] + 0.75 g[2k] + 0.75 g[2k+1] + 0.25 g[2k+2]
// on the even and odd lanes of g (deinterleaved in registers); inputs 0, 1 and n-1, whose
// entries include the edge taps (and zero weights), sum the adjoint table instead.
template <class T, int N>
void upsample_contract_row(const T* g, index_t n, const UpsampleAdjoint<T>& adjoint,
                           T* dx_row) {
  using V = simd::Vec<T, N>;
  const index_t vectors = n / N;
  auto load_pair = [g](index_t k, V& even, V& odd) {
    V lo{}, hi{};
    simd::load<T, N>(lo, g + 2 * k);
    simd::load<T, N>(hi, g + 2 * k + N);
    simd::deinterleave<T, N>(lo, hi, even, odd);
  };
  if (vectors > 0) {
    V even{}, odd{}, odd_previous{}, even_next{}, odd_next{};
    load_pair(0, even, odd);
    odd_previous = odd;  // reaches dx[0] only, which is replaced
    for (index_t j = 0; j < vectors; ++j) {
      const index_t k = j * N;
      if (j + 1 < vectors) {
        load_pair(k + N, even_next, odd_next);
      } else {
        // Only lane 0 of even_next is read: g[2(k + N)], or nothing that survives.
        simd::broadcast<T, N>(even_next, k + N < n ? g[2 * (k + N)] : T(0));
        odd_next = odd;
      }
      V before{}, after{};
      simd::shift_in<T, N>(odd_previous, odd, before);
      simd::shift_out<T, N>(even, even_next, after);
      V sum = T(0.25) * before;
      sum += T(0.75) * even;
      sum += T(0.75) * odd;
      sum += T(0.25) * after;
      simd::store<T, N>(dx_row + k, sum);
      odd_previous = odd;
      even = even_next;
      odd = odd_next;
    }
  }
  for (index_t k = std::max<index_t>(vectors * N, 1); k < n - 1; ++k) {
    T sum = T(0.25) * g[2 * k - 1];
    sum += T(0.75) * g[2 * k];
    sum += T(0.75) * g[2 * k + 1];
    sum += T(0.25) * g[2 * k + 2];
    dx_row[k] = sum;
  }
  for (const index_t w : {index_t{0}, index_t{1}, n - 1}) {
    if (w >= n) continue;
    T sum = T(0);
    const auto end = adjoint.offsets[static_cast<std::size_t>(w + 1)];
    for (auto e = adjoint.offsets[static_cast<std::size_t>(w)]; e < end; ++e) {
      sum += adjoint.weights[static_cast<std::size_t>(e)] *
             g[adjoint.outputs[static_cast<std::size_t>(e)]];
    }
    dx_row[w] = sum;
  }
}

template <class T, int N>
void upsample_trilinear_impl(TensorView<const T> x, TensorView<T> y) {
  const Shape5 in = x.shape;
  const Shape5 out = y.shape;
  const auto taps_d = upsample_linear_taps<T>(in.d);
  const auto taps_h = upsample_linear_taps<T>(in.h);
  const auto first_w = upsample_linear_tap<T>(0, in.w);
  const auto last_w = upsample_linear_tap<T>(out.w - 1, in.w);
  const index_t planes = in.n * in.c;
  const index_t in_w = in.w;
  const bool stream = out.numel() * static_cast<index_t>(sizeof(T)) >= kUpsampleStreamBytes;
#pragma omp parallel if (out.numel() > kUpsampleParallelMin)
  {
#pragma omp for collapse(2) schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      for (index_t od = 0; od < out.d; ++od) {
        const auto& td = taps_d[static_cast<std::size_t>(od)];
        const T* x_plane = x.data + p * in.spatial();
        const T* slice0 = x_plane + td.i0 * in.h * in_w;
        const T* slice1 = x_plane + td.i1 * in.h * in_w;
        for (index_t oh = 0; oh < out.h; ++oh) {
          const auto& th = taps_h[static_cast<std::size_t>(oh)];
          const UpsampleBlend<T> blend{slice0 + th.i0 * in_w, slice0 + th.i1 * in_w,
                                       slice1 + th.i0 * in_w, slice1 + th.i1 * in_w,
                                       td.l0, td.l1, th.l0, th.l1};
          upsample_expand_row<T, N>(blend, in_w, first_w, last_w, stream,
                                    y.data + p * out.spatial() + (od * out.h + oh) * out.w);
        }
      }
    }
    simd::stream_fence();
  }
}

template <class T, int N>
void upsample_trilinear_backward_impl(TensorView<const T> dy, TensorView<T> dx) {
  const Shape5 in = dx.shape;
  const Shape5 out = dy.shape;
  const auto adj_d = upsample_linear_adjoint<T>(in.d);
  const auto adj_h = upsample_linear_adjoint<T>(in.h);
  const auto adj_w = upsample_linear_adjoint<T>(in.w);
  const index_t planes = in.n * in.c;
  const index_t out_w = out.w;
  using V = simd::Vec<T, N>;
#pragma omp parallel if (out.numel() > kUpsampleParallelMin)
  {
    // D and H contracted: one output-width row, vector-aligned.
    simd::AlignedBuffer<T> gathered_row(out_w);
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
          // gathered[ow] = sum over the (od, oh) entries, in table order, of
          // (wd * wh) * dy[od, oh, ow], from zero; N columns at a time in registers.
          const T* rows[kUpsampleMaxEntries];
          T weights[kUpsampleMaxEntries];
          int entries = 0;
          for (index_t kd = d_begin; kd < d_end; ++kd) {
            const index_t od = adj_d.outputs[static_cast<std::size_t>(kd)];
            const T wd = adj_d.weights[static_cast<std::size_t>(kd)];
            for (index_t kh = h_begin; kh < h_end; ++kh) {
              const index_t oh = adj_h.outputs[static_cast<std::size_t>(kh)];
              REVOX_ASSERT(entries < kUpsampleMaxEntries);
              rows[entries] = dy_plane + (od * out.h + oh) * out_w;
              weights[entries] = wd * adj_h.weights[static_cast<std::size_t>(kh)];
              ++entries;
            }
          }
          index_t ow = 0;
          for (; ow + N <= out_w; ow += N) {
            V sum;
            simd::broadcast<T, N>(sum, T(0));
            for (int e = 0; e < entries; ++e) {
              V row;
              simd::load<T, N>(row, rows[e] + ow);
              sum += weights[e] * row;
            }
            simd::store<T, N>(gathered + ow, sum);
          }
          for (; ow < out_w; ++ow) {
            T sum = T(0);
            for (int e = 0; e < entries; ++e) sum += weights[e] * rows[e][ow];
            gathered[ow] = sum;
          }
          upsample_contract_row<T, N>(gathered, in.w, adj_w, dx_slice + h * in.w);
        }
      }
    }
  }
}

}  // namespace detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct UpsampleTrilinearKernels<Cpu> {
  template <class T>
  static void upsample_trilinear(const Cpu& /*dev*/, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape.valid());
    REVOX_ASSERT(y.shape == cpu::detail::upsample_trilinear_output_extent(x.shape));
    cpu::detail::upsample_trilinear_impl<T, cpu::simd::native_lanes<T>>(x, y);
  }

  // dy (N, C, 2D, 2H, 2W) -> dx (N, C, D, H, W), ASSIGNED.
  template <class T>
  static void upsample_trilinear_backward(const Cpu& /*dev*/, TensorView<const T> dy,
                                          TensorView<T> dx) {
    REVOX_ASSERT(dx.shape.valid());
    REVOX_ASSERT(dy.shape == cpu::detail::upsample_trilinear_output_extent(dx.shape));
    cpu::detail::upsample_trilinear_backward_impl<T, cpu::simd::native_lanes<T>>(dy, dx);
  }
};

}  // namespace revox::ops

namespace revox::cpu {

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
