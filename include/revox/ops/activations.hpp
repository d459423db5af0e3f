// revox/ops/activations.hpp — ReLU, ReLU6 and LeakyReLU forward and backward on any
// device. Semantics (NaN, the kinks at 0 and 6) are documented in ops/cpu/activations.hpp.
//   relu(dev, x, y)              relu_backward(dev, x, dy, dx)
//   relu6(dev, x, y)             relu6_backward(dev, x, dy, dx)
//   leaky_relu(dev, x, y, s)     leaky_relu_backward(dev, x, dy, dx, s)
// All views have the same shape; y and dx are ASSIGNED. The slope s is cast to T, as
// PyTorch casts negative_slope to the tensor's type.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/activations.hpp"

namespace revox::ops {

template <class Dev, class T>
void relu(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::relu(x, y);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::relu: no kernel for this device yet (CUDA kernels arrive with the CUDA "
                  "backend)");
  }
}

template <class Dev, class T>
void relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                   TensorView<T> dx) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::relu_backward(x, dy, dx);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::relu_backward: no kernel for this device yet (CUDA kernels arrive with "
                  "the CUDA backend)");
  }
}

template <class Dev, class T>
void relu6(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::relu6(x, y);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::relu6: no kernel for this device yet (CUDA kernels arrive with the CUDA "
                  "backend)");
  }
}

template <class Dev, class T>
void relu6_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                    TensorView<T> dx) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::relu6_backward(x, dy, dx);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::relu6_backward: no kernel for this device yet (CUDA kernels arrive with "
                  "the CUDA backend)");
  }
}

template <class Dev, class T>
void leaky_relu(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                double negative_slope) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::leaky_relu(x, y, static_cast<T>(negative_slope));
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::leaky_relu: no kernel for this device yet (CUDA kernels arrive with the "
                  "CUDA backend)");
  }
}

template <class Dev, class T>
void leaky_relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                         TensorView<T> dx, double negative_slope) {
  (void)dev;
  if constexpr (is_cpu_v<Dev>) {
    cpu::leaky_relu_backward(x, dy, dx, static_cast<T>(negative_slope));
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::leaky_relu_backward: no kernel for this device yet (CUDA kernels arrive "
                  "with the CUDA backend)");
  }
}

}  // namespace revox::ops
