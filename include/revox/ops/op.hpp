// revox/ops/op.hpp — what every op's dispatcher shares, and the shape each op follows.
//
// An op lives in three places with the same name, and its kernels have ONE signature on
// every device, the device first:
//
//   ops/<op>.hpp        the dispatcher ops::<op>(dev, ...), the op's documentation, and
//                       the primary template `template <class Dev> struct <Op>Kernels`,
//                       whose body is a static_assert naming the header a device must
//                       include (a .cu file that forgets an op's .cuh fails to compile
//                       with that sentence, not at link time)
//   ops/cpu/<op>.hpp    `template <> struct <Op>Kernels<Cpu>`: the CPU fast path (SIMD +
//                       OpenMP), plus namespace revox::cpu::reference (plain loops, the
//                       oracle every kernel is tested against)
//   ops/cuda/<op>.cuh   `template <> struct <Op>Kernels<Cuda>`: the launchers; the kernel
//                       bodies are plain C++ functors in ops/kernel_bodies/<op>.hpp that
//                       the tests also run on the CPU
//
// A dispatcher opens an OpScope (CPU: the op profiler's timer; Plan: names the op for the
// memory planner) and calls <Op>Kernels<Dev> unless Dev is the Plan device, which runs no
// arithmetic (an op whose CPU kernel allocates tracked scratch tells the planner with
// detail::plan_scratch in its dispatcher's Plan branch). ops/fill.hpp is the smallest
// example; docs/architecture.md, "Adding an op", walks through a whole one.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/shape.hpp"

namespace revox::ops {

// Whether the dispatcher calls the device's kernels (every device but Plan).
template <class Dev>
inline constexpr bool runs_kernels_v = !is_plan_v<Dev>;

// Opened by every dispatcher around its kernel call; `name` is the op's name in the
// profiler and the planner ("ops::fill").
template <class Dev>
class OpScope {
 public:
  OpScope(const char* /*name*/, const Shape5& /*shape*/) {}
};

template <>
class OpScope<Cpu> {
 public:
  OpScope(const char* name, const Shape5& /*shape*/) : timer_(name) {}

 private:
  ::revox::detail::OpTimer timer_;
};

template <>
class OpScope<Plan> {
 public:
  OpScope(const char* name, const Shape5& shape) { ::revox::detail::plan_op(name, shape); }
};

}  // namespace revox::ops
