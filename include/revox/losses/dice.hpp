// revox/losses/dice.hpp — region-based soft Dice loss and BCE + Dice, on logits.
//
// logits, targets: (N, C, D, H, W), one channel per region (BraTS: WT, TC, ET; any C works);
// targets in [0, 1] (binary region masks, soft targets allowed). With p = sigmoid(logit):
//
//   soft_dice_loss:  for each sample n and channel c, over the D*H*W voxels,
//                      dice[n, c] = (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)
//                    loss = 1 - mean over (n, c) of dice[n, c]
//                    (per sample, unsquared, as in Brügger's PRU; smooth keeps an empty
//                    target channel well defined: predicting it empty scores ~1).
//   bce_dice_loss:   bce_weight * mean over all elements of BCE-with-logits
//                    + dice_weight * soft_dice_loss,
//                    BCE(x, t) = max(x, 0) - x t + log1p(exp(-|x|))  (stable for any x).
//
// Batch Dice (nnU-Net's batch_dice): the Dice of each channel over ALL samples of a batch,
//   dice[c] = (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth), sums over n and voxels,
//   batch_soft_dice_loss = 1 - mean over c of dice[c]
//   batch_bce_dice_loss  = bce_weight * mean BCE over all elements + dice_weight * that.
// A channel empty in one sample no longer scores on its own: what counts is its voxels
// over the batch. The batch may come in parts of different sizes (a trainer holding one
// sample per tensor): batch_*_loss(std::vector of logits views, of targets views, of
// dlogits views, ...), each part (N_k, C, D_k, H_k, W_k) with the same C; the result is that
// of one tensor holding all parts' samples. CPU only; sums in the order of the parts, then
// of the samples, so deterministic as above. With one sample it equals soft_dice_loss.
//
// Both return the loss as double and ASSIGN d loss / d logits into `dlogits` (same shape as
// logits; pass an empty view, e.g. TensorView<float>{}, to skip the gradient). The element
// type T comes from `dlogits`; logits and targets may be mutable or const views
// (tensor.view() or tensor.cview()). Sums run in double also for float data;
// the parallel sums are deterministic: every (n, c) plane is cut into fixed chunks whose
// partial sums land in fixed slots and are added in a fixed order, so the result does not
// depend on the number of threads.
//
// Preconditions, checked (revox::Error): logits non-empty, targets and dlogits of the same
// shape, every logit finite, every target in [0, 1], smooth > 0, weights finite and >= 0.
//
// Devices: soft_dice_loss(logits, targets, dlogits, ...) and bce_dice_loss(...) run on the
// CPU; the overloads taking a device first, soft_dice_loss(dev, logits, ...), run on `dev`.
// On Cuda the views are device memory; the same two-stage reduction runs on the GPU
// (ops/cuda/dice_loss.cuh, bodies in ops/kernel_bodies/dice_loss.hpp, which also holds the
// element formulas both devices use), the value and the first bad logit or target are copied
// back, the same checks throw the same messages, and only then is dlogits written. The call
// waits for dev.stream (it returns the value on the host).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/kernel_bodies/dice_loss.hpp"

namespace revox {
namespace ops {
// The device-first overloads' kernels: dice_bce_loss(dev, loss, logits, targets, dlogits,
// smooth, bce_weight, dice_weight) with `loss` the name in messages ("soft_dice_loss" or
// "bce_dice_loss"). DiceLossKernels<Cpu> is below (losses::detail::dice_bce), and
// DiceLossKernels<Cuda> in ops/cuda/dice_loss.cuh (a .cu translation unit that includes this
// header gets it).
template <class Dev>
struct DiceLossKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "losses::soft_dice_loss and losses::bce_dice_loss have no kernels for this "
                "device: a CUDA translation unit must include revox/ops/cuda/dice_loss.cuh (or "
                "revox/revox.cuh)");
};
}  // namespace ops

namespace losses {
namespace detail {

// Elements per chunk of the deterministic reduction.
inline constexpr index_t kLossChunk = kernels::kLossChunk;

using kernels::sigmoid_pair;

struct ChunkSums {
  double intersection = 0.0;  // sum p t
  double prob = 0.0;          // sum p
  double target = 0.0;        // sum t
  double bce = 0.0;           // sum BCE(x, t)
  index_t bad_logit = -1;     // first offending flat index in the chunk, or -1
  index_t bad_target = -1;
};

struct PlaneSums {
  std::vector<double> intersection, prob, target;  // per (n, c) plane
  double bce = 0.0;                                // over all elements
};

inline std::string position(Shape5 s, index_t flat) {
  const index_t w = flat % s.w;
  const index_t h = (flat / s.w) % s.h;
  const index_t d = (flat / (s.w * s.h)) % s.d;
  const index_t c = (flat / s.spatial()) % s.c;
  const index_t n = flat / (s.spatial() * s.c);
  return revox::detail::concat("(n=", n, ", c=", c, ", d=", d, ", h=", h, ", w=", w, ")");
}

template <class T>
void check_inputs(const char* loss, TensorView<const T> logits, TensorView<const T> targets,
                  TensorView<T> dlogits) {
  REVOX_CHECK(logits.data != nullptr && logits.shape.valid(), loss,
              ": logits must be a non-empty (N, C, D, H, W) tensor, got shape ", logits.shape);
  REVOX_CHECK(targets.data != nullptr, loss, ": targets must not be empty");
  REVOX_CHECK(targets.shape == logits.shape, loss, ": targets must have the shape of logits ",
              logits.shape, ", got ", targets.shape);
  REVOX_CHECK(dlogits.empty() || dlogits.shape == logits.shape, loss,
              ": dlogits must have the shape of logits ", logits.shape, " (or be empty), got ",
              dlogits.shape);
}

inline void check_weights(const char* loss, double smooth, double bce_weight,
                          double dice_weight) {
  REVOX_CHECK(std::isfinite(smooth) && smooth > 0.0, loss,
              ": smooth must be positive and finite (it keeps the Dice of an empty channel "
              "defined), got ", smooth);
  REVOX_CHECK(std::isfinite(bce_weight) && bce_weight >= 0.0, loss,
              ": bce_weight must be finite and non-negative, got ", bce_weight);
  REVOX_CHECK(std::isfinite(dice_weight) && dice_weight >= 0.0, loss,
              ": dice_weight must be finite and non-negative, got ", dice_weight);
}

// Throws for the first non-finite logit or out-of-range target (flat indices, -1: none).
inline void check_values(const char* loss, Shape5 shape, index_t bad_logit,
                         double bad_logit_value, index_t bad_target, double bad_target_value) {
  REVOX_CHECK(bad_logit < 0, loss, ": logits must be finite, got ", bad_logit_value, " at ",
              position(shape, bad_logit));
  REVOX_CHECK(bad_target < 0, loss, ": targets must lie in [0, 1], got ", bad_target_value,
              " at ", position(shape, bad_target));
}

// Per-plane sums of p t, p and t (and the total BCE when with_bce), in double, validating
// every logit and target on the way.
template <class T>
PlaneSums plane_sums(const char* loss, TensorView<const T> logits, TensorView<const T> targets,
                     bool with_bce) {
  const Shape5 shape = logits.shape;
  const index_t planes = shape.n * shape.c;
  const index_t spatial = shape.spatial();
  const index_t chunks = (spatial + kLossChunk - 1) / kLossChunk;
  std::vector<ChunkSums> slots(static_cast<std::size_t>(planes * chunks));
  const T* x = logits.data;
  const T* t = targets.data;
  const index_t slot_count = planes * chunks;
#pragma omp parallel for schedule(static) if (logits.numel() > kLossChunk)
  for (index_t slot = 0; slot < slot_count; ++slot) {
    const index_t plane = slot / chunks;
    const index_t begin = plane * spatial + (slot % chunks) * kLossChunk;
    const index_t end = std::min(begin + kLossChunk, (plane + 1) * spatial);
    ChunkSums sums;
    for (index_t i = begin; i < end; ++i) {
      const double xi = static_cast<double>(x[i]);
      const double ti = static_cast<double>(t[i]);
      if (kernels::bad_logit(xi) && sums.bad_logit < 0) sums.bad_logit = i;
      if (kernels::bad_target(ti) && sums.bad_target < 0) sums.bad_target = i;
      double p, q;
      sigmoid_pair(xi, p, q);
      sums.intersection += p * ti;
      sums.prob += p;
      sums.target += ti;
      if (with_bce) sums.bce += kernels::bce_with_logits(xi, ti);
    }
    slots[static_cast<std::size_t>(slot)] = sums;
  }

  PlaneSums out;
  out.intersection.assign(static_cast<std::size_t>(planes), 0.0);
  out.prob.assign(static_cast<std::size_t>(planes), 0.0);
  out.target.assign(static_cast<std::size_t>(planes), 0.0);
  index_t bad_logit = -1;
  index_t bad_target = -1;
  for (index_t slot = 0; slot < slot_count; ++slot) {
    const ChunkSums& s = slots[static_cast<std::size_t>(slot)];
    const auto plane = static_cast<std::size_t>(slot / chunks);
    out.intersection[plane] += s.intersection;
    out.prob[plane] += s.prob;
    out.target[plane] += s.target;
    out.bce += s.bce;
    if (bad_logit < 0) bad_logit = s.bad_logit;
    if (bad_target < 0) bad_target = s.bad_target;
  }
  check_values(loss, shape, bad_logit, bad_logit < 0 ? 0.0 : static_cast<double>(x[bad_logit]),
               bad_target, bad_target < 0 ? 0.0 : static_cast<double>(t[bad_target]));
  return out;
}

// The loss for the given weights, and its gradient assigned into dlogits (unless empty).
template <class T>
double dice_bce(const char* loss, TensorView<const T> logits, TensorView<const T> targets,
                TensorView<T> dlogits, double smooth, double bce_weight, double dice_weight) {
  check_inputs(loss, logits, targets, dlogits);
  check_weights(loss, smooth, bce_weight, dice_weight);
  const bool with_bce = bce_weight != 0.0;
  const PlaneSums sums = plane_sums(loss, logits, targets, with_bce);

  const Shape5 shape = logits.shape;
  const index_t planes = shape.n * shape.c;
  const double inv_planes = 1.0 / static_cast<double>(planes);
  const double inv_numel = 1.0 / static_cast<double>(logits.numel());
  // dice = A / U with A = 2 I + smooth, U = P + S + smooth. d dice / d p_i = (2 t_i U - A) / U^2,
  // and d loss / d p_i = -dice_weight / planes * that.
  std::vector<double> numerator(static_cast<std::size_t>(planes));
  std::vector<double> union_(static_cast<std::size_t>(planes));
  double dice_sum = 0.0;
  for (index_t plane = 0; plane < planes; ++plane) {
    const auto k = static_cast<std::size_t>(plane);
    numerator[k] = 2.0 * sums.intersection[k] + smooth;
    union_[k] = sums.prob[k] + sums.target[k] + smooth;
    dice_sum += numerator[k] / union_[k];
  }
  const double dice_loss = 1.0 - dice_sum * inv_planes;
  const double value = dice_weight * dice_loss + (with_bce ? bce_weight * sums.bce * inv_numel : 0.0);
  if (dlogits.empty()) return value;

  const index_t spatial = shape.spatial();
  const T* x = logits.data;
  const T* t = targets.data;
  T* dx = dlogits.data;
  const double bce_scale = bce_weight * inv_numel;
#pragma omp parallel for schedule(static) if (logits.numel() > kLossChunk)
  for (index_t plane = 0; plane < planes; ++plane) {
    const auto k = static_cast<std::size_t>(plane);
    const double u = union_[k];
    const double scale = -dice_weight * inv_planes / (u * u);
    const double a = numerator[k];
    const index_t begin = plane * spatial;
    for (index_t i = begin; i < begin + spatial; ++i) {
      double p, q;
      sigmoid_pair(static_cast<double>(x[i]), p, q);
      const double ti = static_cast<double>(t[i]);
      const double dp = scale * (2.0 * ti * u - a);
      dx[i] = static_cast<T>(dp * p * q + bce_scale * (p - ti));
    }
  }
  return value;
}

}  // namespace detail

// 1 - mean over (n, c) of the soft Dice of sigmoid(logits) and targets; see the header comment.
template <class T>
double soft_dice_loss(nondeduced_t<TensorView<const T>> logits,
                      nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                      double smooth = 1.0) {
  return detail::dice_bce("soft_dice_loss", logits, targets, dlogits, smooth, 0.0, 1.0);
}

// bce_weight * mean BCE-with-logits + dice_weight * soft_dice_loss.
template <class T>
double bce_dice_loss(nondeduced_t<TensorView<const T>> logits,
                     nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                     double smooth = 1.0, double bce_weight = 1.0, double dice_weight = 1.0) {
  return detail::dice_bce("bce_dice_loss", logits, targets, dlogits, smooth, bce_weight,
                          dice_weight);
}

}  // namespace losses

namespace ops {
template <>
struct DiceLossKernels<Cpu> {
  template <class T>
  static double dice_bce_loss(const Cpu& /*dev*/, const char* loss, TensorView<const T> logits,
                              TensorView<const T> targets, TensorView<T> dlogits, double smooth,
                              double bce_weight, double dice_weight) {
    return losses::detail::dice_bce(loss, logits, targets, dlogits, smooth, bce_weight,
                                    dice_weight);
  }
};
}  // namespace ops

namespace losses {
namespace detail {
template <class Dev>
using if_device_t = std::enable_if_t<is_cpu_v<Dev> || is_cuda_v<Dev>>;

template <class Dev, class T>
double dice_bce_on(const Dev& dev, const char* loss, TensorView<const T> logits,
                   TensorView<const T> targets, TensorView<T> dlogits, double smooth,
                   double bce_weight, double dice_weight) {
  return ops::DiceLossKernels<Dev>::dice_bce_loss(dev, loss, logits, targets, dlogits, smooth,
                                                  bce_weight, dice_weight);
}
}  // namespace detail

// soft_dice_loss on the device `dev` (Cpu or Cuda; on Cuda every view is device memory).
template <class Dev, class T, class = detail::if_device_t<Dev>>
double soft_dice_loss(const Dev& dev, nondeduced_t<TensorView<const T>> logits,
                      nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                      double smooth = 1.0) {
  return detail::dice_bce_on(dev, "soft_dice_loss", logits, targets, dlogits, smooth, 0.0, 1.0);
}

// bce_dice_loss on the device `dev` (Cpu or Cuda; on Cuda every view is device memory).
template <class Dev, class T, class = detail::if_device_t<Dev>>
double bce_dice_loss(const Dev& dev, nondeduced_t<TensorView<const T>> logits,
                     nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                     double smooth = 1.0, double bce_weight = 1.0, double dice_weight = 1.0) {
  return detail::dice_bce_on(dev, "bce_dice_loss", logits, targets, dlogits, smooth, bce_weight,
                             dice_weight);
}

namespace detail {

// Batch Dice over `parts` (see the header comment); dlogits empty (no part) skips the
// gradient.
template <class T>
double batch_dice_bce(const char* loss, const std::vector<TensorView<const T>>& logits,
                      const std::vector<TensorView<const T>>& targets,
                      const std::vector<TensorView<T>>& dlogits, double smooth,
                      double bce_weight, double dice_weight) {
  REVOX_CHECK(!logits.empty(), loss, ": needs at least one part (logits of one or more "
              "samples)");
  REVOX_CHECK(targets.size() == logits.size(), loss, ": ", logits.size(),
              " logits parts but ", targets.size(), " targets parts");
  REVOX_CHECK(dlogits.empty() || dlogits.size() == logits.size(), loss, ": ", logits.size(),
              " logits parts but ", dlogits.size(), " dlogits parts (pass none to skip the "
              "gradient)");
  check_weights(loss, smooth, bce_weight, dice_weight);
  const bool with_bce = bce_weight != 0.0;
  const index_t channels = logits[0].shape.c;
  std::vector<double> intersection(static_cast<std::size_t>(channels), 0.0);
  std::vector<double> prob(intersection), target(intersection);
  double bce = 0.0;
  index_t numel = 0;
  for (std::size_t k = 0; k < logits.size(); ++k) {
    check_inputs(loss, logits[k], targets[k], dlogits.empty() ? TensorView<T>{} : dlogits[k]);
    REVOX_CHECK(logits[k].shape.c == channels, loss, ": every part must have ", channels,
                " channels (part 0's), part ", k, " has shape ", logits[k].shape);
    const PlaneSums sums = plane_sums(loss, logits[k], targets[k], with_bce);
    for (index_t plane = 0; plane < logits[k].shape.n * channels; ++plane) {
      const auto c = static_cast<std::size_t>(plane % channels);
      const auto p = static_cast<std::size_t>(plane);
      intersection[c] += sums.intersection[p];
      prob[c] += sums.prob[p];
      target[c] += sums.target[p];
    }
    bce += sums.bce;
    numel += logits[k].numel();
  }
  const double inv_channels = 1.0 / static_cast<double>(channels);
  const double inv_numel = 1.0 / static_cast<double>(numel);
  std::vector<double> numerator(static_cast<std::size_t>(channels));
  std::vector<double> union_(static_cast<std::size_t>(channels));
  double dice_sum = 0.0;
  for (std::size_t c = 0; c < numerator.size(); ++c) {
    numerator[c] = 2.0 * intersection[c] + smooth;
    union_[c] = prob[c] + target[c] + smooth;
    dice_sum += numerator[c] / union_[c];
  }
  const double value = dice_weight * (1.0 - dice_sum * inv_channels) +
                       (with_bce ? bce_weight * bce * inv_numel : 0.0);
  const double bce_scale = bce_weight * inv_numel;
  for (std::size_t k = 0; k < dlogits.size(); ++k) {
    if (dlogits[k].empty()) continue;
    const Shape5 shape = logits[k].shape;
    const index_t planes = shape.n * shape.c;
    const index_t spatial = shape.spatial();
    const T* x = logits[k].data;
    const T* t = targets[k].data;
    T* dx = dlogits[k].data;
#pragma omp parallel for schedule(static) if (logits[k].numel() > kLossChunk)
    for (index_t plane = 0; plane < planes; ++plane) {
      const auto c = static_cast<std::size_t>(plane % channels);
      const double u = union_[c];
      const double scale = -dice_weight * inv_channels / (u * u);
      const double a = numerator[c];
      const index_t begin = plane * spatial;
      for (index_t i = begin; i < begin + spatial; ++i) {
        double p, q;
        sigmoid_pair(static_cast<double>(x[i]), p, q);
        const double ti = static_cast<double>(t[i]);
        const double dp = scale * (2.0 * ti * u - a);
        dx[i] = static_cast<T>(dp * p * q + bce_scale * (p - ti));
      }
    }
  }
  return value;
}

}  // namespace detail

// 1 - mean over c of the soft Dice of channel c over all samples of all parts.
template <class T>
double batch_soft_dice_loss(const std::vector<TensorView<const T>>& logits,
                            const std::vector<TensorView<const T>>& targets,
                            const std::vector<TensorView<T>>& dlogits, double smooth = 1.0) {
  return detail::batch_dice_bce("batch_soft_dice_loss", logits, targets, dlogits, smooth, 0.0,
                                1.0);
}

// bce_weight * mean BCE-with-logits over all elements + dice_weight * batch_soft_dice_loss.
template <class T>
double batch_bce_dice_loss(const std::vector<TensorView<const T>>& logits,
                           const std::vector<TensorView<const T>>& targets,
                           const std::vector<TensorView<T>>& dlogits, double smooth = 1.0,
                           double bce_weight = 1.0, double dice_weight = 1.0) {
  return detail::batch_dice_bce("batch_bce_dice_loss", logits, targets, dlogits, smooth,
                                bce_weight, dice_weight);
}

// One tensor (N, C, D, H, W) holding the whole batch.
template <class T>
double batch_soft_dice_loss(nondeduced_t<TensorView<const T>> logits,
                            nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                            double smooth = 1.0) {
  return batch_soft_dice_loss<T>(std::vector<TensorView<const T>>{logits},
                                 std::vector<TensorView<const T>>{targets},
                                 std::vector<TensorView<T>>{dlogits}, smooth);
}

template <class T>
double batch_bce_dice_loss(nondeduced_t<TensorView<const T>> logits,
                           nondeduced_t<TensorView<const T>> targets, TensorView<T> dlogits,
                           double smooth = 1.0, double bce_weight = 1.0,
                           double dice_weight = 1.0) {
  return batch_bce_dice_loss<T>(std::vector<TensorView<const T>>{logits},
                                std::vector<TensorView<const T>>{targets},
                                std::vector<TensorView<T>>{dlogits}, smooth, bce_weight,
                                dice_weight);
}

}  // namespace losses
}  // namespace revox

#ifdef __CUDACC__
#include "revox/ops/cuda/dice_loss.cuh"
#endif
