// revox/ops/cuda/pointwise_conv3d.cuh — PointwiseConv3dKernels<Cuda>: the pointwise (1x1x1)
// convolution on the GPU, running the launch sequence of kernels/pointwise_conv3d.hpp (cuBLAS
// GEMMs on NCDHW, bias bodies, a two-stage bias gradient) on dev's stream. Asynchronous.
// Requires a Cuda with a cuBLAS handle (CudaContext::device()); pointers are device memory.
// Include from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/executor.cuh"
#include "revox/ops/kernel_bodies/pointwise_conv3d.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox::ops {

template <>
struct PointwiseConv3dKernels<Cuda> {
  template <class T>
  static void pointwise_conv3d_forward(const Cuda& dev, TensorView<const T> x,
                                       cpu::conv3d_detail::const_ptr<T> weight,
                                       cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
    ::revox::kernels::pointwise_conv3d_forward<cuda::Executor, T>(cuda::Executor{dev}, x,
                                                                  weight, bias, y);
  }

  template <class T>
  static void pointwise_conv3d_backward_data(const Cuda& dev, TensorView<const T> dy,
                                             cpu::conv3d_detail::const_ptr<T> weight,
                                             TensorView<T> dx) {
    ::revox::kernels::pointwise_conv3d_backward_data<cuda::Executor, T>(cuda::Executor{dev}, dy,
                                                                        weight, dx);
  }

  template <class T>
  static void pointwise_conv3d_backward_weight(const Cuda& dev, TensorView<const T> x,
                                               TensorView<const T> dy,
                                               cpu::conv3d_detail::mut_ptr<T> dweight,
                                               cpu::conv3d_detail::mut_ptr<T> dbias) {
    ::revox::kernels::pointwise_conv3d_backward_weight<cuda::Executor, T>(
        cuda::Executor{dev}, x, dy, dweight, dbias);
  }
};

}  // namespace revox::ops
