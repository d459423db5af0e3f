// revox/ops/group_norm.hpp — the device dispatchers of group normalisation. Shapes, what each
// op assigns or accumulates, precision and preconditions are in revox/ops/cpu/group_norm.hpp:
//   group_norm_forward(dev, x, num_groups, eps, gamma, beta, y, mean_or_null, rstd_or_null)
//       y (N, C, D, H, W), mean and rstd (N, G) in double: ASSIGNED
//   group_norm_backward(dev, x, dy, num_groups, mean, rstd, gamma, dx, dgamma, dbeta)
//       dx ASSIGNED (skipped when empty); dgamma, dbeta (C) ACCUMULATED
// Only the output argument deduces T: inputs may be mutable views.
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/group_norm.hpp"

namespace revox::ops {

template <class Dev, class T>
void group_norm_forward(const Dev& dev, TensorView<std::add_const_t<T>> x, index_t num_groups,
                        double eps, std::add_const_t<T>* gamma, std::add_const_t<T>* beta,
                        TensorView<T> y, double* mean, double* rstd) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::group_norm_forward<T>(x, num_groups, eps, gamma, beta, y, mean, rstd);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::group_norm_forward: no kernel for this device yet (CUDA kernels arrive "
                  "with the CUDA backend)");
  }
}

template <class Dev, class T>
void group_norm_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                         TensorView<std::add_const_t<T>> dy, index_t num_groups,
                         const double* mean, const double* rstd, std::add_const_t<T>* gamma,
                         TensorView<T> dx, std::add_pointer_t<T> dgamma,
                         std::add_pointer_t<T> dbeta) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    cpu::group_norm_backward<T>(x, dy, num_groups, mean, rstd, gamma, dx, dgamma, dbeta);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::group_norm_backward: no kernel for this device yet (CUDA kernels arrive "
                  "with the CUDA backend)");
  }
}

}  // namespace revox::ops
