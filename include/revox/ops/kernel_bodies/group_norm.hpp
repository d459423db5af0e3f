// revox/ops/kernel_bodies/group_norm.hpp — the kernel bodies of group normalisation (REVOX_HD
// functors, see ops/kernel_bodies/for_each.hpp); shapes and formulas as ops/cpu/group_norm.hpp.
//
//   x, y, dy, dx (N, C, D, H, W); gamma, beta, dgamma, dbeta (C); mean, rstd (N, G) double.
//   Cg = C / G channels per group, S = D * H * W elements per (n, c) plane.
//   gamma may be nullptr (scale 1), beta nullptr (shift 0), dgamma / dbeta nullptr (not
//   requested): instance normalisation is these bodies with G = C and optional weight and bias
//   (ops/cuda/instance_norm.cuh). y may be x, and dx may be dy (each element is read before it
//   is written, by the same call).
//
// The statistics are reduced in two stages, deterministically (no atomics): every plane is
// cut into `chunks` chunks of `chunk` elements (chunks = ceil(S / chunk)); stage 1 writes one
// double partial sum per (plane, chunk) slot, slot = plane * chunks + k; stage 2 adds a
// plane's chunks in order, then the planes of a group in channel order, as the CPU adds its
// per-plane sums in channel order. The arithmetic follows the CPU fast path: forward sums
// v = x - shift and v^2 in double with shift = the group's first element, var = E[v^2] -
// E[v]^2 clamped at 0; backward sums dy and dy * (x - mean) per plane.
//
// Forward:   GroupNormStatsPartial  (N*C*chunks calls)  sum1, sum2 per slot    ASSIGNED
//            GroupNormStats         (N*G calls)         mean, rstd             ASSIGNED
//            GroupNormApply         (N*C*S calls)       y                      ASSIGNED
// Backward:  GroupNormGradPartial   (N*C*chunks calls)  sum_dy, sum_dy_xc per slot ASSIGNED
//            GroupNormGradPlanes    (N*C calls)         per-plane sums         ASSIGNED
//            GroupNormGradCoefficients (N*G calls)      coef_x, coef_1         ASSIGNED
//            GroupNormGradParams    (C calls)           dgamma, dbeta          ACCUMULATED
//                                   (skipped when both are nullptr)
//            GroupNormGradInput     (N*C*S calls)       dx                     ASSIGNED
// with dx = rstd * gamma[c] * dy + (x - mean) * coef_x + coef_1 per element (gamma = 1 when
// nullptr).
// group_norm_forward_stages / group_norm_backward_stages run these bodies in order through a
// runner `run(count, body)` (cuda::for_each on the GPU, emulate_for_each in the tests), with
// the scratch layout fixed here, so the GPU and its CPU emulation take the same steps.
#pragma once

#include <cmath>

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"

namespace revox::kernels {

// Elements per chunk of a plane in the statistics reductions of the GPU launchers.
inline constexpr index_t kGroupNormChunk = 4096;

// Chunks of `chunk` elements that cover one plane of `spatial` elements.
REVOX_HD inline index_t group_norm_chunks(index_t spatial, index_t chunk) {
  return (spatial + chunk - 1) / chunk;
}

// The extents every group-norm body needs.
struct GroupNormDims {
  index_t n = 0;
  index_t c = 0;
  index_t groups = 0;
  index_t spatial = 0;
  index_t chunk = 1;   // elements per chunk of a plane
  index_t chunks = 1;  // group_norm_chunks(spatial, chunk)

  REVOX_HD index_t channels_per_group() const { return c / groups; }
  REVOX_HD index_t slots() const { return n * c * chunks; }
  // Elements [begin, end) of plane `plane`'s chunk k, as offsets into the tensor.
  REVOX_HD index_t chunk_begin(index_t plane, index_t k) const {
    return plane * spatial + k * chunk;
  }
  REVOX_HD index_t chunk_end(index_t plane, index_t k) const {
    const index_t end = (k + 1) * chunk;
    return plane * spatial + (end < spatial ? end : spatial);
  }
};

template <class T>
struct GroupNormStatsPartial {
  const T* x;
  GroupNormDims dims;
  double* sum1;  // per slot: sum (x - shift)
  double* sum2;  // per slot: sum (x - shift)^2

  REVOX_HD void operator()(index_t slot) const {
    const index_t plane = slot / dims.chunks;
    const index_t k = slot % dims.chunks;
    const index_t n = plane / dims.c;
    const index_t cg = dims.channels_per_group();
    const index_t first_channel = (plane % dims.c) / cg * cg;
    const double shift = static_cast<double>(x[(n * dims.c + first_channel) * dims.spatial]);
    double s1 = 0.0, s2 = 0.0;
    const index_t end = dims.chunk_end(plane, k);
    for (index_t i = dims.chunk_begin(plane, k); i < end; ++i) {
      const double v = static_cast<double>(x[i]) - shift;
      s1 += v;
      s2 += v * v;
    }
    sum1[slot] = s1;
    sum2[slot] = s2;
  }
};

template <class T>
struct GroupNormStats {
  const T* x;
  GroupNormDims dims;
  double eps;
  const double* sum1;
  const double* sum2;
  double* mean;  // (N, G)
  double* rstd;  // (N, G)

  REVOX_HD void operator()(index_t ng) const {
    const index_t n = ng / dims.groups;
    const index_t g = ng % dims.groups;
    const index_t cg = dims.channels_per_group();
    const double shift = static_cast<double>(x[(n * dims.c + g * cg) * dims.spatial]);
    double s1 = 0.0, s2 = 0.0;
    for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
      const index_t first_slot = (n * dims.c + c) * dims.chunks;
      double p1 = 0.0, p2 = 0.0;
      for (index_t k = 0; k < dims.chunks; ++k) {
        p1 += sum1[first_slot + k];
        p2 += sum2[first_slot + k];
      }
      s1 += p1;
      s2 += p2;
    }
    const double count = static_cast<double>(cg * dims.spatial);
    const double shifted_mean = s1 / count;
    const double raw_var = s2 / count - shifted_mean * shifted_mean;
    const double var = raw_var < 0.0 ? 0.0 : raw_var;
    mean[ng] = shift + shifted_mean;
    rstd[ng] = 1.0 / std::sqrt(var + eps);
  }
};

template <class T>
struct GroupNormApply {
  const T* x;
  GroupNormDims dims;
  const double* mean;
  const double* rstd;
  const T* gamma;  // nullptr: scale 1
  const T* beta;   // nullptr: shift 0
  T* y;

  REVOX_HD void operator()(index_t i) const {
    const index_t plane = i / dims.spatial;
    const index_t c = plane % dims.c;
    const index_t ng = (plane / dims.c) * dims.groups + c / dims.channels_per_group();
    const double scale = gamma != nullptr ? rstd[ng] * static_cast<double>(gamma[c]) : rstd[ng];
    const double offset = beta != nullptr ? static_cast<double>(beta[c]) : 0.0;
    y[i] = static_cast<T>((static_cast<double>(x[i]) - mean[ng]) * scale + offset);
  }
};

template <class T>
struct GroupNormGradPartial {
  const T* x;
  const T* dy;
  GroupNormDims dims;
  const double* mean;
  double* sum_dy;     // per slot: sum dy
  double* sum_dy_xc;  // per slot: sum dy * (x - mean)

  REVOX_HD void operator()(index_t slot) const {
    const index_t plane = slot / dims.chunks;
    const index_t k = slot % dims.chunks;
    const index_t ng =
        (plane / dims.c) * dims.groups + (plane % dims.c) / dims.channels_per_group();
    const double mu = mean[ng];
    double a = 0.0, b = 0.0;
    const index_t end = dims.chunk_end(plane, k);
    for (index_t i = dims.chunk_begin(plane, k); i < end; ++i) {
      const double g = static_cast<double>(dy[i]);
      a += g;
      b += g * (static_cast<double>(x[i]) - mu);
    }
    sum_dy[slot] = a;
    sum_dy_xc[slot] = b;
  }
};

struct GroupNormGradPlanes {
  GroupNormDims dims;
  const double* slot_dy;
  const double* slot_dy_xc;
  double* plane_dy;     // (N, C)
  double* plane_dy_xc;  // (N, C)

  REVOX_HD void operator()(index_t plane) const {
    double a = 0.0, b = 0.0;
    for (index_t k = 0; k < dims.chunks; ++k) {
      a += slot_dy[plane * dims.chunks + k];
      b += slot_dy_xc[plane * dims.chunks + k];
    }
    plane_dy[plane] = a;
    plane_dy_xc[plane] = b;
  }
};

template <class T>
struct GroupNormGradCoefficients {
  GroupNormDims dims;
  const T* gamma;  // nullptr: gamma = 1
  const double* rstd;
  const double* plane_dy;
  const double* plane_dy_xc;
  double* coef_x;  // (N, G)
  double* coef_1;  // (N, G)

  REVOX_HD void operator()(index_t ng) const {
    const index_t n = ng / dims.groups;
    const index_t g = ng % dims.groups;
    const index_t cg = dims.channels_per_group();
    double sum_gamma_dy = 0.0, sum_gamma_dy_xc = 0.0;
    for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
      const double w = gamma != nullptr ? static_cast<double>(gamma[c]) : 1.0;
      sum_gamma_dy += w * plane_dy[n * dims.c + c];
      sum_gamma_dy_xc += w * plane_dy_xc[n * dims.c + c];
    }
    const double count = static_cast<double>(cg * dims.spatial);
    const double r = rstd[ng];
    coef_x[ng] = -r * r * r * sum_gamma_dy_xc / count;
    coef_1[ng] = -r * sum_gamma_dy / count;
  }
};

template <class T>
struct GroupNormGradParams {
  GroupNormDims dims;
  const double* rstd;
  const double* plane_dy;
  const double* plane_dy_xc;
  T* dgamma;  // nullptr: not requested
  T* dbeta;   // nullptr: not requested

  REVOX_HD void operator()(index_t c) const {
    double dgamma_sum = 0.0, dbeta_sum = 0.0;
    const index_t group = c / dims.channels_per_group();
    for (index_t n = 0; n < dims.n; ++n) {
      dgamma_sum += plane_dy_xc[n * dims.c + c] * rstd[n * dims.groups + group];
      dbeta_sum += plane_dy[n * dims.c + c];
    }
    if (dgamma != nullptr) dgamma[c] = static_cast<T>(static_cast<double>(dgamma[c]) + dgamma_sum);
    if (dbeta != nullptr) dbeta[c] = static_cast<T>(static_cast<double>(dbeta[c]) + dbeta_sum);
  }
};

template <class T>
struct GroupNormGradInput {
  const T* x;
  const T* dy;
  GroupNormDims dims;
  const double* mean;
  const double* rstd;
  const T* gamma;  // nullptr: gamma = 1
  const double* coef_x;
  const double* coef_1;
  T* dx;

  REVOX_HD void operator()(index_t i) const {
    const index_t plane = i / dims.spatial;
    const index_t c = plane % dims.c;
    const index_t ng = (plane / dims.c) * dims.groups + c / dims.channels_per_group();
    const double k_dy = gamma != nullptr ? rstd[ng] * static_cast<double>(gamma[c]) : rstd[ng];
    dx[i] = static_cast<T>(k_dy * static_cast<double>(dy[i]) +
                           (static_cast<double>(x[i]) - mean[ng]) * coef_x[ng] + coef_1[ng]);
  }
};

inline GroupNormDims group_norm_dims(const Shape5& x, index_t num_groups, index_t chunk) {
  GroupNormDims dims;
  dims.n = x.n;
  dims.c = x.c;
  dims.groups = num_groups;
  dims.spatial = x.spatial();
  dims.chunk = chunk;
  dims.chunks = group_norm_chunks(dims.spatial, chunk);
  return dims;
}

// Doubles of scratch the forward stages take: sum1 and sum2 per slot.
inline index_t group_norm_forward_scratch(const GroupNormDims& dims) { return 2 * dims.slots(); }

// mean and rstd (N, G) ASSIGNED, then y ASSIGNED. x, gamma, beta, y, mean, rstd and scratch
// are memory the runner's bodies can address; gamma and beta may be nullptr; y may be x.
template <class T, class Run>
void group_norm_forward_stages(const Run& run, const T* x, const GroupNormDims& dims, double eps,
                               const T* gamma, const T* beta, T* y, double* mean, double* rstd,
                               double* scratch) {
  double* sum1 = scratch;
  double* sum2 = sum1 + dims.slots();
  run(dims.slots(), GroupNormStatsPartial<T>{x, dims, sum1, sum2});
  run(dims.n * dims.groups, GroupNormStats<T>{x, dims, eps, sum1, sum2, mean, rstd});
  run(dims.n * dims.c * dims.spatial, GroupNormApply<T>{x, dims, mean, rstd, gamma, beta, y});
}

// Doubles of scratch the backward stages take: two per slot, two per plane, two per (n, g).
inline index_t group_norm_backward_scratch(const GroupNormDims& dims) {
  return 2 * dims.slots() + 2 * dims.n * dims.c + 2 * dims.n * dims.groups;
}

// dgamma, dbeta ACCUMULATED unless nullptr; dx ASSIGNED unless it is nullptr; gamma may be
// nullptr (1); dx may be dy.
template <class T, class Run>
void group_norm_backward_stages(const Run& run, const T* x, const T* dy, const GroupNormDims& dims,
                                const double* mean, const double* rstd, const T* gamma, T* dx,
                                T* dgamma, T* dbeta, double* scratch) {
  double* slot_dy = scratch;
  double* slot_dy_xc = slot_dy + dims.slots();
  double* plane_dy = slot_dy_xc + dims.slots();
  double* plane_dy_xc = plane_dy + dims.n * dims.c;
  double* coef_x = plane_dy_xc + dims.n * dims.c;
  double* coef_1 = coef_x + dims.n * dims.groups;
  run(dims.slots(), GroupNormGradPartial<T>{x, dy, dims, mean, slot_dy, slot_dy_xc});
  run(dims.n * dims.c, GroupNormGradPlanes{dims, slot_dy, slot_dy_xc, plane_dy, plane_dy_xc});
  if (dgamma != nullptr || dbeta != nullptr) {
    run(dims.c, GroupNormGradParams<T>{dims, rstd, plane_dy, plane_dy_xc, dgamma, dbeta});
  }
  if (dx == nullptr) return;
  run(dims.n * dims.groups,
      GroupNormGradCoefficients<T>{dims, gamma, rstd, plane_dy, plane_dy_xc, coef_x, coef_1});
  run(dims.n * dims.c * dims.spatial,
      GroupNormGradInput<T>{x, dy, dims, mean, rstd, gamma, coef_x, coef_1, dx});
}

}  // namespace revox::kernels
