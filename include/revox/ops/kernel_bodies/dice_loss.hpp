// revox/ops/kernel_bodies/dice_loss.hpp — the kernel bodies of the soft-Dice and BCE + Dice losses
// of losses/dice.hpp (REVOX_HD functors, see ops/kernel_bodies/for_each.hpp), and the element
// formulas the CPU path of losses/dice.hpp shares with them.
//
// logits, targets, dlogits (N, C, D, H, W); P = N * C planes of S = D * H * W voxels, each cut
// into `chunks` chunks of `chunk` voxels (slot = plane * chunks + k). The reduction is two
// stages, deterministic (no atomics), in the CPU's order:
//   DiceChunkSums   (P * chunks calls)  per slot: sum p t, sum p, sum t, sum BCE (double), and
//                                       the first non-finite logit and out-of-range target
//   DicePlaneSums   (P calls)           per plane: its slots added in chunk order
//   DiceTotals      (1 call)            the BCE total and the first bad indices over slots in
//                                       order; per plane numerator 2 I + smooth and union
//                                       P + T + smooth; the loss value
//   DiceGradient    (P * S calls)       dlogits ASSIGNED
// dice_loss_reduce_stages runs the first three through a runner `run(count, body)`
// (cuda::for_each on the GPU, emulate_for_each in the tests) with the scratch layout fixed
// here; the caller reads DiceLossTotals back, checks it, then runs DiceGradient.
#pragma once

#include <cmath>

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"

namespace revox::kernels {

// Voxels per chunk of a plane in the loss reductions (the CPU path uses the same).
inline constexpr index_t kLossChunk = index_t{1} << 14;

// p = sigmoid(x) and q = 1 - p, both to full relative precision (no cancellation in 1 - p).
REVOX_HD inline void sigmoid_pair(double x, double& p, double& q) {
  const double e = std::exp(-std::abs(x));
  const double r = 1.0 / (1.0 + e);
  if (x >= 0.0) {
    p = r;
    q = e * r;
  } else {
    p = e * r;
    q = r;
  }
}

// BCE-with-logits max(x, 0) - x t + log1p(exp(-|x|)), stable for any finite x.
REVOX_HD inline double bce_with_logits(double x, double t) {
  return (x < 0.0 ? 0.0 : x) - x * t + std::log1p(std::exp(-std::abs(x)));
}

// A logit that fails the precondition (not finite), and a target outside [0, 1] (NaN too).
REVOX_HD inline bool bad_logit(double x) { return !std::isfinite(x); }
REVOX_HD inline bool bad_target(double t) { return !(t >= 0.0 && t <= 1.0); }

struct LossChunkSums {
  double intersection;  // sum p t
  double prob;          // sum p
  double target;        // sum t
  double bce;           // sum BCE(x, t)
  index_t bad_logit;    // first offending flat index in the chunk, or -1
  index_t bad_target;
};

struct DiceLossTotals {
  double value;        // the loss
  index_t bad_logit;   // first offending flat index, or -1
  index_t bad_target;
};

struct DiceLossDims {
  index_t planes = 0;
  index_t spatial = 0;
  index_t chunk = 1;
  index_t chunks = 1;  // ceil(spatial / chunk)
  REVOX_HD index_t slots() const { return planes * chunks; }
};

inline DiceLossDims dice_loss_dims(const Shape5& logits, index_t chunk) {
  DiceLossDims dims;
  dims.planes = logits.n * logits.c;
  dims.spatial = logits.spatial();
  dims.chunk = chunk;
  dims.chunks = (dims.spatial + chunk - 1) / chunk;
  return dims;
}

// The weights of one loss: value = dice_weight * (1 - mean dice) + bce_weight * mean BCE.
struct DiceLossWeights {
  double smooth = 1.0;
  double bce_weight = 0.0;
  double dice_weight = 1.0;
  REVOX_HD bool with_bce() const { return bce_weight != 0.0; }
};

template <class T>
struct DiceChunkSums {
  const T* logits;
  const T* targets;
  DiceLossDims dims;
  bool with_bce;
  LossChunkSums* slots;

  REVOX_HD void operator()(index_t slot) const {
    const index_t plane = slot / dims.chunks;
    const index_t begin = plane * dims.spatial + (slot % dims.chunks) * dims.chunk;
    const index_t plane_end = (plane + 1) * dims.spatial;
    const index_t end = begin + dims.chunk < plane_end ? begin + dims.chunk : plane_end;
    LossChunkSums sums{0.0, 0.0, 0.0, 0.0, -1, -1};
    for (index_t i = begin; i < end; ++i) {
      const double xi = static_cast<double>(logits[i]);
      const double ti = static_cast<double>(targets[i]);
      if (bad_logit(xi) && sums.bad_logit < 0) sums.bad_logit = i;
      if (bad_target(ti) && sums.bad_target < 0) sums.bad_target = i;
      double p, q;
      sigmoid_pair(xi, p, q);
      sums.intersection += p * ti;
      sums.prob += p;
      sums.target += ti;
      if (with_bce) sums.bce += bce_with_logits(xi, ti);
    }
    slots[slot] = sums;
  }
};

struct DicePlaneSums {
  DiceLossDims dims;
  const LossChunkSums* slots;
  double* intersection;  // (P)
  double* prob;          // (P)
  double* target;        // (P)

  REVOX_HD void operator()(index_t plane) const {
    double a = 0.0, b = 0.0, c = 0.0;
    for (index_t k = 0; k < dims.chunks; ++k) {
      const LossChunkSums& s = slots[plane * dims.chunks + k];
      a += s.intersection;
      b += s.prob;
      c += s.target;
    }
    intersection[plane] = a;
    prob[plane] = b;
    target[plane] = c;
  }
};

struct DiceTotals {
  DiceLossDims dims;
  DiceLossWeights weights;
  const LossChunkSums* slots;
  const double* intersection;
  const double* prob;
  const double* target;
  double* numerator;  // (P): 2 I + smooth
  double* union_;     // (P): P + T + smooth
  DiceLossTotals* totals;

  REVOX_HD void operator()(index_t) const {
    double bce = 0.0;
    index_t first_bad_logit = -1, first_bad_target = -1;
    for (index_t slot = 0; slot < dims.slots(); ++slot) {
      bce += slots[slot].bce;
      if (first_bad_logit < 0) first_bad_logit = slots[slot].bad_logit;
      if (first_bad_target < 0) first_bad_target = slots[slot].bad_target;
    }
    double dice_sum = 0.0;
    for (index_t plane = 0; plane < dims.planes; ++plane) {
      numerator[plane] = 2.0 * intersection[plane] + weights.smooth;
      union_[plane] = prob[plane] + target[plane] + weights.smooth;
      dice_sum += numerator[plane] / union_[plane];
    }
    const double inv_planes = 1.0 / static_cast<double>(dims.planes);
    const double inv_numel = 1.0 / static_cast<double>(dims.planes * dims.spatial);
    const double dice_loss = 1.0 - dice_sum * inv_planes;
    totals->value = weights.dice_weight * dice_loss +
                    (weights.with_bce() ? weights.bce_weight * bce * inv_numel : 0.0);
    totals->bad_logit = first_bad_logit;
    totals->bad_target = first_bad_target;
  }
};

// dice = A / U with A = 2 I + smooth, U = P + T + smooth: d dice / d p_i = (2 t_i U - A) / U^2,
// d loss / d p_i = -dice_weight / planes * that, d p / d x = p q; plus the BCE term
// bce_weight / numel * (p - t).
template <class T>
struct DiceGradient {
  const T* logits;
  const T* targets;
  DiceLossDims dims;
  DiceLossWeights weights;
  const double* numerator;
  const double* union_;
  T* dlogits;

  REVOX_HD void operator()(index_t i) const {
    const index_t plane = i / dims.spatial;
    const double inv_planes = 1.0 / static_cast<double>(dims.planes);
    const double bce_scale =
        weights.bce_weight * (1.0 / static_cast<double>(dims.planes * dims.spatial));
    const double u = union_[plane];
    const double scale = -weights.dice_weight * inv_planes / (u * u);
    double p, q;
    sigmoid_pair(static_cast<double>(logits[i]), p, q);
    const double ti = static_cast<double>(targets[i]);
    const double dp = scale * (2.0 * ti * u - numerator[plane]);
    dlogits[i] = static_cast<T>(dp * p * q + bce_scale * (p - ti));
  }
};

// Scratch of the reduce stages, as an array of LossChunkSums (slots) and one of doubles.
inline index_t dice_loss_slot_scratch(const DiceLossDims& dims) { return dims.slots(); }
inline index_t dice_loss_double_scratch(const DiceLossDims& dims) { return 5 * dims.planes; }

// The plane arrays inside the double scratch, for DiceGradient after the reduce stages.
inline const double* dice_loss_numerator(const DiceLossDims& dims, const double* scratch) {
  return scratch + 3 * dims.planes;
}
inline const double* dice_loss_union(const DiceLossDims& dims, const double* scratch) {
  return scratch + 4 * dims.planes;
}

// *totals ASSIGNED, and the per-plane numerator and union in double_scratch.
template <class T, class Run>
void dice_loss_reduce_stages(const Run& run, const T* logits, const T* targets,
                             const DiceLossDims& dims, const DiceLossWeights& weights,
                             LossChunkSums* slot_scratch, double* double_scratch,
                             DiceLossTotals* totals) {
  double* intersection = double_scratch;
  double* prob = intersection + dims.planes;
  double* target = prob + dims.planes;
  double* numerator = target + dims.planes;
  double* union_ = numerator + dims.planes;
  run(dims.slots(),
      DiceChunkSums<T>{logits, targets, dims, weights.with_bce(), slot_scratch});
  run(dims.planes, DicePlaneSums{dims, slot_scratch, intersection, prob, target});
  run(index_t{1}, DiceTotals{dims, weights, slot_scratch, intersection, prob, target, numerator,
                             union_, totals});
}

}  // namespace revox::kernels
