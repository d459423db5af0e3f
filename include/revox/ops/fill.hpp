// revox/ops/fill.hpp — fill(dev, out, value): every element of `out` set to `value`, on
// any device. The smallest example of the shape every op follows (revox/ops/op.hpp): the
// dispatcher and the primary template here, FillKernels<Cpu> in ops/cpu/fill.hpp,
// FillKernels<Cuda> in ops/cuda/fill.cuh.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct FillKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::fill has no kernels for this device: a CUDA translation unit must "
                "include revox/ops/cuda/fill.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void fill(const Dev& dev, TensorView<T> out, T value) {
  OpScope<Dev> scope("ops::fill", out.shape);
  if constexpr (runs_kernels_v<Dev>) FillKernels<Dev>::fill(dev, out, value);
}

}  // namespace revox::ops

#include "revox/ops/cpu/fill.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/fill.cuh"
#endif
