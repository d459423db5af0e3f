// revox/ops/cpu/add.hpp — AddKernels<Cpu>: element-wise sums on the CPU, beside plain
// references:
//   add(dev, a, b, y)         y = a + b   (y may be the same view as a or b: in place)
//   add_inplace(dev, y, x)    y += x      (the reversible coupling y1 = x1 + F(x2))
//   sub_inplace(dev, y, x)    y -= x      (its inverse x1 = y1 - F(x2))
// All views have the same shape. Views may be identical but must not partially overlap
// (ops/add.hpp checks both). Each element is one IEEE addition, so the fast path and the
// reference agree bit for bit.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/add.hpp"

namespace revox::cpu {

namespace detail {
// Below this many elements the OpenMP fork costs more than the loop.
inline constexpr index_t kAddParallelMin = index_t{1} << 16;
}  // namespace detail

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct AddKernels<Cpu> {
  template <class T>
  static void add(const Cpu& /*dev*/, TensorView<const T> a, TensorView<const T> b,
                  TensorView<T> y) {
    REVOX_ASSERT(a.shape == b.shape && a.shape == y.shape);
    const index_t count = y.numel();
    const T* lhs = a.data;
    const T* rhs = b.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kAddParallelMin)
    for (index_t i = 0; i < count; ++i) out[i] = lhs[i] + rhs[i];
  }

  template <class T>
  static void add_inplace(const Cpu& /*dev*/, TensorView<T> y, TensorView<const T> x) {
    REVOX_ASSERT(x.shape == y.shape);
    const index_t count = y.numel();
    const T* in = x.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kAddParallelMin)
    for (index_t i = 0; i < count; ++i) out[i] += in[i];
  }

  template <class T>
  static void sub_inplace(const Cpu& /*dev*/, TensorView<T> y, TensorView<const T> x) {
    REVOX_ASSERT(x.shape == y.shape);
    const index_t count = y.numel();
    const T* in = x.data;
    T* out = y.data;
#pragma omp parallel for simd schedule(static) if (count > cpu::detail::kAddParallelMin)
    for (index_t i = 0; i < count; ++i) out[i] -= in[i];
  }
};

}  // namespace revox::ops

namespace revox::cpu {

namespace reference {

template <class T>
void add(TensorView<const T> a, TensorView<const T> b, TensorView<T> y) {
  for (index_t i = 0; i < y.numel(); ++i) y[i] = a[i] + b[i];
}

template <class T>
void add_inplace(TensorView<T> y, TensorView<const T> x) {
  for (index_t i = 0; i < y.numel(); ++i) y[i] = y[i] + x[i];
}

template <class T>
void sub_inplace(TensorView<T> y, TensorView<const T> x) {
  for (index_t i = 0; i < y.numel(); ++i) y[i] = y[i] - x[i];
}

}  // namespace reference
}  // namespace revox::cpu
