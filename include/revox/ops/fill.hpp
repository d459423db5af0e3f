// revox/ops/fill.hpp — fill(dev, out, value): every element of `out` set to `value`, on
// any device. This is the dispatcher pattern every op follows: one signature for all
// devices, `if constexpr` on the device type, the CPU kernel in ops/cpu/, the CUDA kernel
// in ops/cuda/ (declared here, defined in the .cuh that CUDA translation units include), and a
// Plan branch (revox/core/plan.hpp) that does no arithmetic, names the op for the planner and
// allocates (and frees) exactly the tracked scratch the CPU kernel allocates.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/fill.hpp"

namespace revox {
namespace cuda {
template <class T>
void fill(const Cuda& dev, TensorView<T> out, T value);  // revox/ops/cuda/fill.cuh
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void fill(const Dev& dev, TensorView<T> out, T value) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::fill");
    (void)dev;
    cpu::fill(out, value);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::fill(dev, out, value);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::fill", out.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::fill: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
