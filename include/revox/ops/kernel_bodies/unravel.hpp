// revox/ops/kernel_bodies/unravel.hpp — the (n, c, d, h, w) coordinates of a flat NCDHW index, for
// kernel bodies that run one index per output element (REVOX_HD: host and device).
//
// unravel(shape, i) inverts Shape5::offset: shape.offset(u.n, u.c, u.d, u.h, u.w) == i for
// every i in [0, shape.numel()). All arithmetic is index_t (64-bit), so a tensor past 2^31
// elements is addressed correctly.
#pragma once

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"

namespace revox::kernels {

struct Coord5 {
  index_t n = 0;
  index_t c = 0;
  index_t d = 0;
  index_t h = 0;
  index_t w = 0;
};

REVOX_HD inline Coord5 unravel(const Shape5& shape, index_t i) {
  Coord5 u;
  u.w = i % shape.w;
  i /= shape.w;
  u.h = i % shape.h;
  i /= shape.h;
  u.d = i % shape.d;
  i /= shape.d;
  u.c = i % shape.c;
  u.n = i / shape.c;
  return u;
}

}  // namespace revox::kernels
