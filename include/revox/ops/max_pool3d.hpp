// revox/ops/max_pool3d.hpp — 2x2x2, stride-2 max pooling on any device (semantics, ties
// and NaN in ops/cpu/max_pool3d.hpp).
//   max_pool3d(dev, x, y, argmax)             x (N,C,D,H,W); y, argmax (N,C,D/2,H/2,W/2)
//                                             y ASSIGNED; argmax ASSIGNED unless empty
//   max_pool3d_backward(dev, dy, argmax, dx)  dx (N,C,D,H,W) ASSIGNED
// CPU kernels: ops/cpu/max_pool3d.hpp; CUDA: ops/cuda/max_pool3d.cuh (declared here, defined
// there; a .cu translation unit includes it), whose bodies are ops/kernels/max_pool3d.hpp.
#pragma once

#include <cstdint>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/max_pool3d.hpp"

namespace revox {
namespace cuda {
// revox/ops/cuda/max_pool3d.cuh
template <class T>
void max_pool3d(const Cuda& dev, TensorView<const T> x, TensorView<T> y,
                TensorView<std::uint8_t> argmax);
template <class T>
void max_pool3d_backward(const Cuda& dev, TensorView<const T> dy,
                         TensorView<const std::uint8_t> argmax, TensorView<T> dx);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void max_pool3d(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                TensorView<std::uint8_t> argmax) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::max_pool3d");
    (void)dev;
    cpu::max_pool3d(x, y, argmax);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::max_pool3d(dev, x, y, argmax);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::max_pool3d", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::max_pool3d: unknown device type");
  }
}

template <class Dev, class T>
void max_pool3d_backward(const Dev& dev, TensorView<const T> dy,
                         TensorView<const std::uint8_t> argmax, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::max_pool3d_backward");
    (void)dev;
    cpu::max_pool3d_backward(dy, argmax, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::max_pool3d_backward(dev, dy, argmax, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::max_pool3d_backward", dy.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::max_pool3d_backward: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
