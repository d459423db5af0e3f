// revox/ops/cpu/instance_norm.hpp — InstanceNormKernels<Cpu>: instance normalisation forward
// and backward on the CPU, and the plain loops of revox::cpu::reference they are tested
// against. Formulas, shapes, what is assigned or accumulated, and the argument checks (done
// once, by the dispatcher): revox/ops/instance_norm.hpp.
//
// Fast path: OpenMP over the N*C planes, each plane contiguous in NCDHW, the inner loops over
// it vectorisable (omp simd). Forward allocates nothing: per plane one read of x for the
// statistics (v = x - shift and v^2 summed in double, shift = the plane's first element,
// var = E[v^2] - E[v]^2 clamped at 0: shifting by a value of the plane bounds the
// cancellation as in GroupNorm, ops/cpu/group_norm.hpp), then one read of x and one write of
// y. Backward per plane: one read of x and dy for sum dy and sum dy * (x - mean), then dx;
// the per-plane sums go to fixed slots of a tracked scratch tensor (only when dweight or
// dbias is requested; ops::instance_norm_backward_scratch_elements) and are added over n in
// order, so results do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cmath>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/instance_norm.hpp"

namespace revox::ops {

template <>
struct InstanceNormKernels<Cpu> {
  // Below this many elements a call runs on the calling thread: starting a team costs more.
  static constexpr index_t kParallelMin = index_t{1} << 15;

  template <class T>
  static void forward(const Cpu& /*dev*/, TensorView<const T> x, const T* weight, const T* bias,
                      double eps, TensorView<T> y, double* mean, double* rstd) {
    const Shape5 s = x.shape;
    if (s.empty()) return;
    const index_t C = s.c, S = s.spatial(), planes = s.n * s.c;
    const double count = static_cast<double>(S);
#pragma omp parallel for schedule(static) if (s.numel() >= kParallelMin)
    for (index_t p = 0; p < planes; ++p) {
      const index_t c = p % C;
      const T* in = x.data + p * S;
      T* out = y.data + p * S;
      const double shift = static_cast<double>(in[0]);
      double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
      for (index_t i = 0; i < S; ++i) {
        const double v = static_cast<double>(in[i]) - shift;
        s1 += v;
        s2 += v * v;
      }
      const double shifted_mean = s1 / count;
      const double var = std::max(0.0, s2 / count - shifted_mean * shifted_mean);
      const double mu = shift + shifted_mean;
      const double r = 1.0 / std::sqrt(var + eps);
      const double scale = weight != nullptr ? r * static_cast<double>(weight[c]) : r;
      const double offset = bias != nullptr ? static_cast<double>(bias[c]) : 0.0;
#pragma omp simd
      for (index_t i = 0; i < S; ++i) {
        out[i] = static_cast<T>((static_cast<double>(in[i]) - mu) * scale + offset);
      }
      if (mean != nullptr) mean[p] = mu;
      if (rstd != nullptr) rstd[p] = r;
    }
  }

  template <class T>
  static void backward(const Cpu& /*dev*/, TensorView<const T> x, TensorView<const T> dy,
                       const T* weight, const double* mean, const double* rstd, TensorView<T> dx,
                       T* dweight, T* dbias) {
    const Shape5 s = x.shape;
    const bool param_grads = dweight != nullptr || dbias != nullptr;
    if (s.empty() || (dx.empty() && !param_grads)) return;
    const index_t C = s.c, S = s.spatial(), planes = s.n * s.c;
    const double count = static_cast<double>(S);
    // Per plane p: sum_dy[p] = sum dy, sum_dy_xc[p] = sum dy * (x - mean).
    Tensor<double> scratch;
    if (param_grads) {
      scratch = Tensor<double>(flat_shape(instance_norm_backward_scratch_elements(s, true)));
    }
    double* sum_dy = scratch.data();
    double* sum_dy_xc = param_grads ? sum_dy + planes : nullptr;
    T* const dx_data = dx.empty() ? nullptr : dx.data;

#pragma omp parallel for schedule(static) if (s.numel() >= kParallelMin)
    for (index_t p = 0; p < planes; ++p) {
      const T* in = x.data + p * S;
      const T* g = dy.data + p * S;
      const double mu = mean[p];
      double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
      for (index_t i = 0; i < S; ++i) {
        const double gi = static_cast<double>(g[i]);
        a += gi;
        b += gi * (static_cast<double>(in[i]) - mu);
      }
      if (param_grads) {
        sum_dy[p] = a;
        sum_dy_xc[p] = b;
      }
      if (dx_data == nullptr) continue;
      // dx = rstd * w * dy + (x - mean) * k_x + k_1.
      const double r = rstd[p];
      const double w = weight != nullptr ? static_cast<double>(weight[p % C]) : 1.0;
      const double k_dy = r * w;
      const double k_x = -r * r * r * w * b / count;
      const double k_1 = -r * w * a / count;
      T* out = dx_data + p * S;
#pragma omp simd
      for (index_t i = 0; i < S; ++i) {
        out[i] = static_cast<T>(k_dy * static_cast<double>(g[i]) +
                                (static_cast<double>(in[i]) - mu) * k_x + k_1);
      }
    }

    if (!param_grads) return;
    for (index_t c = 0; c < C; ++c) {
      double dweight_sum = 0.0, dbias_sum = 0.0;
      for (index_t n = 0; n < s.n; ++n) {
        dweight_sum += sum_dy_xc[n * C + c] * rstd[n * C + c];
        dbias_sum += sum_dy[n * C + c];
      }
      if (dweight != nullptr) {
        dweight[c] = static_cast<T>(static_cast<double>(dweight[c]) + dweight_sum);
      }
      if (dbias != nullptr) dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + dbias_sum);
    }
  }
};

}  // namespace revox::ops

// Plain loops straight from the definitions (two-pass statistics in double); what the tests
// compare every kernel against. Same arguments and semantics as the dispatchers, without the
// device; they check their arguments as the dispatchers do.
namespace revox::cpu::reference {

template <class T>
void instance_norm_forward(TensorView<const T> x, const T* weight, const T* bias, double eps,
                           TensorView<T> y, double* mean, double* rstd) {
  ::revox::detail::check_instance_norm_forward("reference::instance_norm_forward", x.shape,
                                               eps, y.shape);
  const Shape5 s = x.shape;
  const index_t S = s.spatial();
  for (index_t n = 0; n < s.n; ++n) {
    for (index_t c = 0; c < s.c; ++c) {
      const T* in = x.channel(n, c);
      T* out = y.channel(n, c);
      double sum = 0.0;
      for (index_t i = 0; i < S; ++i) sum += static_cast<double>(in[i]);
      const double mu = sum / static_cast<double>(S);
      double sq = 0.0;
      for (index_t i = 0; i < S; ++i) {
        const double v = static_cast<double>(in[i]) - mu;
        sq += v * v;
      }
      const double r = 1.0 / std::sqrt(sq / static_cast<double>(S) + eps);
      const double w = weight != nullptr ? static_cast<double>(weight[c]) : 1.0;
      const double b = bias != nullptr ? static_cast<double>(bias[c]) : 0.0;
      for (index_t i = 0; i < S; ++i) {
        out[i] = static_cast<T>((static_cast<double>(in[i]) - mu) * r * w + b);
      }
      if (mean != nullptr) mean[n * s.c + c] = mu;
      if (rstd != nullptr) rstd[n * s.c + c] = r;
    }
  }
}

template <class T>
void instance_norm_backward(TensorView<const T> x, TensorView<const T> dy, const T* weight,
                            const double* mean, const double* rstd, TensorView<T> dx, T* dweight,
                            T* dbias) {
  ::revox::detail::check_instance_norm_backward("reference::instance_norm_backward", x.shape,
                                                dy.shape, mean, rstd, dx.shape, dx.empty());
  const Shape5 s = x.shape;
  const index_t S = s.spatial();
  for (index_t c = 0; c < s.c; ++c) {
    double dweight_sum = 0.0, dbias_sum = 0.0;
    for (index_t n = 0; n < s.n; ++n) {
      const index_t p = n * s.c + c;
      for (index_t i = 0; i < S; ++i) {
        const double g = static_cast<double>(dy.channel(n, c)[i]);
        dweight_sum += g * (static_cast<double>(x.channel(n, c)[i]) - mean[p]) * rstd[p];
        dbias_sum += g;
      }
    }
    if (dweight != nullptr) dweight[c] = static_cast<T>(static_cast<double>(dweight[c]) + dweight_sum);
    if (dbias != nullptr) dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + dbias_sum);
  }
  if (dx.empty()) return;
  for (index_t n = 0; n < s.n; ++n) {
    for (index_t c = 0; c < s.c; ++c) {
      const index_t p = n * s.c + c;
      const T* in = x.channel(n, c);
      const T* g_out = dy.channel(n, c);
      T* out = dx.channel(n, c);
      const double w = weight != nullptr ? static_cast<double>(weight[c]) : 1.0;
      auto xhat_at = [&](index_t i) { return (static_cast<double>(in[i]) - mean[p]) * rstd[p]; };
      double mean_g = 0.0, mean_g_xhat = 0.0;
      for (index_t i = 0; i < S; ++i) {
        const double gi = w * static_cast<double>(g_out[i]);
        mean_g += gi;
        mean_g_xhat += gi * xhat_at(i);
      }
      mean_g /= static_cast<double>(S);
      mean_g_xhat /= static_cast<double>(S);
      for (index_t i = 0; i < S; ++i) {
        const double gi = w * static_cast<double>(g_out[i]);
        out[i] = static_cast<T>(rstd[p] * (gi - mean_g - xhat_at(i) * mean_g_xhat));
      }
    }
  }
}

}  // namespace revox::cpu::reference
