// revox/ops/cuda/group_norm.cuh — GroupNormKernels<Cuda>: group normalisation forward and
// backward on the GPU: the bodies of ops/kernel_bodies/group_norm.hpp run by
// kernels::group_norm_{forward,backward}_stages through cuda::for_each. The statistics
// reductions are split over many threads per group (one per chunk of kernels::kGroupNormChunk
// elements of each (n, c) plane), partial sums in double, then added in a fixed order:
// deterministic, no atomics. Scratch (double) comes from the CUDA tracking allocator.
// Signatures, shapes and semantics as ops/group_norm.hpp; gamma, beta, mean, rstd, dgamma,
// dbeta and the views are device memory. Asynchronous on dev.stream. Include from a .cu
// translation unit. cuda::group_norm_{forward,backward}_launch, the launchers without the
// argument checks, also serve InstanceNormKernels<Cuda> (one group per channel, gamma, beta,
// dgamma and dbeta optional).
#pragma once

#include <type_traits>

#include "revox/core/cuda.hpp"
#include "revox/core/error.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/group_norm.hpp"
#include "revox/ops/kernel_bodies/group_norm.hpp"

namespace revox::cuda {

// GroupNorm forward on dims (non-empty): mean and rstd (N, G) ASSIGNED, into scratch when
// nullptr; y ASSIGNED. gamma and beta may be nullptr (scale 1, shift 0).
template <class T>
void group_norm_forward_launch(const Cuda& dev, const T* x, const kernels::GroupNormDims& dims,
                               double eps, const T* gamma, const T* beta, T* y, double* mean,
                               double* rstd) {
  const index_t stats = dims.n * dims.groups;
  // mean and rstd go to scratch when the caller does not keep them.
  const index_t own_stats = (mean == nullptr ? stats : 0) + (rstd == nullptr ? stats : 0);
  Tensor<double, Cuda> scratch(flat_shape(kernels::group_norm_forward_scratch(dims) + own_stats));
  double* next = scratch.data() + kernels::group_norm_forward_scratch(dims);
  if (mean == nullptr) {
    mean = next;
    next += stats;
  }
  if (rstd == nullptr) rstd = next;
  kernels::group_norm_forward_stages(
      [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x, dims, eps,
      gamma, beta, y, mean, rstd, scratch.data());
}

// GroupNorm backward on dims (non-empty): dgamma, dbeta ACCUMULATED unless nullptr; dx
// ASSIGNED unless nullptr; gamma may be nullptr (1).
template <class T>
void group_norm_backward_launch(const Cuda& dev, const T* x, const T* dy,
                                const kernels::GroupNormDims& dims, const double* mean,
                                const double* rstd, const T* gamma, T* dx, T* dgamma, T* dbeta) {
  Tensor<double, Cuda> scratch(flat_shape(kernels::group_norm_backward_scratch(dims)));
  kernels::group_norm_backward_stages(
      [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); }, x, dy, dims,
      mean, rstd, gamma, dx, dgamma, dbeta, scratch.data());
}

}  // namespace revox::cuda

namespace revox::ops {

template <>
struct GroupNormKernels<Cuda> {
  template <class T>
  static void group_norm_forward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                                 index_t num_groups, double eps, std::add_const_t<T>* gamma,
                                 std::add_const_t<T>* beta, TensorView<T> y, double* mean,
                                 double* rstd) {
    cpu::detail::check_group_norm_args("group_norm_forward", x.shape, num_groups, "y", y.shape);
    REVOX_CHECK(gamma != nullptr && beta != nullptr,
                "group_norm_forward: gamma and beta must not be null");
    if (x.shape.empty()) return;
    cuda::group_norm_forward_launch<T>(
        dev, x.data,
        ::revox::kernels::group_norm_dims(x.shape, num_groups, ::revox::kernels::kGroupNormChunk),
        eps, gamma, beta, y.data, mean, rstd);
  }

  template <class T>
  static void group_norm_backward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                                  TensorView<std::add_const_t<T>> dy, index_t num_groups,
                                  const double* mean, const double* rstd,
                                  std::add_const_t<T>* gamma, TensorView<T> dx,
                                  std::add_pointer_t<T> dgamma, std::add_pointer_t<T> dbeta) {
    cpu::detail::check_group_norm_args("group_norm_backward", x.shape, num_groups, "dy",
                                       dy.shape);
    if (!dx.empty()) {
      REVOX_CHECK(dx.shape == x.shape, "group_norm_backward: dx shape ", dx.shape,
                  " must equal x shape ", x.shape);
    }
    REVOX_CHECK(mean != nullptr && rstd != nullptr && gamma != nullptr && dgamma != nullptr &&
                    dbeta != nullptr,
                "group_norm_backward: mean, rstd, gamma, dgamma and dbeta must not be null");
    if (x.shape.empty()) return;
    cuda::group_norm_backward_launch<T>(
        dev, x.data, dy.data,
        ::revox::kernels::group_norm_dims(x.shape, num_groups, ::revox::kernels::kGroupNormChunk),
        mean, rstd, gamma, dx.empty() ? nullptr : dx.data, dgamma, dbeta);
  }
};

}  // namespace revox::ops
