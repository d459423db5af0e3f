// revox/ops/max_pool3d.hpp — 2x2x2, stride-2 max pooling on any device (semantics, ties
// and NaN in ops/cpu/max_pool3d.hpp).
//   max_pool3d(dev, x, y, argmax)             x (N,C,D,H,W); y, argmax (N,C,D/2,H/2,W/2)
//                                             y ASSIGNED; argmax ASSIGNED unless empty
//   max_pool3d_backward(dev, dy, argmax, dx)  dx (N,C,D,H,W) ASSIGNED
// The op's shape is revox/ops/op.hpp: MaxPool3dKernels<Cpu> in ops/cpu/max_pool3d.hpp,
// MaxPool3dKernels<Cuda> in ops/cuda/max_pool3d.cuh (a .cu translation unit that includes
// this header gets it), whose bodies are ops/kernel_bodies/max_pool3d.hpp.
#pragma once

#include <cstdint>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct MaxPool3dKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::max_pool3d has no kernels for this device: a CUDA translation unit must "
                "include revox/ops/cuda/max_pool3d.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void max_pool3d(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                TensorView<std::uint8_t> argmax) {
  OpScope<Dev> scope("ops::max_pool3d", x.shape);
  if constexpr (runs_kernels_v<Dev>) MaxPool3dKernels<Dev>::max_pool3d(dev, x, y, argmax);
}

template <class Dev, class T>
void max_pool3d_backward(const Dev& dev, TensorView<const T> dy,
                         TensorView<const std::uint8_t> argmax, TensorView<T> dx) {
  OpScope<Dev> scope("ops::max_pool3d_backward", dy.shape);
  if constexpr (runs_kernels_v<Dev>) {
    MaxPool3dKernels<Dev>::max_pool3d_backward(dev, dy, argmax, dx);
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/max_pool3d.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/max_pool3d.cuh"
#endif
