// revox/ops/group_norm.hpp — the device dispatchers of group normalisation. Shapes, what each
// op assigns or accumulates, precision and preconditions are in revox/ops/cpu/group_norm.hpp:
//   group_norm_forward(dev, x, num_groups, eps, gamma, beta, y, mean_or_null, rstd_or_null)
//       y (N, C, D, H, W), mean and rstd (N, G) in double: ASSIGNED
//   group_norm_backward(dev, x, dy, num_groups, mean, rstd, gamma, dx, dgamma, dbeta)
//       dx ASSIGNED (skipped when empty); dgamma, dbeta (C) ACCUMULATED
// y may alias x exactly (forward in place), and dx may alias dy exactly (backward in place:
// every kernel reads all of dy for the group sums before it writes dx, element by element);
// UNet's lean decoder relies on both. Only the output argument deduces T: inputs may be
// mutable views. On the GPU gamma, beta,
// mean, rstd, dgamma and dbeta are device pointers, like the views. CPU kernels:
// ops/cpu/group_norm.hpp; CUDA: ops/cuda/group_norm.cuh (declared here, defined there; a .cu
// translation unit includes it), whose bodies are ops/kernels/group_norm.hpp.
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/group_norm.hpp"

namespace revox {
namespace cuda {
// revox/ops/cuda/group_norm.cuh
template <class T>
void group_norm_forward(const Cuda& dev, TensorView<std::add_const_t<T>> x, index_t num_groups,
                        double eps, std::add_const_t<T>* gamma, std::add_const_t<T>* beta,
                        TensorView<T> y, double* mean, double* rstd);
template <class T>
void group_norm_backward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                         TensorView<std::add_const_t<T>> dy, index_t num_groups,
                         const double* mean, const double* rstd, std::add_const_t<T>* gamma,
                         TensorView<T> dx, std::add_pointer_t<T> dgamma,
                         std::add_pointer_t<T> dbeta);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void group_norm_forward(const Dev& dev, TensorView<std::add_const_t<T>> x, index_t num_groups,
                        double eps, std::add_const_t<T>* gamma, std::add_const_t<T>* beta,
                        TensorView<T> y, double* mean, double* rstd) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::group_norm_forward");
    (void)dev;
    cpu::group_norm_forward<T>(x, num_groups, eps, gamma, beta, y, mean, rstd);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::group_norm_forward<T>(dev, x, num_groups, eps, gamma, beta, y, mean, rstd);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::group_norm_forward", x.shape);
    ::revox::detail::plan_scratch(
        sizeof(double) *
            static_cast<std::size_t>(cpu::group_norm_forward_scratch_elements(x.shape, num_groups)),
        "double sums scratch");
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::group_norm_forward: unknown device type");
  }
}

template <class Dev, class T>
void group_norm_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                         TensorView<std::add_const_t<T>> dy, index_t num_groups,
                         const double* mean, const double* rstd, std::add_const_t<T>* gamma,
                         TensorView<T> dx, std::add_pointer_t<T> dgamma,
                         std::add_pointer_t<T> dbeta) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::group_norm_backward");
    (void)dev;
    cpu::group_norm_backward<T>(x, dy, num_groups, mean, rstd, gamma, dx, dgamma, dbeta);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::group_norm_backward<T>(dev, x, dy, num_groups, mean, rstd, gamma, dx, dgamma, dbeta);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::group_norm_backward", x.shape);
    ::revox::detail::plan_scratch(
        sizeof(double) *
            static_cast<std::size_t>(cpu::group_norm_backward_scratch_elements(x.shape, num_groups)),
        "double sums scratch");
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::group_norm_backward: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
