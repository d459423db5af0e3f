// revox/ops/activations.hpp — ReLU, ReLU6 and LeakyReLU forward and backward on any
// device. Semantics (NaN, the kinks at 0 and 6) are documented in ops/cpu/activations.hpp.
//   relu(dev, x, y)              relu_backward(dev, x, dy, dx)
//   relu6(dev, x, y)             relu6_backward(dev, x, dy, dx)
//   leaky_relu(dev, x, y, s)     leaky_relu_backward(dev, x, dy, dx, s)
// All views have the same shape; y and dx are ASSIGNED; y may be the very view x (in place)
// when x is not needed afterwards, and dx the very view dy (every kernel reads element i of
// x and dy before it writes element i of dx, and nothing else; MBConv's lean mode and UNet's
// lean decoder rely on it). The slope s is cast to T, as PyTorch casts negative_slope
// to the tensor's type. The op's shape is revox/ops/op.hpp: ActivationKernels<Cpu> in
// ops/cpu/activations.hpp, ActivationKernels<Cuda> in ops/cuda/activations.cuh (a .cu
// translation unit that includes this header gets it), whose bodies are
// ops/kernel_bodies/activations.hpp.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct ActivationKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::activations (relu, relu6, leaky_relu) has no kernels for this device: a "
                "CUDA translation unit must include revox/ops/cuda/activations.cuh (or "
                "revox/revox.cuh)");
};

template <class Dev, class T>
void relu(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  OpScope<Dev> scope("ops::relu", x.shape);
  if constexpr (runs_kernels_v<Dev>) ActivationKernels<Dev>::relu(dev, x, y);
}

template <class Dev, class T>
void relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                   TensorView<T> dx) {
  OpScope<Dev> scope("ops::relu_backward", x.shape);
  if constexpr (runs_kernels_v<Dev>) ActivationKernels<Dev>::relu_backward(dev, x, dy, dx);
}

template <class Dev, class T>
void relu6(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  OpScope<Dev> scope("ops::relu6", x.shape);
  if constexpr (runs_kernels_v<Dev>) ActivationKernels<Dev>::relu6(dev, x, y);
}

template <class Dev, class T>
void relu6_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                    TensorView<T> dx) {
  OpScope<Dev> scope("ops::relu6_backward", x.shape);
  if constexpr (runs_kernels_v<Dev>) ActivationKernels<Dev>::relu6_backward(dev, x, dy, dx);
}

template <class Dev, class T>
void leaky_relu(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                double negative_slope) {
  OpScope<Dev> scope("ops::leaky_relu", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    ActivationKernels<Dev>::leaky_relu(dev, x, y, static_cast<T>(negative_slope));
  }
}

template <class Dev, class T>
void leaky_relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                         TensorView<T> dx, double negative_slope) {
  OpScope<Dev> scope("ops::leaky_relu_backward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    ActivationKernels<Dev>::leaky_relu_backward(dev, x, dy, dx, static_cast<T>(negative_slope));
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/activations.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/activations.cuh"
#endif
