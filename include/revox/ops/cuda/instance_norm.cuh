// revox/ops/cuda/instance_norm.cuh — InstanceNormKernels<Cuda>: instance normalisation
// forward and backward on the GPU. Instance normalisation is group normalisation with one
// channel per group (num_groups = C: each (n, c) plane is a group), so this runs GroupNorm's
// launchers (cuda::group_norm_{forward,backward}_launch, ops/cuda/group_norm.cuh) and their
// bodies (ops/kernel_bodies/group_norm.hpp), with the weight and bias (and their gradients)
// optional: deterministic chunked reductions in double, no atomics, scratch (double) from the
// CUDA tracking allocator. Semantics as ops/instance_norm.hpp (whose dispatchers check the
// arguments); every pointer and view is device memory. Asynchronous on dev.stream. Include
// from a .cu translation unit (ops/instance_norm.hpp includes it under nvcc).
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cuda/group_norm.cuh"
#include "revox/ops/instance_norm.hpp"
#include "revox/ops/kernel_bodies/group_norm.hpp"

namespace revox::ops {

template <>
struct InstanceNormKernels<Cuda> {
  // The group-norm extents of instance normalisation: one group per channel.
  static ::revox::kernels::GroupNormDims dims_of(const Shape5& x) {
    return ::revox::kernels::group_norm_dims(x, x.c, ::revox::kernels::kGroupNormChunk);
  }

  template <class T>
  static void forward(const Cuda& dev, TensorView<const T> x, const T* weight, const T* bias,
                      double eps, TensorView<T> y, double* mean, double* rstd) {
    if (x.shape.empty()) return;
    cuda::group_norm_forward_launch<T>(dev, x.data, dims_of(x.shape), eps, weight, bias, y.data,
                                       mean, rstd);
  }

  template <class T>
  static void backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                       const T* weight, const double* mean, const double* rstd, TensorView<T> dx,
                       T* dweight, T* dbias) {
    if (x.shape.empty() || (dx.empty() && dweight == nullptr && dbias == nullptr)) return;
    cuda::group_norm_backward_launch<T>(dev, x.data, dy.data, dims_of(x.shape), mean, rstd,
                                        weight, dx.empty() ? nullptr : dx.data, dweight, dbias);
  }
};

}  // namespace revox::ops
