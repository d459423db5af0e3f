// revox/ops/add.hpp — element-wise sums on any device, with the argument checks shared by
// every device:
//   add(dev, a, b, y)         y = a + b, ASSIGNED; y may be the very view a or b (in place)
//   add_inplace(dev, y, x)    y += x
//   sub_inplace(dev, y, x)    y -= x
// Shapes must match and views must not partially overlap (identical views are fine);
// either mistake throws revox::Error. The op's shape is revox/ops/op.hpp: AddKernels<Cpu> in
// ops/cpu/add.hpp, AddKernels<Cuda> in ops/cuda/add.cuh (a .cu translation unit that includes
// this header gets it), whose bodies are ops/kernel_bodies/add.hpp. On the GPU every view is device
// memory.
#pragma once

#include <cstdint>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox {
namespace detail {

// True when the element ranges of p and q share memory without being the same range.
template <class T, class U>
bool views_partially_overlap(TensorView<T> p, TensorView<U> q) {
  if (p.empty() || q.empty()) return false;
  const auto p_begin = reinterpret_cast<std::uintptr_t>(p.data);
  const auto q_begin = reinterpret_cast<std::uintptr_t>(q.data);
  const auto p_end = p_begin + static_cast<std::uintptr_t>(p.numel()) * sizeof(T);
  const auto q_end = q_begin + static_cast<std::uintptr_t>(q.numel()) * sizeof(U);
  const bool disjoint = p_end <= q_begin || q_end <= p_begin;
  const bool identical = p_begin == q_begin && p_end == q_end;
  return !disjoint && !identical;
}

template <class T, class U>
void check_elementwise_pair(const char* op, const char* p_name, TensorView<T> p,
                            const char* q_name, TensorView<U> q) {
  REVOX_CHECK(p.shape == q.shape, op, ": shapes of ", p_name, " ", p.shape, " and ", q_name, " ",
              q.shape, " differ");
  REVOX_CHECK(!views_partially_overlap(p, q), op, ": ", p_name, " and ", q_name,
              " partially overlap; in-place use must pass the very same view");
}

}  // namespace detail

namespace ops {

template <class Dev>
struct AddKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::add has no kernels for this device: a CUDA translation unit must include "
                "revox/ops/cuda/add.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void add(const Dev& dev, TensorView<const T> a, TensorView<const T> b, TensorView<T> y) {
  revox::detail::check_elementwise_pair("ops::add", "a", a, "b", b);
  revox::detail::check_elementwise_pair("ops::add", "y", y, "a", a);
  revox::detail::check_elementwise_pair("ops::add", "y", y, "b", b);
  OpScope<Dev> scope("ops::add", a.shape);
  if constexpr (runs_kernels_v<Dev>) AddKernels<Dev>::add(dev, a, b, y);
}

template <class Dev, class T>
void add_inplace(const Dev& dev, TensorView<T> y, TensorView<const T> x) {
  revox::detail::check_elementwise_pair("ops::add_inplace", "y", y, "x", x);
  OpScope<Dev> scope("ops::add_inplace", y.shape);
  if constexpr (runs_kernels_v<Dev>) AddKernels<Dev>::add_inplace(dev, y, x);
}

template <class Dev, class T>
void sub_inplace(const Dev& dev, TensorView<T> y, TensorView<const T> x) {
  revox::detail::check_elementwise_pair("ops::sub_inplace", "y", y, "x", x);
  OpScope<Dev> scope("ops::sub_inplace", y.shape);
  if constexpr (runs_kernels_v<Dev>) AddKernels<Dev>::sub_inplace(dev, y, x);
}

}  // namespace ops
}  // namespace revox

#include "revox/ops/cpu/add.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/add.cuh"
#endif
