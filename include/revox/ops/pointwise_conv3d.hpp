// revox/ops/pointwise_conv3d.hpp — dispatchers for the pointwise (1x1x1) 3D convolution:
// one signature for every device. Shapes and semantics are in ops/cpu/pointwise_conv3d.hpp:
//   pointwise_conv3d_forward(dev, x, weight, bias_or_null, y)        y  ASSIGNED
//   pointwise_conv3d_backward_data(dev, dy, weight, dx)              dx ASSIGNED
//   pointwise_conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null)  ACCUMULATED
// Pointers are device memory; weight is (Cout, Cin) row-major (PyTorch's (Cout, Cin, 1, 1, 1)).
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"

namespace revox::ops {

template <class Dev, class T>
void pointwise_conv3d_forward(const Dev& dev, TensorView<const T> x,
                              cpu::conv3d_detail::const_ptr<T> weight,
                              cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::pointwise_conv3d_forward(x, weight, bias, y);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_forward: no kernel for this device yet (CUDA kernels "
                  "arrive with the CUDA backend)");
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_data(const Dev& dev, TensorView<const T> dy,
                                    cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::pointwise_conv3d_backward_data(dy, weight, dx);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_backward_data: no kernel for this device yet (CUDA "
                  "kernels arrive with the CUDA backend)");
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_weight(const Dev& dev, TensorView<const T> x,
                                      TensorView<const T> dy,
                                      cpu::conv3d_detail::mut_ptr<T> dweight,
                                      cpu::conv3d_detail::mut_ptr<T> dbias) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::pointwise_conv3d_backward_weight(x, dy, dweight, dbias);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_backward_weight: no kernel for this device yet (CUDA "
                  "kernels arrive with the CUDA backend)");
  }
}

}  // namespace revox::ops
