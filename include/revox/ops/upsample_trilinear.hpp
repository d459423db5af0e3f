// revox/ops/upsample_trilinear.hpp — trilinear x2 upsampling (align_corners=False) on any
// device (taps and semantics in ops/cpu/upsample_trilinear.hpp).
//   upsample_trilinear(dev, x, y)             x (N,C,D,H,W) -> y (N,C,2D,2H,2W), ASSIGNED
//   upsample_trilinear_backward(dev, dy, dx)  dy (N,C,2D,2H,2W) -> dx (N,C,D,H,W), ASSIGNED
// The op's shape is revox/ops/op.hpp: UpsampleTrilinearKernels<Cpu> in
// ops/cpu/upsample_trilinear.hpp, UpsampleTrilinearKernels<Cuda> in
// ops/cuda/upsample_trilinear.cuh (a .cu translation unit that includes this header gets it),
// whose bodies are ops/kernel_bodies/upsample_trilinear.hpp.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct UpsampleTrilinearKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::upsample_trilinear has no kernels for this device: a CUDA translation unit "
                "must include revox/ops/cuda/upsample_trilinear.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void upsample_trilinear(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  OpScope<Dev> scope("ops::upsample_trilinear", x.shape);
  if constexpr (runs_kernels_v<Dev>) UpsampleTrilinearKernels<Dev>::upsample_trilinear(dev, x, y);
}

template <class Dev, class T>
void upsample_trilinear_backward(const Dev& dev, TensorView<const T> dy, TensorView<T> dx) {
  OpScope<Dev> scope("ops::upsample_trilinear_backward", dy.shape);
  if constexpr (runs_kernels_v<Dev>) {
    UpsampleTrilinearKernels<Dev>::upsample_trilinear_backward(dev, dy, dx);
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/upsample_trilinear.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/upsample_trilinear.cuh"
#endif
