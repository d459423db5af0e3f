// revox/ops/instance_norm.hpp — instance normalisation (PyTorch's nn.InstanceNorm3d with
// track_running_stats=False) on any device: each (n, c) plane of D*H*W elements is normalised
// by its own mean and biased variance, then optionally scaled and shifted per channel.
//
//   instance_norm_forward(dev, x, weight, bias, eps, y, mean, rstd)
//       mean = (1/S) sum x;  var = (1/S) sum (x - mean)^2 (biased), S = D*H*W;
//       rstd = 1 / sqrt(var + eps);  y = (x - mean) * rstd [* weight[c]] [+ bias[c]].
//       y (N, C, D, H, W) ASSIGNED; mean and rstd (N, C) in double, row-major (n * C + c),
//       ASSIGNED unless nullptr. weight and bias (C) may each be nullptr (no scale / no shift).
//   instance_norm_backward(dev, x, dy, weight, mean, rstd, dx, dweight, dbias)
//       xhat = (x - mean) * rstd,  g = weight[c] * dy (weight nullptr: g = dy), per plane
//       dx = rstd * (g - mean_plane(g) - xhat * mean_plane(g * xhat))   ASSIGNED (skipped when
//       dx is empty);  dweight[c] += sum_n sum_plane dy * xhat,  dbias[c] += sum_n sum_plane dy
//       ACCUMULATED, each skipped when nullptr. mean and rstd: what forward produced for x.
// y may alias x exactly (forward in place) and dx may alias dy exactly (backward in place):
// every kernel reads a whole plane for its sums before it writes the plane, element by
// element. Only the output argument deduces T: inputs may be mutable views. On the GPU every
// pointer and view is device memory. Shapes are checked here, once, for every device.
//
// Precision: statistics in double, x - mean formed in double for every element (as
// GroupNorm, ops/group_norm.hpp), so float inputs with a large offset keep float precision.
// PyTorch refuses a single spatial element in training; revox computes it (var = 0, y = bias).
//
// Kernels (the shape every op follows, revox/ops/op.hpp): InstanceNormKernels<Cpu> in
// ops/cpu/instance_norm.hpp (with revox::cpu::reference), InstanceNormKernels<Cuda> in
// ops/cuda/instance_norm.cuh, which runs GroupNorm's bodies (ops/kernel_bodies/group_norm.hpp)
// with one group per channel. The layer is revox/layers/instance_norm3d.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

// The argument checks, shared by every device (and by revox::cpu::reference).
namespace revox::detail {

inline void check_instance_norm_forward(const char* op, const Shape5& x, double eps,
                                        const Shape5& y) {
  REVOX_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be finite and >= 0, got ", eps);
  REVOX_CHECK(y == x, op, ": y shape ", y, " must equal x shape ", x);
}

inline void check_instance_norm_backward(const char* op, const Shape5& x, const Shape5& dy,
                                         const void* mean, const void* rstd, const Shape5& dx,
                                         bool dx_empty) {
  REVOX_CHECK(dy == x, op, ": dy shape ", dy, " must equal x shape ", x);
  REVOX_CHECK(dx_empty || dx == x, op, ": dx shape ", dx, " must equal x shape ", x);
  REVOX_CHECK(mean != nullptr && rstd != nullptr, op, ": mean and rstd must not be null");
}

}  // namespace revox::detail

namespace revox::ops {

template <class Dev>
struct InstanceNormKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::instance_norm has no kernels for this device: a CUDA translation unit "
                "must include revox/ops/cuda/instance_norm.cuh (or revox/revox.cuh)");
};

// Doubles of tracked scratch the CPU backward allocates (and frees before returning): the two
// sums of every plane, kept for the parameter gradients when dweight or dbias is requested;
// 0 for an empty x. What the Plan device counts for the op.
inline index_t instance_norm_backward_scratch_elements(const Shape5& x, bool param_grads) {
  return x.empty() || !param_grads ? 0 : 2 * x.n * x.c;
}

template <class Dev, class T>
void instance_norm_forward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                           std::add_const_t<T>* weight, std::add_const_t<T>* bias, double eps,
                           TensorView<T> y, double* mean, double* rstd) {
  ::revox::detail::check_instance_norm_forward("ops::instance_norm_forward", x.shape, eps, y.shape);
  OpScope<Dev> scope("ops::instance_norm_forward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    InstanceNormKernels<Dev>::template forward<T>(dev, x, weight, bias, eps, y, mean, rstd);
  }
}

template <class Dev, class T>
void instance_norm_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                            TensorView<std::add_const_t<T>> dy, std::add_const_t<T>* weight,
                            const double* mean, const double* rstd, TensorView<T> dx,
                            std::add_pointer_t<T> dweight, std::add_pointer_t<T> dbias) {
  ::revox::detail::check_instance_norm_backward("ops::instance_norm_backward", x.shape, dy.shape, mean,
                                       rstd, dx.shape, dx.empty());
  OpScope<Dev> scope("ops::instance_norm_backward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    InstanceNormKernels<Dev>::template backward<T>(dev, x, dy, weight, mean, rstd, dx, dweight,
                                                   dbias);
  } else {
    (void)dev;
    ::revox::detail::plan_scratch(
        sizeof(double) * static_cast<std::size_t>(instance_norm_backward_scratch_elements(
                             x.shape, dweight != nullptr || dbias != nullptr)),
        "double sums scratch");
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/instance_norm.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/instance_norm.cuh"
#endif
