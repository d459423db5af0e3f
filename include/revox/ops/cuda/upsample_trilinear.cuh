// revox/ops/cuda/upsample_trilinear.cuh — UpsampleTrilinearKernels<Cuda>: trilinear x2
// upsampling (align_corners=False) on the GPU: the bodies of
// ops/kernel_bodies/upsample_trilinear.hpp. Forward runs one thread per output element; backward one
// thread per input element, gathering the dy of the outputs that read it (at most 5 per axis)
// in a fixed order: no atomics, deterministic. Signatures and semantics as
// ops/upsample_trilinear.hpp; every view is device memory. Asynchronous on dev.stream. Include
// from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/upsample_trilinear.hpp"
#include "revox/ops/upsample_trilinear.hpp"

namespace revox::ops {

template <>
struct UpsampleTrilinearKernels<Cuda> {
  template <class T>
  static void upsample_trilinear(const Cuda& dev, TensorView<const T> x, TensorView<T> y) {
    REVOX_ASSERT(x.shape.valid());
    REVOX_ASSERT(y.shape == cpu::detail::upsample_trilinear_output_extent(x.shape));
    cuda::for_each(
        dev, y.numel(),
        ::revox::kernels::UpsampleTrilinearForward<T>{x.data, x.shape, y.data, y.shape});
  }

  template <class T>
  static void upsample_trilinear_backward(const Cuda& dev, TensorView<const T> dy,
                                          TensorView<T> dx) {
    REVOX_ASSERT(dx.shape.valid());
    REVOX_ASSERT(dy.shape == cpu::detail::upsample_trilinear_output_extent(dx.shape));
    cuda::for_each(
        dev, dx.numel(),
        ::revox::kernels::UpsampleTrilinearBackward<T>{dy.data, dy.shape, dx.data, dx.shape});
  }
};

}  // namespace revox::ops
