// revox/ops/cuda/conv3d.cuh — Conv3dKernels<Cuda>: the dense 3D convolution on the GPU,
// running the launch sequence of kernels/conv3d.hpp (im2col and a col2im gather as kernel
// bodies around cuBLAS GEMMs, chunked so that the column buffer stays within
// `scratch_bytes`, taken from cuda_allocator()) on dev's stream; kernel_size 1 runs the
// pointwise sequence of kernels/pointwise_conv3d.hpp. Asynchronous. Requires a Cuda with a
// cuBLAS handle (CudaContext::device()); pointers are device memory. Include from a .cu
// translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/conv3d.hpp"
#include "revox/ops/cuda/executor.cuh"
#include "revox/ops/cuda/pointwise_conv3d.cuh"
#include "revox/ops/kernel_bodies/conv3d.hpp"

namespace revox::ops {

template <>
struct Conv3dKernels<Cuda> {
  template <class T>
  static void conv3d_forward(const Cuda& dev, TensorView<const T> x,
                             cpu::conv3d_detail::const_ptr<T> weight,
                             cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y,
                             int kernel_size, index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    ::revox::kernels::conv3d_forward<cuda::Executor, T>(cuda::Executor{dev}, x, weight, bias, y,
                                                        kernel_size, scratch_bytes);
  }

  template <class T>
  static void conv3d_backward_data(const Cuda& dev, TensorView<const T> dy,
                                   cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                                   int kernel_size,
                                   index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    ::revox::kernels::conv3d_backward_data<cuda::Executor, T>(cuda::Executor{dev}, dy, weight,
                                                              dx, kernel_size, scratch_bytes);
  }

  template <class T>
  static void conv3d_backward_weight(const Cuda& dev, TensorView<const T> x,
                                     TensorView<const T> dy,
                                     cpu::conv3d_detail::mut_ptr<T> dweight,
                                     cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size,
                                     index_t scratch_bytes = cpu::kConv3dScratchBytes) {
    ::revox::kernels::conv3d_backward_weight<cuda::Executor, T>(
        cuda::Executor{dev}, x, dy, dweight, dbias, kernel_size, scratch_bytes);
  }
};

}  // namespace revox::ops
