// revox/ops/kernel_bodies/upsample_trilinear.hpp — the kernel bodies of trilinear x2 upsampling
// with align_corners=False (REVOX_HD functors, see ops/kernel_bodies/for_each.hpp); taps and
// semantics as ops/cpu/upsample_trilinear.hpp.
//
//   UpsampleTrilinearForward   one call per OUTPUT element (N, C, 2D, 2H, 2W). D and H are
//       blended first at the two input columns w0, w1 the output reads, then W:
//         b(w) = ld0 (lh0 x[d0,h0,w] + lh1 x[d0,h1,w]) + ld1 (lh0 x[d1,h0,w] + lh1 x[d1,h1,w])
//         y    = lw0 b(w0) + lw1 b(w1)
//       the same operations, in the same order, as the CPU fast path. y ASSIGNED.
//   UpsampleTrilinearBackward  one call per INPUT element (N, C, D, H, W), a gather without
//       atomics: per axis, input i is read by the outputs o in [2i - 2, 2i + 2] whose taps
//       name it (at most 5 (output, weight) pairs, zero weights included, so NaN and inf in
//       dy spread as on the CPU); in the CPU fast path's order:
//         dx = sum_(ow, lw) lw * (sum_(od, ld) sum_(oh, lh) (ld lh) dy[od, oh, ow])
//       dx ASSIGNED.
// Taps: on an axis of input size n, output o reads src = max((o + 0.5) * 0.5 - 0.5, 0),
// i0 = floor(src), i1 = i0 + (i0 < n - 1), l1 = src - i0, l0 = 1 - l1, in precision T.
#pragma once

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"
#include "revox/ops/kernel_bodies/unravel.hpp"

namespace revox::kernels {

// The two input taps of output o on an axis of input size n.
template <class T>
struct LinearTap {
  index_t i0 = 0;
  index_t i1 = 0;
  T l0 = T(1);
  T l1 = T(0);
};

template <class T>
REVOX_HD LinearTap<T> upsample_tap(index_t o, index_t n) {
  T src = (static_cast<T>(o) + T(0.5)) * T(0.5) - T(0.5);
  if (src < T(0)) src = T(0);
  LinearTap<T> tap;
  tap.i0 = static_cast<index_t>(src);  // floor: src >= 0
  if (tap.i0 > n - 1) tap.i0 = n - 1;
  tap.i1 = tap.i0 + (tap.i0 < n - 1 ? 1 : 0);
  tap.l1 = src - static_cast<T>(tap.i0);
  tap.l0 = T(1) - tap.l1;
  return tap;
}

// The (output, weight) pairs that read input i on an axis of input size n, in increasing
// output order, the i0 tap of an output before its i1 tap (the order of the CPU's adjoint
// tables). With scale 2 there are at most 5; kCapacity leaves one spare.
template <class T>
struct AdjointTaps {
  static constexpr int kCapacity = 6;
  index_t output[kCapacity] = {};
  T weight[kCapacity] = {};
  int count = 0;
};

template <class T>
REVOX_HD AdjointTaps<T> upsample_adjoint_taps(index_t i, index_t n) {
  AdjointTaps<T> taps;
  const index_t first = 2 * i - 2 < 0 ? 0 : 2 * i - 2;
  const index_t last = 2 * i + 2 > 2 * n - 1 ? 2 * n - 1 : 2 * i + 2;
  for (index_t o = first; o <= last; ++o) {
    const LinearTap<T> tap = upsample_tap<T>(o, n);
    if (tap.i0 == i && taps.count < AdjointTaps<T>::kCapacity) {
      taps.output[taps.count] = o;
      taps.weight[taps.count] = tap.l0;
      ++taps.count;
    }
    if (tap.i1 == i && taps.count < AdjointTaps<T>::kCapacity) {
      taps.output[taps.count] = o;
      taps.weight[taps.count] = tap.l1;
      ++taps.count;
    }
  }
  return taps;
}

template <class T>
struct UpsampleTrilinearForward {
  const T* x;
  Shape5 in;   // (N, C, D, H, W)
  T* y;
  Shape5 out;  // (N, C, 2D, 2H, 2W)

  REVOX_HD void operator()(index_t i) const {
    const Coord5 o = unravel(out, i);
    const LinearTap<T> td = upsample_tap<T>(o.d, in.d);
    const LinearTap<T> th = upsample_tap<T>(o.h, in.h);
    const LinearTap<T> tw = upsample_tap<T>(o.w, in.w);
    const T* plane = x + (o.n * in.c + o.c) * in.spatial();
    const T* r00 = plane + (td.i0 * in.h + th.i0) * in.w;
    const T* r01 = plane + (td.i0 * in.h + th.i1) * in.w;
    const T* r10 = plane + (td.i1 * in.h + th.i0) * in.w;
    const T* r11 = plane + (td.i1 * in.h + th.i1) * in.w;
    const T b0 = td.l0 * (th.l0 * r00[tw.i0] + th.l1 * r01[tw.i0]) +
                 td.l1 * (th.l0 * r10[tw.i0] + th.l1 * r11[tw.i0]);
    const T b1 = td.l0 * (th.l0 * r00[tw.i1] + th.l1 * r01[tw.i1]) +
                 td.l1 * (th.l0 * r10[tw.i1] + th.l1 * r11[tw.i1]);
    y[i] = tw.l0 * b0 + tw.l1 * b1;
  }
};

template <class T>
struct UpsampleTrilinearBackward {
  const T* dy;  // (N, C, 2D, 2H, 2W)
  Shape5 out;
  T* dx;        // (N, C, D, H, W)
  Shape5 in;

  REVOX_HD void operator()(index_t i) const {
    const Coord5 u = unravel(in, i);
    const AdjointTaps<T> ad = upsample_adjoint_taps<T>(u.d, in.d);
    const AdjointTaps<T> ah = upsample_adjoint_taps<T>(u.h, in.h);
    const AdjointTaps<T> aw = upsample_adjoint_taps<T>(u.w, in.w);
    const T* plane = dy + (u.n * out.c + u.c) * out.spatial();
    T sum = T(0);
    for (int kw = 0; kw < aw.count; ++kw) {
      const index_t ow = aw.output[kw];
      T gathered = T(0);
      for (int kd = 0; kd < ad.count; ++kd) {
        const T wd = ad.weight[kd];
        for (int kh = 0; kh < ah.count; ++kh) {
          const T weight = wd * ah.weight[kh];
          gathered += weight * plane[(ad.output[kd] * out.h + ah.output[kh]) * out.w + ow];
        }
      }
      sum += aw.weight[kw] * gathered;
    }
    dx[i] = sum;
  }
};

}  // namespace revox::kernels
