// revox/ops/depthwise_conv3d.hpp — the device dispatchers of the depthwise 3x3x3
// convolution (groups = channels, stride 1, zero padding 1). Shapes, what each op assigns or
// accumulates, and the preconditions are in revox/ops/cpu/depthwise_conv3d.hpp:
//   depthwise_conv3d_forward(dev, x, weight, bias_or_null, y)              y ASSIGNED
//   depthwise_conv3d_backward_data(dev, dy, weight, dx)                    dx ASSIGNED
//   depthwise_conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null)   ACCUMULATED
// Only the output argument deduces T: inputs may be mutable views, bias and dbias a nullptr.
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"

namespace revox::ops {

template <class Dev, class T>
void depthwise_conv3d_forward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                              std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                              TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::depthwise_conv3d_forward<T>(x, weight, bias, y);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::depthwise_conv3d_forward: no kernel for this device yet (CUDA kernels "
                  "arrive with the CUDA backend)");
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_data(const Dev& dev, TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::depthwise_conv3d_backward_data<T>(dy, weight, dx);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::depthwise_conv3d_backward_data: no kernel for this device yet (CUDA "
                  "kernels arrive with the CUDA backend)");
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_weight(const Dev& dev, TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::depthwise_conv3d_backward_weight<T>(x, dy, dweight, dbias);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::depthwise_conv3d_backward_weight: no kernel for this device yet (CUDA "
                  "kernels arrive with the CUDA backend)");
  }
}

}  // namespace revox::ops
