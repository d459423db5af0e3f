// revox/ops/add.hpp — element-wise sums on any device, with the argument checks shared by
// every device:
//   add(dev, a, b, y)         y = a + b, ASSIGNED; y may be the very view a or b (in place)
//   add_inplace(dev, y, x)    y += x
//   sub_inplace(dev, y, x)    y -= x
// Shapes must match and views must not partially overlap (identical views are fine);
// either mistake throws revox::Error. CPU kernels: ops/cpu/add.hpp; CUDA: ops/cuda/add.cuh
// (declared here, defined there; a .cu translation unit includes it), whose bodies are
// ops/kernels/add.hpp. On the GPU every view is device memory.
#pragma once

#include <cstdint>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/add.hpp"

namespace revox {
namespace cuda {
// revox/ops/cuda/add.cuh
template <class T>
void add(const Cuda& dev, TensorView<const T> a, TensorView<const T> b, TensorView<T> y);
template <class T>
void add_inplace(const Cuda& dev, TensorView<T> y, TensorView<const T> x);
template <class T>
void sub_inplace(const Cuda& dev, TensorView<T> y, TensorView<const T> x);
}  // namespace cuda

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

template <class Dev, class T>
void add(const Dev& dev, TensorView<const T> a, TensorView<const T> b, TensorView<T> y) {
  revox::detail::check_elementwise_pair("ops::add", "a", a, "b", b);
  revox::detail::check_elementwise_pair("ops::add", "y", y, "a", a);
  revox::detail::check_elementwise_pair("ops::add", "y", y, "b", b);
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::add");
    (void)dev;
    cpu::add(a, b, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::add(dev, a, b, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::add", a.shape);
  } else {
    static_assert(revox::detail::always_false_v<Dev>, "ops::add: unknown device type");
  }
}

template <class Dev, class T>
void add_inplace(const Dev& dev, TensorView<T> y, TensorView<const T> x) {
  revox::detail::check_elementwise_pair("ops::add_inplace", "y", y, "x", x);
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::add_inplace");
    (void)dev;
    cpu::add_inplace(y, x);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::add_inplace(dev, y, x);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::add_inplace", y.shape);
  } else {
    static_assert(revox::detail::always_false_v<Dev>, "ops::add_inplace: unknown device type");
  }
}

template <class Dev, class T>
void sub_inplace(const Dev& dev, TensorView<T> y, TensorView<const T> x) {
  revox::detail::check_elementwise_pair("ops::sub_inplace", "y", y, "x", x);
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::sub_inplace");
    (void)dev;
    cpu::sub_inplace(y, x);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::sub_inplace(dev, y, x);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::sub_inplace", y.shape);
  } else {
    static_assert(revox::detail::always_false_v<Dev>, "ops::sub_inplace: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
