// revox/ops/copy.hpp — copy(dev, src, dst): dst = src on any device, ordered with the
// device's other work (on the GPU an asynchronous copy on dev's stream). src and dst hold the
// same number of elements and do not overlap. The op's shape is revox/ops/op.hpp:
// CopyKernels<Cpu> in ops/cpu/copy.hpp, CopyKernels<Cuda> in ops/cuda/copy.cuh (a .cu
// translation unit that includes this header gets it).
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct CopyKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::copy has no kernels for this device: a CUDA translation unit must include "
                "revox/ops/cuda/copy.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void copy(const Dev& dev, TensorView<std::add_const_t<T>> src, TensorView<T> dst) {
  REVOX_CHECK(src.numel() == dst.numel(), "ops::copy: source ", src.shape, " and destination ",
              dst.shape, " hold different numbers of elements");
  OpScope<Dev> scope("ops::copy", src.shape);
  if constexpr (runs_kernels_v<Dev>) CopyKernels<Dev>::template copy<T>(dev, src, dst);
}

}  // namespace revox::ops

#include "revox/ops/cpu/copy.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/copy.cuh"
#endif
