// revox/ops/kernel_bodies/max_pool3d.hpp — the kernel bodies of 2x2x2, stride-2 max pooling
// (REVOX_HD functors, see ops/kernel_bodies/for_each.hpp), semantics as ops/cpu/max_pool3d.hpp.
//
//   MaxPool3dForward   one call per OUTPUT element (N, C, D/2, H/2, W/2): scans its window
//                      in (kd, kh, kw) order from the first value, replacing the maximum when
//                      `value > max || isnan(value)` (first of equal maxima wins, the last NaN
//                      wins); y ASSIGNED, argmax ASSIGNED ((kd * 2 + kh) * 2 + kw) unless null.
//   MaxPool3dBackward  one call per INPUT element (N, C, D, H, W), a gather without atomics:
//                      windows do not overlap, so element (d, h, w) lies in the single window
//                      (d/2, h/2, w/2) at position ((d%2) * 2 + h%2) * 2 + w%2 and takes that
//                      window's dy when its argmax is that position, else 0; elements of a
//                      floored-away trailing slice, row or column get 0. dx ASSIGNED.
#pragma once

#include <cmath>
#include <cstdint>

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"
#include "revox/ops/kernel_bodies/unravel.hpp"

namespace revox::kernels {

template <class T>
struct MaxPool3dForward {
  const T* x;
  Shape5 in;       // (N, C, D, H, W)
  T* y;
  Shape5 out;      // (N, C, D/2, H/2, W/2)
  std::uint8_t* argmax;  // as y, or nullptr

  REVOX_HD void operator()(index_t i) const {
    const Coord5 o = unravel(out, i);
    const index_t row = in.w;
    const index_t slice = in.h * in.w;
    const T* window = x + (o.n * in.c + o.c) * in.spatial() + (2 * o.d) * slice +
                      (2 * o.h) * row + 2 * o.w;
    T best = window[0];
    std::uint8_t best_position = 0;
    for (int position = 1; position < 8; ++position) {
      const index_t kd = position >> 2;
      const index_t kh = (position >> 1) & 1;
      const index_t kw = position & 1;
      const T value = window[kd * slice + kh * row + kw];
      if (value > best || std::isnan(value)) {
        best = value;
        best_position = static_cast<std::uint8_t>(position);
      }
    }
    y[i] = best;
    if (argmax != nullptr) argmax[i] = best_position;
  }
};

template <class T>
struct MaxPool3dBackward {
  const T* dy;                  // (N, C, D/2, H/2, W/2)
  const std::uint8_t* argmax;   // as dy
  Shape5 out;
  T* dx;                        // (N, C, D, H, W)
  Shape5 in;

  REVOX_HD void operator()(index_t i) const {
    const Coord5 u = unravel(in, i);
    const index_t od = u.d >> 1;
    const index_t oh = u.h >> 1;
    const index_t ow = u.w >> 1;
    if (od >= out.d || oh >= out.h || ow >= out.w) {
      dx[i] = T(0);
      return;
    }
    const index_t o = out.offset(u.n, u.c, od, oh, ow);
    const auto position = static_cast<std::uint8_t>(((u.d & 1) * 2 + (u.h & 1)) * 2 + (u.w & 1));
    dx[i] = argmax[o] == position ? dy[o] : T(0);
  }
};

}  // namespace revox::kernels
