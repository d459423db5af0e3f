// revox/ops/upsample_trilinear.hpp — trilinear x2 upsampling (align_corners=False) on any
// device (taps and semantics in ops/cpu/upsample_trilinear.hpp).
//   upsample_trilinear(dev, x, y)             x (N,C,D,H,W) -> y (N,C,2D,2H,2W), ASSIGNED
//   upsample_trilinear_backward(dev, dy, dx)  dy (N,C,2D,2H,2W) -> dx (N,C,D,H,W), ASSIGNED
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/upsample_trilinear.hpp"

namespace revox::ops {

template <class Dev, class T>
void upsample_trilinear(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::upsample_trilinear(x, y);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::upsample_trilinear: no kernel for this device yet (CUDA kernels arrive "
                  "with the CUDA backend)");
  }
}

template <class Dev, class T>
void upsample_trilinear_backward(const Dev& dev, TensorView<const T> dy, TensorView<T> dx) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::upsample_trilinear_backward(dy, dx);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::upsample_trilinear_backward: no kernel for this device yet (CUDA "
                  "kernels arrive with the CUDA backend)");
  }
}

}  // namespace revox::ops
