// revox/ops/cpu/activations.hpp — ActivationKernels<Cpu>: element-wise ReLU, ReLU6 and
// LeakyReLU on the CPU, forward and backward, each beside a plain reference.
//
// Forward (y may alias x exactly; x and y have the same shape, every y ASSIGNED):
//   relu(x)          = x < 0 ? 0 : x              (NaN stays NaN, like torch.clamp_min)
//   relu6(x)         = x < 0 ? 0 : x > 6 ? 6 : x  (NaN stays NaN, like torch.clamp)
//   leaky_relu(x, s) = x > 0 ? x : s * x          (NaN stays NaN)
// Backward (dx ASSIGNED, computed from the forward INPUT x), exactly PyTorch's kernels
// (threshold_backward, hardtanh_backward, leaky_relu_backward), so the kinks get:
//   relu:       dx = x <= 0 ? 0 : dy              (x == 0 -> 0)
//   relu6:      dx = x <= 0 || x >= 6 ? 0 : dy    (x == 0 and x == 6 -> 0)
//   leaky_relu: dx = x > 0 ? dy : s * dy          (x == 0 -> s * dy)
// A NaN x fails every comparison, so relu and relu6 pass dy through and leaky_relu
// scales it by s, as PyTorch does.
#pragma once

#include <algorithm>
#include <cmath>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/activations.hpp"

namespace revox::cpu {

namespace detail {
// Below this many elements the OpenMP fork costs more than the loop.
inline constexpr index_t kActivationParallelMin = index_t{1} << 16;
}  // namespace detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct ActivationKernels<Cpu> {
  template <class T>
  static void relu(const Cpu& /*dev*/, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape == y.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) {
      const T v = in[i];
      out[i] = v < T(0) ? T(0) : v;
    }
  }

  template <class T>
  static void relu_backward(const Cpu& /*dev*/, TensorView<const T> x, TensorView<const T> dy,
                            TensorView<T> dx) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    const T* grad_out = dy.data;
    T* grad_in = dx.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) grad_in[i] = in[i] <= T(0) ? T(0) : grad_out[i];
  }

  template <class T>
  static void relu6(const Cpu& /*dev*/, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape == y.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) {
      const T v = in[i];
      out[i] = v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
    }
  }

  template <class T>
  static void relu6_backward(const Cpu& /*dev*/, TensorView<const T> x, TensorView<const T> dy,
                             TensorView<T> dx) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    const T* grad_out = dy.data;
    T* grad_in = dx.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) {
      const T v = in[i];
      grad_in[i] = (v <= T(0) || v >= T(6)) ? T(0) : grad_out[i];
    }
  }

  template <class T>
  static void leaky_relu(const Cpu& /*dev*/, TensorView<const T> x, TensorView<T> y,
                         T negative_slope) {
    REVOX_ASSERT(x.shape == y.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) {
      const T v = in[i];
      out[i] = v > T(0) ? v : v * negative_slope;
    }
  }

  template <class T>
  static void leaky_relu_backward(const Cpu& /*dev*/, TensorView<const T> x,
                                  TensorView<const T> dy, TensorView<T> dx, T negative_slope) {
    REVOX_ASSERT(x.shape == dy.shape);
    REVOX_ASSERT(x.shape == dx.shape);
    const index_t count = x.numel();
    const T* in = x.data;
    const T* grad_out = dy.data;
    T* grad_in = dx.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kActivationParallelMin)
    for (index_t i = 0; i < count; ++i) {
      const T g = grad_out[i];
      grad_in[i] = in[i] > T(0) ? g : g * negative_slope;
    }
  }
};

}  // namespace revox::ops

namespace revox::cpu {

// Plain loops, written from the definitions rather than from the fast path's formulas.
namespace reference {

template <class T>
void relu(TensorView<const T> x, TensorView<T> y) {
  for (index_t i = 0; i < x.numel(); ++i) {
    const T v = x[i];
    y[i] = std::isnan(v) ? v : std::max(v, T(0));
  }
}

template <class T>
void relu_backward(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx) {
  for (index_t i = 0; i < x.numel(); ++i) {
    const bool blocked = !std::isnan(x[i]) && !(x[i] > T(0));
    dx[i] = blocked ? T(0) : dy[i];
  }
}

template <class T>
void relu6(TensorView<const T> x, TensorView<T> y) {
  for (index_t i = 0; i < x.numel(); ++i) {
    const T v = x[i];
    y[i] = std::isnan(v) ? v : std::min(std::max(v, T(0)), T(6));
  }
}

template <class T>
void relu6_backward(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx) {
  for (index_t i = 0; i < x.numel(); ++i) {
    const T v = x[i];
    const bool inside = std::isnan(v) || (v > T(0) && v < T(6));
    dx[i] = inside ? dy[i] : T(0);
  }
}

template <class T>
void leaky_relu(TensorView<const T> x, TensorView<T> y, T negative_slope) {
  for (index_t i = 0; i < x.numel(); ++i) {
    const T v = x[i];
    y[i] = v > T(0) ? v : negative_slope * v;
  }
}

template <class T>
void leaky_relu_backward(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx,
                         T negative_slope) {
  for (index_t i = 0; i < x.numel(); ++i) {
    dx[i] = x[i] > T(0) ? dy[i] : negative_slope * dy[i];
  }
}

}  // namespace reference
}  // namespace revox::cpu
