// revox/ops/max_pool3d.hpp — 2x2x2, stride-2 max pooling on any device (semantics, ties
// and NaN in ops/cpu/max_pool3d.hpp).
//   max_pool3d(dev, x, y, argmax)             x (N,C,D,H,W); y, argmax (N,C,D/2,H/2,W/2)
//                                             y ASSIGNED; argmax ASSIGNED unless empty
//   max_pool3d_backward(dev, dy, argmax, dx)  dx (N,C,D,H,W) ASSIGNED
#pragma once

#include <cstdint>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/max_pool3d.hpp"

namespace revox::ops {

template <class Dev, class T>
void max_pool3d(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                TensorView<std::uint8_t> argmax) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::max_pool3d(x, y, argmax);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::max_pool3d: no kernel for this device yet (CUDA kernels arrive with the "
                  "CUDA backend)");
  }
}

template <class Dev, class T>
void max_pool3d_backward(const Dev& dev, TensorView<const T> dy,
                         TensorView<const std::uint8_t> argmax, TensorView<T> dx) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::max_pool3d_backward(dy, argmax, dx);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::max_pool3d_backward: no kernel for this device yet (CUDA kernels "
                  "arrive with the CUDA backend)");
  }
}

}  // namespace revox::ops
