// revox/ops/cpu/group_norm.hpp — GroupNormKernels<Cpu>: group normalisation with a
// per-channel affine transform (PyTorch's nn.GroupNorm, no running statistics) on the CPU:
// forward and backward, each with a plain reference in revox::cpu::reference beside the fast
// path.
//
//   x, y, dy, dx          : (N, C, D, H, W)
//   gamma, beta           : (C)                  dgamma, dbeta: (C)
//   mean, rstd            : (N, G), double, row-major (index n * G + g)
// Group g of sample n is channels [g*C/G, (g+1)*C/G): M = (C/G)*D*H*W elements, contiguous
// in NCDHW.
//   forward:   mean = (1/M) sum x;  var = (1/M) sum (x - mean)^2 (biased);
//              rstd = 1 / sqrt(var + eps);  y = (x - mean) * rstd * gamma[c] + beta[c].
//              ASSIGNS y, and mean and rstd unless they are nullptr.
//   backward:  xhat = (x - mean) * rstd,  g = gamma[c] * dy,  over each group
//              dx = rstd * (g - mean_group(g) - xhat * mean_group(g * xhat))     ASSIGNS dx
//              (skipped when dx is empty);
//              dgamma[c] += sum_{n,d,h,w} dy * xhat,  dbeta[c] += sum_{n,d,h,w} dy   ACCUMULATE.
//              mean and rstd are the ones forward produced for this x.
// Preconditions: C divisible by G (checked); y and dx have x's shape (checked).
//
// Precision: statistics are accumulated in double and kept in double, and x - mean is formed
// in double for every element, so float inputs with a large offset (values near 1000 with a
// spread of 0.01) keep full float precision in y and dx.
// Fast path: OpenMP over (n, c) planes. Each plane's sums go to its own slot and the slots of
// a group are added in channel order, so results do not depend on the number of threads.
// The statistics take one read of x: each plane sums v = x - shift and v^2 in double, with
// shift = the group's first element, and var = E[v^2] - E[v]^2. Shifting by a value of the
// group bounds the cancellation by E[v]^2 / var, the squared distance of that element from the
// mean in standard deviations; unshifted, E[x^2] - E[x]^2 loses everything to a large offset.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/group_norm.hpp"

namespace revox::cpu {
namespace detail {

// Below this many elements a call runs on the calling thread: starting a team costs more.
inline constexpr index_t kGroupNormParallelMin = index_t{1} << 15;

inline void check_group_norm_args(const char* op, const Shape5& x, index_t num_groups,
                                  const char* out_name, const Shape5& out) {
  REVOX_CHECK(num_groups > 0, op, ": num_groups must be positive, got ", num_groups);
  REVOX_CHECK(x.c % num_groups == 0, op, ": channels (", x.c, ") must be divisible by num_groups (",
              num_groups, ")");
  REVOX_CHECK(x == out, op, ": ", out_name, " shape ", out, " must equal x shape ", x);
}

}  // namespace detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct GroupNormKernels<Cpu> {
  template <class T>
  static void group_norm_forward(const Cpu& /*dev*/, TensorView<std::add_const_t<T>> x,
                                 index_t num_groups, double eps, std::add_const_t<T>* gamma,
                                 std::add_const_t<T>* beta, TensorView<T> y, double* mean,
                                 double* rstd) {
    cpu::detail::check_group_norm_args("group_norm_forward", x.shape, num_groups, "y", y.shape);
    REVOX_CHECK(gamma != nullptr && beta != nullptr,
                "group_norm_forward: gamma and beta must not be null");
    const Shape5 s = x.shape;
    if (s.empty()) return;
    const index_t N = s.n, C = s.c, G = num_groups, Cg = C / G, S = s.spatial();
    const double M = static_cast<double>(Cg * S);
    const bool parallel = s.numel() >= cpu::detail::kGroupNormParallelMin;

    // (N, C) slots for the two sums of each plane, then shift, mean and rstd per (n, g).
    Tensor<double> scratch(flat_shape(cpu::group_norm_forward_scratch_elements(s, G)));
    double* sum1 = scratch.data();
    double* sum2 = sum1 + N * C;
    double* shift = sum2 + N * C;
    double* group_mean = shift + N * G;
    double* group_rstd = group_mean + N * G;
    for (index_t ng = 0; ng < N * G; ++ng) {
      shift[ng] = static_cast<double>(x.channel(ng / G, (ng % G) * Cg)[0]);
    }

#pragma omp parallel for schedule(static) if (parallel)
    for (index_t p = 0; p < N * C; ++p) {
      const index_t n = p / C, g = (p % C) / Cg;
      const T* in = x.data + p * S;
      const double k = shift[n * G + g];
      double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
      for (index_t i = 0; i < S; ++i) {
        const double v = static_cast<double>(in[i]) - k;
        s1 += v;
        s2 += v * v;
      }
      sum1[p] = s1;
      sum2[p] = s2;
    }

    for (index_t n = 0; n < N; ++n) {
      for (index_t g = 0; g < G; ++g) {
        double s1 = 0.0, s2 = 0.0;
        for (index_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          s1 += sum1[n * C + c];
          s2 += sum2[n * C + c];
        }
        const double shifted_mean = s1 / M;
        const double var = std::max(0.0, s2 / M - shifted_mean * shifted_mean);
        group_mean[n * G + g] = shift[n * G + g] + shifted_mean;
        group_rstd[n * G + g] = 1.0 / std::sqrt(var + eps);
      }
    }

#pragma omp parallel for schedule(static) if (parallel)
    for (index_t p = 0; p < N * C; ++p) {
      const index_t n = p / C, c = p % C, ng = n * G + c / Cg;
      const T* in = x.data + p * S;
      T* out = y.data + p * S;
      const double mu = group_mean[ng];
      const double scale = group_rstd[ng] * static_cast<double>(gamma[c]);
      const double offset = static_cast<double>(beta[c]);
#pragma omp simd
      for (index_t i = 0; i < S; ++i) {
        out[i] = static_cast<T>((static_cast<double>(in[i]) - mu) * scale + offset);
      }
    }

    for (index_t ng = 0; ng < N * G; ++ng) {
      if (mean != nullptr) mean[ng] = group_mean[ng];
      if (rstd != nullptr) rstd[ng] = group_rstd[ng];
    }
  }

  template <class T>
  static void group_norm_backward(const Cpu& /*dev*/, TensorView<std::add_const_t<T>> x,
                                  TensorView<std::add_const_t<T>> dy, index_t num_groups,
                                  const double* mean, const double* rstd,
                                  std::add_const_t<T>* gamma, TensorView<T> dx,
                                  std::add_pointer_t<T> dgamma, std::add_pointer_t<T> dbeta) {
    cpu::detail::check_group_norm_args("group_norm_backward", x.shape, num_groups, "dy", dy.shape);
    if (!dx.empty()) {
      REVOX_CHECK(dx.shape == x.shape, "group_norm_backward: dx shape ", dx.shape,
                  " must equal x shape ", x.shape);
    }
    REVOX_CHECK(mean != nullptr && rstd != nullptr && gamma != nullptr && dgamma != nullptr &&
                    dbeta != nullptr,
                "group_norm_backward: mean, rstd, gamma, dgamma and dbeta must not be null");
    const Shape5 s = x.shape;
    if (s.empty()) return;
    const index_t N = s.n, C = s.c, G = num_groups, Cg = C / G, S = s.spatial();
    const double M = static_cast<double>(Cg * S);
    const bool parallel = s.numel() >= cpu::detail::kGroupNormParallelMin;

    // Per plane: a = sum dy, b = sum dy * (x - mean); then per (n, g) the coefficients of
    // dx = rstd * gamma[c] * dy + (x - mean) * coef_x + coef_1.
    Tensor<double> scratch(flat_shape(cpu::group_norm_backward_scratch_elements(s, G)));
    double* sum_dy = scratch.data();
    double* sum_dy_xc = sum_dy + N * C;
    double* coef_x = sum_dy_xc + N * C;
    double* coef_1 = coef_x + N * G;

#pragma omp parallel for schedule(static) if (parallel)
    for (index_t p = 0; p < N * C; ++p) {
      const index_t n = p / C, ng = n * G + (p % C) / Cg;
      const T* in = x.data + p * S;
      const T* g = dy.data + p * S;
      const double mu = mean[ng];
      double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
      for (index_t i = 0; i < S; ++i) {
        const double gi = static_cast<double>(g[i]);
        a += gi;
        b += gi * (static_cast<double>(in[i]) - mu);
      }
      sum_dy[p] = a;
      sum_dy_xc[p] = b;
    }

    for (index_t n = 0; n < N; ++n) {
      for (index_t grp = 0; grp < G; ++grp) {
        // sum_gamma_dy = M * mean_group(g);  sum_gamma_dy_xc * rstd = M * mean_group(g * xhat).
        double sum_gamma_dy = 0.0, sum_gamma_dy_xc = 0.0;
        for (index_t c = grp * Cg; c < (grp + 1) * Cg; ++c) {
          sum_gamma_dy += static_cast<double>(gamma[c]) * sum_dy[n * C + c];
          sum_gamma_dy_xc += static_cast<double>(gamma[c]) * sum_dy_xc[n * C + c];
        }
        const double r = rstd[n * G + grp];
        coef_x[n * G + grp] = -r * r * r * sum_gamma_dy_xc / M;
        coef_1[n * G + grp] = -r * sum_gamma_dy / M;
      }
    }
    for (index_t c = 0; c < C; ++c) {
      double dgamma_sum = 0.0, dbeta_sum = 0.0;
      for (index_t n = 0; n < N; ++n) {
        dgamma_sum += sum_dy_xc[n * C + c] * rstd[n * G + c / Cg];
        dbeta_sum += sum_dy[n * C + c];
      }
      dgamma[c] = static_cast<T>(static_cast<double>(dgamma[c]) + dgamma_sum);
      dbeta[c] = static_cast<T>(static_cast<double>(dbeta[c]) + dbeta_sum);
    }
    if (dx.empty()) return;

#pragma omp parallel for schedule(static) if (parallel)
    for (index_t p = 0; p < N * C; ++p) {
      const index_t n = p / C, c = p % C, ng = n * G + c / Cg;
      const T* in = x.data + p * S;
      const T* g = dy.data + p * S;
      T* out = dx.data + p * S;
      const double mu = mean[ng];
      const double k_dy = rstd[ng] * static_cast<double>(gamma[c]);
      const double k_x = coef_x[ng];
      const double k_1 = coef_1[ng];
#pragma omp simd
      for (index_t i = 0; i < S; ++i) {
        out[i] = static_cast<T>(k_dy * static_cast<double>(g[i]) +
                                (static_cast<double>(in[i]) - mu) * k_x + k_1);
      }
    }
  }
};

}  // namespace revox::ops

namespace revox::cpu {

// Plain loops straight from the definitions above (two-pass statistics in double); what
// tests compare the fast path against.
namespace reference {

template <class T>
void group_norm_forward(TensorView<std::add_const_t<T>> x, index_t num_groups, double eps,
                        std::add_const_t<T>* gamma, std::add_const_t<T>* beta, TensorView<T> y,
                        double* mean, double* rstd) {
  revox::cpu::detail::check_group_norm_args("reference::group_norm_forward", x.shape, num_groups,
                                            "y", y.shape);
  const Shape5 s = x.shape;
  const index_t Cg = s.c / num_groups;
  const index_t count = Cg * s.spatial();
  for (index_t n = 0; n < s.n; ++n) {
    for (index_t g = 0; g < num_groups; ++g) {
      const T* in = x.channel(n, g * Cg);
      T* out = y.channel(n, g * Cg);
      double sum = 0.0;
      for (index_t i = 0; i < count; ++i) sum += static_cast<double>(in[i]);
      const double mu = sum / static_cast<double>(count);
      double sq = 0.0;
      for (index_t i = 0; i < count; ++i) {
        const double v = static_cast<double>(in[i]) - mu;
        sq += v * v;
      }
      const double r = 1.0 / std::sqrt(sq / static_cast<double>(count) + eps);
      for (index_t i = 0; i < count; ++i) {
        const index_t c = g * Cg + i / s.spatial();
        out[i] = static_cast<T>((static_cast<double>(in[i]) - mu) * r *
                                    static_cast<double>(gamma[c]) +
                                static_cast<double>(beta[c]));
      }
      if (mean != nullptr) mean[n * num_groups + g] = mu;
      if (rstd != nullptr) rstd[n * num_groups + g] = r;
    }
  }
}

template <class T>
void group_norm_backward(TensorView<std::add_const_t<T>> x, TensorView<std::add_const_t<T>> dy,
                         index_t num_groups, const double* mean, const double* rstd,
                         std::add_const_t<T>* gamma, TensorView<T> dx, std::add_pointer_t<T> dgamma,
                         std::add_pointer_t<T> dbeta) {
  revox::cpu::detail::check_group_norm_args("reference::group_norm_backward", x.shape,
                                            num_groups, "dy", dy.shape);
  const Shape5 s = x.shape;
  const index_t Cg = s.c / num_groups;
  const index_t count = Cg * s.spatial();
  for (index_t c = 0; c < s.c; ++c) {
    double dgamma_sum = 0.0, dbeta_sum = 0.0;
    for (index_t n = 0; n < s.n; ++n) {
      const index_t ng = n * num_groups + c / Cg;
      for (index_t i = 0; i < s.spatial(); ++i) {
        const double g = static_cast<double>(dy.channel(n, c)[i]);
        dgamma_sum += g * (static_cast<double>(x.channel(n, c)[i]) - mean[ng]) * rstd[ng];
        dbeta_sum += g;
      }
    }
    dgamma[c] = static_cast<T>(static_cast<double>(dgamma[c]) + dgamma_sum);
    dbeta[c] = static_cast<T>(static_cast<double>(dbeta[c]) + dbeta_sum);
  }
  if (dx.empty()) return;
  for (index_t n = 0; n < s.n; ++n) {
    for (index_t grp = 0; grp < num_groups; ++grp) {
      const index_t ng = n * num_groups + grp;
      const T* in = x.channel(n, grp * Cg);
      const T* g_out = dy.channel(n, grp * Cg);
      T* out = dx.channel(n, grp * Cg);
      auto gamma_at = [&](index_t i) {
        return static_cast<double>(gamma[grp * Cg + i / s.spatial()]);
      };
      auto xhat_at = [&](index_t i) { return (static_cast<double>(in[i]) - mean[ng]) * rstd[ng]; };
      double mean_g = 0.0, mean_g_xhat = 0.0;
      for (index_t i = 0; i < count; ++i) {
        const double gi = gamma_at(i) * static_cast<double>(g_out[i]);
        mean_g += gi;
        mean_g_xhat += gi * xhat_at(i);
      }
      mean_g /= static_cast<double>(count);
      mean_g_xhat /= static_cast<double>(count);
      for (index_t i = 0; i < count; ++i) {
        const double gi = gamma_at(i) * static_cast<double>(g_out[i]);
        out[i] = static_cast<T>(rstd[ng] * (gi - mean_g - xhat_at(i) * mean_g_xhat));
      }
    }
  }
}

}  // namespace reference
}  // namespace revox::cpu
