// revox/ops/activations.hpp — ReLU, ReLU6 and LeakyReLU forward and backward on any
// device. Semantics (NaN, the kinks at 0 and 6) are documented in ops/cpu/activations.hpp.
//   relu(dev, x, y)              relu_backward(dev, x, dy, dx)
//   relu6(dev, x, y)             relu6_backward(dev, x, dy, dx)
//   leaky_relu(dev, x, y, s)     leaky_relu_backward(dev, x, dy, dx, s)
// All views have the same shape; y and dx are ASSIGNED; y may be the very view x (in place)
// when x is not needed afterwards, and dx the very view dy (every kernel reads element i of
// x and dy before it writes element i of dx, and nothing else; MBConv's lean mode and UNet's
// lean decoder rely on it). The slope s is cast to T, as PyTorch casts negative_slope
// to the tensor's type. CPU kernels: ops/cpu/activations.hpp; CUDA: ops/cuda/activations.cuh
// (declared here, defined there; a .cu translation unit includes it), whose bodies are
// ops/kernels/activations.hpp.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/activations.hpp"

namespace revox {
namespace cuda {
// revox/ops/cuda/activations.cuh
template <class T>
void relu(const Cuda& dev, TensorView<const T> x, TensorView<T> y);
template <class T>
void relu_backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                   TensorView<T> dx);
template <class T>
void relu6(const Cuda& dev, TensorView<const T> x, TensorView<T> y);
template <class T>
void relu6_backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                    TensorView<T> dx);
template <class T>
void leaky_relu(const Cuda& dev, TensorView<const T> x, TensorView<T> y, T negative_slope);
template <class T>
void leaky_relu_backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                         TensorView<T> dx, T negative_slope);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void relu(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::relu");
    (void)dev;
    cpu::relu(x, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::relu(dev, x, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::relu", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::relu: unknown device type");
  }
}

template <class Dev, class T>
void relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                   TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::relu_backward");
    (void)dev;
    cpu::relu_backward(x, dy, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::relu_backward(dev, x, dy, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::relu_backward", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::relu_backward: unknown device type");
  }
}

template <class Dev, class T>
void relu6(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::relu6");
    (void)dev;
    cpu::relu6(x, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::relu6(dev, x, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::relu6", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::relu6: unknown device type");
  }
}

template <class Dev, class T>
void relu6_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                    TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::relu6_backward");
    (void)dev;
    cpu::relu6_backward(x, dy, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::relu6_backward(dev, x, dy, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::relu6_backward", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::relu6_backward: unknown device type");
  }
}

template <class Dev, class T>
void leaky_relu(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                double negative_slope) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::leaky_relu");
    (void)dev;
    cpu::leaky_relu(x, y, static_cast<T>(negative_slope));
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::leaky_relu(dev, x, y, static_cast<T>(negative_slope));
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::leaky_relu", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::leaky_relu: unknown device type");
  }
}

template <class Dev, class T>
void leaky_relu_backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                         TensorView<T> dx, double negative_slope) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::leaky_relu_backward");
    (void)dev;
    cpu::leaky_relu_backward(x, dy, dx, static_cast<T>(negative_slope));
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::leaky_relu_backward(dev, x, dy, dx, static_cast<T>(negative_slope));
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::leaky_relu_backward", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::leaky_relu_backward: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
