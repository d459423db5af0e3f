// revox/ops/cuda/instance_norm.cuh — InstanceNormKernels<Cuda>: instance normalisation
// forward and backward on the GPU, the bodies of ops/kernel_bodies/instance_norm.hpp run by
// kernels::instance_norm_{forward,backward}_stages through cuda::for_each. The statistics are
// split over many threads per plane (one per chunk of kernels::kInstanceNormChunk elements),
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
#include "revox/ops/kernel_bodies/instance_norm.hpp"

namespace revox::ops {

template <>
struct InstanceNormKernels<Cuda> {
  template <class T>
  static void forward(const Cuda& dev, TensorView<const T> x, const T* weight, const T* bias,
                      double eps, TensorView<T> y, double* mean, double* rstd) {
    if (x.shape.empty()) return;
    const auto dims = ::revox::kernels::instance_norm_dims(x.shape,
                                                           ::revox::kernels::kInstanceNormChunk);
    const index_t sums = ::revox::kernels::instance_norm_forward_scratch(dims);
    // mean and rstd go to scratch when the caller does not keep them.
    const index_t own_stats =
        (mean == nullptr ? dims.planes() : 0) + (rstd == nullptr ? dims.planes() : 0);
    Tensor<double, Cuda> scratch(flat_shape(sums + own_stats));
    double* next = scratch.data() + sums;
    if (mean == nullptr) {
      mean = next;
      next += dims.planes();
    }
    if (rstd == nullptr) rstd = next;
    ::revox::kernels::instance_norm_forward_stages(
        [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x.data,
        dims, eps, weight, bias, y.data, mean, rstd, scratch.data());
  }

  template <class T>
  static void backward(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                       const T* weight, const double* mean, const double* rstd, TensorView<T> dx,
                       T* dweight, T* dbias) {
    if (x.shape.empty() || (dx.empty() && dweight == nullptr && dbias == nullptr)) return;
    const auto dims = ::revox::kernels::instance_norm_dims(x.shape,
                                                           ::revox::kernels::kInstanceNormChunk);
    Tensor<double, Cuda> scratch(
        flat_shape(::revox::kernels::instance_norm_backward_scratch(dims)));
    ::revox::kernels::instance_norm_backward_stages(
        [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x.data,
        dy.data, dims, weight, mean, rstd, dx.empty() ? nullptr : dx.data, dweight, dbias,
        scratch.data());
  }
};

}  // namespace revox::ops
