// revox/ops/cuda/instance_norm.cuh — InstanceNormKernels<Cuda>: instance normalisation
// forward and backward on the GPU. Instance normalisation is group normalisation with one
// channel per group (num_groups = C: each (n, c) plane is a group), so this runs the bodies of
// ops/kernel_bodies/group_norm.hpp through kernels::group_norm_{forward,backward}_stages and
// cuda::for_each, with the weight and bias (and their gradients) optional. The statistics are
// split over many threads per plane (one per chunk of kernels::kGroupNormChunk elements),
// partial sums in double, then added in a fixed order: deterministic, no atomics. Scratch
// (double) comes from the CUDA tracking allocator. Semantics as ops/instance_norm.hpp (whose
// dispatchers check the arguments); every pointer and view is device memory. Asynchronous on
// dev.stream. Include from a .cu translation unit (ops/instance_norm.hpp includes it under
// nvcc).
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cuda/launch.cuh"
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
    const auto dims = dims_of(x.shape);
    const index_t planes = dims.n * dims.c;
    const index_t sums = ::revox::kernels::group_norm_forward_scratch(dims);
    // mean and rstd go to scratch when the caller does not keep them.
    const index_t own_stats = (mean == nullptr ? planes : 0) + (rstd == nullptr ? planes : 0);
    Tensor<double, Cuda> scratch(flat_shape(sums + own_stats));
    double* next = scratch.data() + sums;
    if (mean == nullptr) {
      mean = next;
      next += planes;
    }
    if (rstd == nullptr) rstd = next;
    ::revox::kernels::group_norm_forward_stages(
        [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x.data,
        dims, eps, weight, bias, y.data, mean, rstd, scratch.data());
  }

  template <class T>
  static void backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                       const T* weight, const double* mean, const double* rstd, TensorView<T> dx,
                       T* dweight, T* dbias) {
    if (x.shape.empty() || (dx.empty() && dweight == nullptr && dbias == nullptr)) return;
    const auto dims = dims_of(x.shape);
    Tensor<double, Cuda> scratch(flat_shape(::revox::kernels::group_norm_backward_scratch(dims)));
    ::revox::kernels::group_norm_backward_stages(
        [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x.data,
        dy.data, dims, mean, rstd, weight, dx.empty() ? nullptr : dx.data, dweight, dbias,
        scratch.data());
  }
};

}  // namespace revox::ops
