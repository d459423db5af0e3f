// revox/core/shape.hpp — Shape5, the (N, C, D, H, W) extent of an NCDHW tensor.
//
// Element (n, c, d, h, w) of a contiguous tensor lives at
//   (((n * C + c) * D + d) * H + h) * W + w,
// computed in 64-bit arithmetic (index_t).
#pragma once

#include <ostream>

#include "revox/core/config.hpp"

namespace revox {

struct Shape5 {
  index_t n = 0;
  index_t c = 0;
  index_t d = 0;
  index_t h = 0;
  index_t w = 0;

  REVOX_HD constexpr index_t spatial() const { return d * h * w; }
  REVOX_HD constexpr index_t numel() const { return n * c * d * h * w; }
  REVOX_HD constexpr bool empty() const { return numel() == 0; }
  // All five extents are positive (a usable layer input).
  REVOX_HD constexpr bool valid() const { return n > 0 && c > 0 && d > 0 && h > 0 && w > 0; }
  REVOX_HD constexpr index_t offset(index_t in, index_t ic, index_t id, index_t ih,
                                    index_t iw) const {
    return (((in * c + ic) * d + id) * h + ih) * w + iw;
  }
  REVOX_HD constexpr Shape5 with_channels(index_t channels) const {
    return Shape5{n, channels, d, h, w};
  }

  friend constexpr bool operator==(const Shape5& a, const Shape5& b) {
    return a.n == b.n && a.c == b.c && a.d == b.d && a.h == b.h && a.w == b.w;
  }
  friend constexpr bool operator!=(const Shape5& a, const Shape5& b) { return !(a == b); }
  friend std::ostream& operator<<(std::ostream& out, const Shape5& s) {
    return out << "(N=" << s.n << ", C=" << s.c << ", D=" << s.d << ", H=" << s.h
               << ", W=" << s.w << ")";
  }
};

}  // namespace revox
