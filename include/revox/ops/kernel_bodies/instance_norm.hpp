// revox/ops/kernel_bodies/instance_norm.hpp — the kernel bodies of instance normalisation (REVOX_HD
// functors, see ops/kernel_bodies/for_each.hpp); formulas and shapes as ops/instance_norm.hpp.
//
//   x, y, dy, dx (N, C, D, H, W); weight, bias, dweight, dbias (C), each may be nullptr;
//   mean, rstd (N, C) double. S = D * H * W elements per (n, c) plane.
//
// The statistics are reduced in two stages, deterministically (no atomics): every plane is cut
// into `chunks` chunks of `chunk` elements (chunks = ceil(S / chunk)); stage 1 writes one
// double partial sum per (plane, chunk) slot, slot = plane * chunks + k; stage 2 adds a plane's
// chunks in order. The arithmetic follows the CPU fast path (ops/cpu/instance_norm.hpp):
// forward sums v = x - shift and v^2 with shift = the plane's first element, var = E[v^2] -
// E[v]^2 clamped at 0; backward sums dy and dy * (x - mean) per plane.
//
// Forward:   InstanceNormStatsPartial (N*C*chunks calls) sum1, sum2 per slot      ASSIGNED
//            InstanceNormStats        (N*C calls)        mean, rstd               ASSIGNED
//            InstanceNormApply        (N*C*S calls)      y                        ASSIGNED
// Backward:  InstanceNormGradPartial  (N*C*chunks calls) sum_dy, sum_dy_xc per slot ASSIGNED
//            InstanceNormGradPlanes   (N*C calls)        per-plane sums, coef_x, coef_1 ASSIGNED
//            InstanceNormGradParams   (C calls)          dweight, dbias           ACCUMULATED
//            InstanceNormGradInput    (N*C*S calls)      dx                       ASSIGNED
// with dx = rstd * w[c] * dy + (x - mean) * coef_x + coef_1 per element (w = 1 without weight).
// instance_norm_forward_stages / instance_norm_backward_stages run these bodies in order
// through a runner `run(count, body)` (cuda::for_each on the GPU, emulate_for_each in the
// tests), with the scratch layout fixed here, so the GPU and its CPU emulation take the same
// steps.
#pragma once

#include <cmath>

#include "revox/core/config.hpp"
#include "revox/core/shape.hpp"

namespace revox::kernels {

// Elements per chunk of a plane in the statistics reductions of the GPU launchers.
inline constexpr index_t kInstanceNormChunk = 4096;

// The extents every instance-norm body needs.
struct InstanceNormDims {
  index_t n = 0;
  index_t c = 0;
  index_t spatial = 0;
  index_t chunk = 1;   // elements per chunk of a plane
  index_t chunks = 1;  // ceil(spatial / chunk)

  REVOX_HD index_t planes() const { return n * c; }
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

inline InstanceNormDims instance_norm_dims(const Shape5& x, index_t chunk) {
  InstanceNormDims dims;
  dims.n = x.n;
  dims.c = x.c;
  dims.spatial = x.spatial();
  dims.chunk = chunk;
  dims.chunks = (dims.spatial + chunk - 1) / chunk;
  return dims;
}

template <class T>
struct InstanceNormStatsPartial {
  const T* x;
  InstanceNormDims dims;
  double* sum1;  // per slot: sum (x - shift)
  double* sum2;  // per slot: sum (x - shift)^2

  REVOX_HD void operator()(index_t slot) const {
    const index_t plane = slot / dims.chunks;
    const index_t k = slot % dims.chunks;
    const double shift = static_cast<double>(x[plane * dims.spatial]);
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
struct InstanceNormStats {
  const T* x;
  InstanceNormDims dims;
  double eps;
  const double* sum1;
  const double* sum2;
  double* mean;  // (N, C)
  double* rstd;  // (N, C)

  REVOX_HD void operator()(index_t plane) const {
    const double shift = static_cast<double>(x[plane * dims.spatial]);
    double s1 = 0.0, s2 = 0.0;
    for (index_t k = 0; k < dims.chunks; ++k) {
      s1 += sum1[plane * dims.chunks + k];
      s2 += sum2[plane * dims.chunks + k];
    }
    const double count = static_cast<double>(dims.spatial);
    const double shifted_mean = s1 / count;
    const double raw_var = s2 / count - shifted_mean * shifted_mean;
    const double var = raw_var < 0.0 ? 0.0 : raw_var;
    mean[plane] = shift + shifted_mean;
    rstd[plane] = 1.0 / std::sqrt(var + eps);
  }
};

template <class T>
struct InstanceNormApply {
  const T* x;
  InstanceNormDims dims;
  const double* mean;
  const double* rstd;
  const T* weight;  // nullptr: no scale
  const T* bias;    // nullptr: no shift
  T* y;

  REVOX_HD void operator()(index_t i) const {
    const index_t plane = i / dims.spatial;
    const index_t c = plane % dims.c;
    const double scale =
        weight != nullptr ? rstd[plane] * static_cast<double>(weight[c]) : rstd[plane];
    const double offset = bias != nullptr ? static_cast<double>(bias[c]) : 0.0;
    y[i] = static_cast<T>((static_cast<double>(x[i]) - mean[plane]) * scale + offset);
  }
};

template <class T>
struct InstanceNormGradPartial {
  const T* x;
  const T* dy;
  InstanceNormDims dims;
  const double* mean;
  double* sum_dy;     // per slot: sum dy
  double* sum_dy_xc;  // per slot: sum dy * (x - mean)

  REVOX_HD void operator()(index_t slot) const {
    const index_t plane = slot / dims.chunks;
    const index_t k = slot % dims.chunks;
    const double mu = mean[plane];
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

template <class T>
struct InstanceNormGradPlanes {
  InstanceNormDims dims;
  const T* weight;  // nullptr: w = 1
  const double* rstd;
  const double* slot_dy;
  const double* slot_dy_xc;
  double* plane_dy;     // (N, C)
  double* plane_dy_xc;  // (N, C)
  double* coef_x;       // (N, C)
  double* coef_1;       // (N, C)

  REVOX_HD void operator()(index_t plane) const {
    double a = 0.0, b = 0.0;
    for (index_t k = 0; k < dims.chunks; ++k) {
      a += slot_dy[plane * dims.chunks + k];
      b += slot_dy_xc[plane * dims.chunks + k];
    }
    plane_dy[plane] = a;
    plane_dy_xc[plane] = b;
    const double count = static_cast<double>(dims.spatial);
    const double w = weight != nullptr ? static_cast<double>(weight[plane % dims.c]) : 1.0;
    const double r = rstd[plane];
    coef_x[plane] = -r * r * r * w * b / count;
    coef_1[plane] = -r * w * a / count;
  }
};

template <class T>
struct InstanceNormGradParams {
  InstanceNormDims dims;
  const double* rstd;
  const double* plane_dy;
  const double* plane_dy_xc;
  T* dweight;  // nullptr: not requested
  T* dbias;    // nullptr: not requested

  REVOX_HD void operator()(index_t c) const {
    double dweight_sum = 0.0, dbias_sum = 0.0;
    for (index_t n = 0; n < dims.n; ++n) {
      dweight_sum += plane_dy_xc[n * dims.c + c] * rstd[n * dims.c + c];
      dbias_sum += plane_dy[n * dims.c + c];
    }
    if (dweight != nullptr) {
      dweight[c] = static_cast<T>(static_cast<double>(dweight[c]) + dweight_sum);
    }
    if (dbias != nullptr) dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + dbias_sum);
  }
};

template <class T>
struct InstanceNormGradInput {
  const T* x;
  const T* dy;
  InstanceNormDims dims;
  const double* mean;
  const double* rstd;
  const T* weight;  // nullptr: w = 1
  const double* coef_x;
  const double* coef_1;
  T* dx;

  REVOX_HD void operator()(index_t i) const {
    const index_t plane = i / dims.spatial;
    const double w = weight != nullptr ? static_cast<double>(weight[plane % dims.c]) : 1.0;
    dx[i] = static_cast<T>(rstd[plane] * w * static_cast<double>(dy[i]) +
                           (static_cast<double>(x[i]) - mean[plane]) * coef_x[plane] +
                           coef_1[plane]);
  }
};

// Doubles of scratch the forward stages take: sum1 and sum2 per slot.
inline index_t instance_norm_forward_scratch(const InstanceNormDims& dims) {
  return 2 * dims.slots();
}

// mean and rstd (N, C) ASSIGNED, then y ASSIGNED. Every pointer is memory the runner's bodies
// can address; weight and bias may be nullptr.
template <class T, class Run>
void instance_norm_forward_stages(const Run& run, const T* x, const InstanceNormDims& dims,
                                  double eps, const T* weight, const T* bias, T* y, double* mean,
                                  double* rstd, double* scratch) {
  double* sum1 = scratch;
  double* sum2 = sum1 + dims.slots();
  run(dims.slots(), InstanceNormStatsPartial<T>{x, dims, sum1, sum2});
  run(dims.planes(), InstanceNormStats<T>{x, dims, eps, sum1, sum2, mean, rstd});
  run(dims.planes() * dims.spatial,
      InstanceNormApply<T>{x, dims, mean, rstd, weight, bias, y});
}

// Doubles of scratch the backward stages take: two per slot, four per plane.
inline index_t instance_norm_backward_scratch(const InstanceNormDims& dims) {
  return 2 * dims.slots() + 4 * dims.planes();
}

// dweight, dbias ACCUMULATED unless nullptr; dx ASSIGNED unless nullptr.
template <class T, class Run>
void instance_norm_backward_stages(const Run& run, const T* x, const T* dy,
                                   const InstanceNormDims& dims, const T* weight,
                                   const double* mean, const double* rstd, T* dx, T* dweight,
                                   T* dbias, double* scratch) {
  double* slot_dy = scratch;
  double* slot_dy_xc = slot_dy + dims.slots();
  double* plane_dy = slot_dy_xc + dims.slots();
  double* plane_dy_xc = plane_dy + dims.planes();
  double* coef_x = plane_dy_xc + dims.planes();
  double* coef_1 = coef_x + dims.planes();
  run(dims.slots(), InstanceNormGradPartial<T>{x, dy, dims, mean, slot_dy, slot_dy_xc});
  run(dims.planes(), InstanceNormGradPlanes<T>{dims, weight, rstd, slot_dy, slot_dy_xc, plane_dy,
                                               plane_dy_xc, coef_x, coef_1});
  if (dweight != nullptr || dbias != nullptr) {
    run(dims.c, InstanceNormGradParams<T>{dims, rstd, plane_dy, plane_dy_xc, dweight, dbias});
  }
  if (dx == nullptr) return;
  run(dims.planes() * dims.spatial,
      InstanceNormGradInput<T>{x, dy, dims, mean, rstd, weight, coef_x, coef_1, dx});
}

}  // namespace revox::kernels
