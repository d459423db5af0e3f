// revox/ops/cuda/activations.cuh — ActivationKernels<Cuda>: ReLU, ReLU6 and LeakyReLU forward
// and backward on the GPU: the bodies of ops/kernel_bodies/activations.hpp, one thread per element
// (cuda::for_each). Signatures, semantics and in-place use as ops/activations.hpp; every view
// is device memory. Asynchronous on dev.stream. Include from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/activations.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/activations.hpp"

namespace revox::ops {

template <>
struct ActivationKernels<Cuda> {
  template <class T>
  static void relu(const Cuda& dev, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape == y.shape);
    cuda::for_each(dev, x.numel(), ::revox::kernels::Relu<T>{x.data, y.data});
  }

  template <class T>
  static void relu_backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                            TensorView<T> dx) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    cuda::for_each(dev, x.numel(), ::revox::kernels::ReluBackward<T>{x.data, dy.data, dx.data});
  }

  template <class T>
  static void relu6(const Cuda& dev, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape == y.shape);
    cuda::for_each(dev, x.numel(), ::revox::kernels::Relu6<T>{x.data, y.data});
  }

  template <class T>
  static void relu6_backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                             TensorView<T> dx) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    cuda::for_each(dev, x.numel(), ::revox::kernels::Relu6Backward<T>{x.data, dy.data, dx.data});
  }

  template <class T>
  static void leaky_relu(const Cuda& dev, TensorView<const T> x, TensorView<T> y,
                         T negative_slope) {
    REVOX_ASSERT(x.shape == y.shape);
    cuda::for_each(dev, x.numel(),
                   ::revox::kernels::LeakyRelu<T>{x.data, y.data, negative_slope});
  }

  template <class T>
  static void leaky_relu_backward(const Cuda& dev, TensorView<const T> x,
                                  TensorView<const T> dy, TensorView<T> dx, T negative_slope) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    cuda::for_each(
        dev, x.numel(),
        ::revox::kernels::LeakyReluBackward<T>{x.data, dy.data, dx.data, negative_slope});
  }
};

}  // namespace revox::ops
