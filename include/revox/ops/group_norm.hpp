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
// mean, rstd, dgamma and dbeta are device pointers, like the views. The op's shape is
// revox/ops/op.hpp: GroupNormKernels<Cpu> in ops/cpu/group_norm.hpp, GroupNormKernels<Cuda>
// in ops/cuda/group_norm.cuh (a .cu translation unit that includes this header gets it),
// whose bodies are ops/kernel_bodies/group_norm.hpp.
#pragma once

#include <cstddef>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::cpu {

// Doubles of tracked scratch (a Tensor<double>, freed before returning) that one call of
// the CPU group_norm_forward / group_norm_backward allocates for x's shape; 0 for an empty x.
// What the Plan device (revox/core/plan.hpp) counts for these ops.
inline index_t group_norm_forward_scratch_elements(const Shape5& x, index_t num_groups) {
  return x.empty() ? 0 : 2 * x.n * x.c + 3 * x.n * num_groups;
}
inline index_t group_norm_backward_scratch_elements(const Shape5& x, index_t num_groups) {
  return x.empty() ? 0 : 2 * x.n * x.c + 2 * x.n * num_groups;
}

}  // namespace revox::cpu

namespace revox::ops {

template <class Dev>
struct GroupNormKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::group_norm has no kernels for this device: a CUDA translation unit must "
                "include revox/ops/cuda/group_norm.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void group_norm_forward(const Dev& dev, TensorView<std::add_const_t<T>> x, index_t num_groups,
                        double eps, std::add_const_t<T>* gamma, std::add_const_t<T>* beta,
                        TensorView<T> y, double* mean, double* rstd) {
  OpScope<Dev> scope("ops::group_norm_forward", x.shape);
  if constexpr (is_plan_v<Dev>) {
    ::revox::detail::plan_scratch(
        sizeof(double) *
            static_cast<std::size_t>(cpu::group_norm_forward_scratch_elements(x.shape, num_groups)),
        "double sums scratch");
  }
  if constexpr (runs_kernels_v<Dev>) {
    GroupNormKernels<Dev>::template group_norm_forward<T>(dev, x, num_groups, eps, gamma, beta,
                                                          y, mean, rstd);
  }
}

template <class Dev, class T>
void group_norm_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                         TensorView<std::add_const_t<T>> dy, index_t num_groups,
                         const double* mean, const double* rstd, std::add_const_t<T>* gamma,
                         TensorView<T> dx, std::add_pointer_t<T> dgamma,
                         std::add_pointer_t<T> dbeta) {
  OpScope<Dev> scope("ops::group_norm_backward", x.shape);
  if constexpr (is_plan_v<Dev>) {
    ::revox::detail::plan_scratch(
        sizeof(double) *
            static_cast<std::size_t>(cpu::group_norm_backward_scratch_elements(x.shape, num_groups)),
        "double sums scratch");
  }
  if constexpr (runs_kernels_v<Dev>) {
    GroupNormKernels<Dev>::template group_norm_backward<T>(dev, x, dy, num_groups, mean, rstd,
                                                           gamma, dx, dgamma, dbeta);
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/group_norm.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/group_norm.cuh"
#endif
