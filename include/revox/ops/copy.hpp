// revox/ops/copy.hpp — copy(dev, src, dst): dst = src on any device, ordered with the
// device's other work (on the GPU an asynchronous copy on dev's stream). src and dst hold the
// same number of elements and do not overlap. CPU: ops/cpu/copy.hpp; CUDA: declared here,
// defined in ops/cuda/copy.cuh.
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/copy.hpp"

namespace revox {
namespace cuda {
template <class T>
void copy(const Cuda& dev, TensorView<std::add_const_t<T>> src, TensorView<T> dst);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void copy(const Dev& dev, TensorView<std::add_const_t<T>> src, TensorView<T> dst) {
  REVOX_CHECK(src.numel() == dst.numel(), "ops::copy: source ", src.shape, " and destination ",
              dst.shape, " hold different numbers of elements");
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::copy");
    (void)dev;
    cpu::copy<T>(src, dst);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::copy<T>(dev, src, dst);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::copy", src.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::copy: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
