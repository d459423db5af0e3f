// revox/ops/kernel_bodies/add.hpp — the kernel bodies of the element-wise sums of ops/add.hpp, one
// body call per element i (REVOX_HD functors, see ops/kernel_bodies/for_each.hpp):
//   Add:         y[i] = a[i] + b[i]    ASSIGNED; y may be the very array a or b
//   AddInplace:  y[i] += x[i]          the reversible coupling y1 = x1 + F(x2)
//   SubInplace:  y[i] -= x[i]          its inverse x1 = y1 - F(x2)
// One IEEE operation per element, so the GPU, the emulation and ops/cpu/add.hpp agree bit
// for bit.
#pragma once

#include "revox/core/config.hpp"

namespace revox::kernels {

template <class T>
struct Add {
  const T* a;
  const T* b;
  T* y;
  REVOX_HD void operator()(index_t i) const { y[i] = a[i] + b[i]; }
};

template <class T>
struct AddInplace {
  T* y;
  const T* x;
  REVOX_HD void operator()(index_t i) const { y[i] += x[i]; }
};

template <class T>
struct SubInplace {
  T* y;
  const T* x;
  REVOX_HD void operator()(index_t i) const { y[i] -= x[i]; }
};

}  // namespace revox::kernels
