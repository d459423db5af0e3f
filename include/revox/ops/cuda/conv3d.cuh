// revox/ops/cuda/conv3d.cuh — the dense 3D convolution on the GPU: the cuda:: functions
// ops/conv3d.hpp declares, running the launch sequence of kernels/conv3d.hpp (im2col and a
// col2im gather as kernel bodies around cuBLAS GEMMs, chunked so that the column buffer
// stays within `scratch_bytes`, taken from cuda_allocator()) on dev's stream; kernel_size 1
// runs ops/cuda/pointwise_conv3d.cuh. Asynchronous. Requires a Cuda with a cuBLAS handle
// (CudaContext::device()); pointers are device memory. Include from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/conv3d.hpp"
#include "revox/ops/cuda/gemm.cuh"
#include "revox/ops/cuda/pointwise_conv3d.cuh"
#include "revox/ops/kernels/conv3d.hpp"

namespace revox::cuda {

template <class T>
void conv3d_forward(const Cuda& dev, TensorView<const T> x,
                    cpu::conv3d_detail::const_ptr<T> weight,
                    cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size,
                    index_t scratch_bytes) {
  ::revox::kernels::conv3d_forward<Executor, T>(Executor{dev}, x, weight, bias, y, kernel_size,
                                                scratch_bytes);
}

template <class T>
void conv3d_backward_data(const Cuda& dev, TensorView<const T> dy,
                          cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                          int kernel_size, index_t scratch_bytes) {
  ::revox::kernels::conv3d_backward_data<Executor, T>(Executor{dev}, dy, weight, dx, kernel_size,
                                                      scratch_bytes);
}

template <class T>
void conv3d_backward_weight(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                            cpu::conv3d_detail::mut_ptr<T> dweight,
                            cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size,
                            index_t scratch_bytes) {
  ::revox::kernels::conv3d_backward_weight<Executor, T>(Executor{dev}, x, dy, dweight, dbias,
                                                        kernel_size, scratch_bytes);
}

}  // namespace revox::cuda
