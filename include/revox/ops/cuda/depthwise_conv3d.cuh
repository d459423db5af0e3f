// revox/ops/cuda/depthwise_conv3d.cuh — DepthwiseConv3dKernels<Cuda>: the depthwise 3x3x3
// convolution on the GPU, running the kernel bodies of kernels/depthwise_conv3d.hpp on dev's
// stream (the weight gradient as a deterministic two-stage reduction, scratch from
// cuda_allocator()). Asynchronous; needs no cuBLAS handle. Pointers are device memory.
// Include from a .cu translation unit.
#pragma once

#include <type_traits>

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/executor.cuh"
#include "revox/ops/depthwise_conv3d.hpp"
#include "revox/ops/kernel_bodies/depthwise_conv3d.hpp"

namespace revox::ops {

template <>
struct DepthwiseConv3dKernels<Cuda> {
  template <class T>
  static void depthwise_conv3d_forward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                                       std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                                       TensorView<T> y) {
    ::revox::kernels::depthwise_conv3d_forward<cuda::Executor, T>(cuda::Executor{dev}, x,
                                                                  weight, bias, y);
  }

  template <class T>
  static void depthwise_conv3d_backward_data(const Cuda& dev, TensorView<std::add_const_t<T>> dy,
                                             std::add_const_t<T>* weight, TensorView<T> dx) {
    ::revox::kernels::depthwise_conv3d_backward_data<cuda::Executor, T>(cuda::Executor{dev}, dy,
                                                                        weight, dx);
  }

  template <class T>
  static void depthwise_conv3d_backward_weight(const Cuda& dev,
                                               TensorView<std::add_const_t<T>> x,
                                               TensorView<std::add_const_t<T>> dy, T* dweight,
                                               std::add_pointer_t<T> dbias) {
    ::revox::kernels::depthwise_conv3d_backward_weight<cuda::Executor, T>(
        cuda::Executor{dev}, x, dy, dweight, dbias);
  }

  // The fused backward's GPU twin: the two kernels above in turn, so the results are those
  // of the two separate calls (a single-pass GPU kernel is future work).
  template <class T>
  static void depthwise_conv3d_backward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                                        TensorView<std::add_const_t<T>> dy,
                                        std::add_const_t<T>* weight, TensorView<T> dx,
                                        std::add_pointer_t<T> dweight,
                                        std::add_pointer_t<T> dbias) {
    REVOX_CHECK(dweight != nullptr, "depthwise_conv3d_backward: dweight must not be null");
    depthwise_conv3d_backward_data<T>(dev, dy, weight, dx);
    depthwise_conv3d_backward_weight<T>(dev, x, dy, dweight, dbias);
  }
};

}  // namespace revox::ops
