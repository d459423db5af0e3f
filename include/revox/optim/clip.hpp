// revox/optim/clip.hpp — gradient-norm clipping over a model's flat gradient buffer, as
// torch.nn.utils.clip_grad_norm_.
//
//   double total = optim::clip_grad_norm(params, max_norm, norm_type);
//
// total = (sum over every gradient element g of |g|^p)^(1/p) for norm_type p > 0, or
// max |g| for p = infinity (std::numeric_limits<double>::infinity()); the sums run in
// double over the parameters only (the alignment padding between parameters in the flat
// buffer is skipped). Then, with
//   coef = max_norm / (total + 1e-6),
// every gradient element is multiplied by coef when coef < 1, and left alone otherwise
// (PyTorch multiplies by min(coef, 1)). Returns total, the norm BEFORE clipping.
//
// A non-finite total (a NaN or infinite gradient, or an overflow of the p-th powers) throws
// revox::Error by default (PyTorch's error_if_nonfinite=True) and leaves the gradients
// unchanged. With error_if_nonfinite = false (PyTorch's default) it does what PyTorch
// does: coef is 0 for an infinite total and NaN for a NaN total, and the gradients are
// multiplied by it.
//
// Preconditions, checked: max_norm finite and >= 0, norm_type > 0 (or infinity). CPU
// parameters (the gradients are read and written through host pointers).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"

namespace revox::optim {

// The norm of the gradients in `params` (padding excluded); see the header comment.
template <class T, class Device>
double grad_norm(const Parameters<T, Device>& params, double norm_type = 2.0) {
  static_assert(DeviceTraits<Device>::host_accessible,
                "grad_norm reads the gradients through host pointers: CPU parameters only");
  REVOX_CHECK(norm_type > 0.0 && !std::isnan(norm_type),
              "clip_grad_norm: norm_type must be positive (or infinity), got ", norm_type);
  const T* grads = params.grads().data;
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;
  bool nan_seen = false;
  for (const ParamEntry& entry : params.entries()) {
    const T* g = grads + entry.offset;
    const index_t count = entry.shape.numel();
    for (index_t i = 0; i < count; ++i) {
      const double a = std::abs(static_cast<double>(g[i]));
      if (std::isnan(a)) nan_seen = true;
      if (inf_norm) {
        acc = std::max(acc, a);
      } else if (norm_type == 2.0) {
        acc += a * a;
      } else if (norm_type == 1.0) {
        acc += a;
      } else {
        acc += std::pow(a, norm_type);
      }
    }
  }
  if (nan_seen) return std::numeric_limits<double>::quiet_NaN();
  if (inf_norm || norm_type == 1.0) return acc;
  if (norm_type == 2.0) return std::sqrt(acc);
  return std::pow(acc, 1.0 / norm_type);
}

// Scales the gradients so that their norm is at most max_norm; returns the norm before.
template <class T, class Device>
double clip_grad_norm(Parameters<T, Device>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = true) {
  REVOX_CHECK(std::isfinite(max_norm) && max_norm >= 0.0,
              "clip_grad_norm: max_norm must be finite and non-negative, got ", max_norm);
  const double total = grad_norm(params, norm_type);
  REVOX_CHECK(std::isfinite(total) || !error_if_nonfinite, "clip_grad_norm: the total ",
              norm_type, "-norm of the gradients is ", total,
              " (a gradient is NaN or infinite, or the norm overflows); the gradients are "
              "left unchanged. Pass error_if_nonfinite = false to scale them anyway, as "
              "PyTorch's default does");
  const double coef = max_norm / (total + 1e-6);
  if (!(coef < 1.0) && !std::isnan(coef)) return total;
  T* grads = params.grads().data;
  for (const ParamEntry& entry : params.entries()) {
    T* g = grads + entry.offset;
    const index_t count = entry.shape.numel();
    for (index_t i = 0; i < count; ++i) g[i] = static_cast<T>(static_cast<double>(g[i]) * coef);
  }
  return total;
}

}  // namespace revox::optim
