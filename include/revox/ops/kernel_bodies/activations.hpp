// revox/ops/kernel_bodies/activations.hpp — the kernel bodies of ReLU, ReLU6 and LeakyReLU,
// forward and backward: one body call per element i (REVOX_HD functors, see
// ops/kernel_bodies/for_each.hpp). ops/cuda/activations.cuh runs them on the GPU; tests run them
// on the CPU with emulate_for_each and compare with ops/cpu/activations.hpp.
//
// Each body reads element i of its inputs before it writes element i of its output, so y may
// be the very array x (in place), as on the CPU. Formulas, kinks and NaN are exactly those of
// ops/cpu/activations.hpp:
//   Relu:                  y = x < 0 ? 0 : x
//   Relu6:                 y = x < 0 ? 0 : x > 6 ? 6 : x
//   LeakyRelu:             y = x > 0 ? x : x * slope
//   ReluBackward:          dx = x <= 0 ? 0 : dy
//   Relu6Backward:         dx = x <= 0 || x >= 6 ? 0 : dy
//   LeakyReluBackward:     dx = x > 0 ? dy : dy * slope
// y and dx are ASSIGNED.
#pragma once

#include "revox/core/config.hpp"

namespace revox::kernels {

template <class T>
struct Relu {
  const T* x;
  T* y;
  REVOX_HD void operator()(index_t i) const {
    const T v = x[i];
    y[i] = v < T(0) ? T(0) : v;
  }
};

template <class T>
struct ReluBackward {
  const T* x;
  const T* dy;
  T* dx;
  REVOX_HD void operator()(index_t i) const { dx[i] = x[i] <= T(0) ? T(0) : dy[i]; }
};

template <class T>
struct Relu6 {
  const T* x;
  T* y;
  REVOX_HD void operator()(index_t i) const {
    const T v = x[i];
    y[i] = v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
  }
};

template <class T>
struct Relu6Backward {
  const T* x;
  const T* dy;
  T* dx;
  REVOX_HD void operator()(index_t i) const {
    const T v = x[i];
    dx[i] = (v <= T(0) || v >= T(6)) ? T(0) : dy[i];
  }
};

template <class T>
struct LeakyRelu {
  const T* x;
  T* y;
  T negative_slope;
  REVOX_HD void operator()(index_t i) const {
    const T v = x[i];
    y[i] = v > T(0) ? v : v * negative_slope;
  }
};

template <class T>
struct LeakyReluBackward {
  const T* x;
  const T* dy;
  T* dx;
  T negative_slope;
  REVOX_HD void operator()(index_t i) const {
    const T g = dy[i];
    dx[i] = x[i] > T(0) ? g : g * negative_slope;
  }
};

}  // namespace revox::kernels
