// revox/ops/cuda/max_pool3d.cuh — MaxPool3dKernels<Cuda>: 2x2x2, stride-2 max pooling on the
// GPU: the bodies of ops/kernel_bodies/max_pool3d.hpp. Forward runs one thread per output element;
// backward one thread per input element, gathering its window's dy through the saved argmax
// (no atomics, every dx element written, floored-away voxels included). Signatures and
// semantics as ops/max_pool3d.hpp; every view is device memory. Asynchronous on dev.stream.
// Include from a .cu translation unit.
#pragma once

#include <cstdint>

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/max_pool3d.hpp"
#include "revox/ops/max_pool3d.hpp"

namespace revox::ops {

template <>
struct MaxPool3dKernels<Cuda> {
  template <class T>
  static void max_pool3d(const Cuda& dev, TensorView<const T> x, TensorView<T> y,
                         TensorView<std::uint8_t> argmax) {
    REVOX_ASSERT(x.shape.d >= 2 && x.shape.h >= 2 && x.shape.w >= 2);
    REVOX_ASSERT(y.shape == cpu::detail::max_pool3d_output_extent(x.shape));
    if (!argmax.empty()) REVOX_ASSERT(argmax.shape == y.shape);
    cuda::for_each(dev, y.numel(),
                   ::revox::kernels::MaxPool3dForward<T>{x.data, x.shape, y.data, y.shape,
                                                         argmax.empty() ? nullptr : argmax.data});
  }

  template <class T>
  static void max_pool3d_backward(const Cuda& dev, TensorView<const T> dy,
                                  TensorView<const std::uint8_t> argmax, TensorView<T> dx) {
    REVOX_ASSERT(dy.shape == cpu::detail::max_pool3d_output_extent(dx.shape));
    REVOX_ASSERT(argmax.shape == dy.shape);
    cuda::for_each(dev, dx.numel(),
                   ::revox::kernels::MaxPool3dBackward<T>{dy.data, argmax.data, dy.shape,
                                                          dx.data, dx.shape});
  }
};

}  // namespace revox::ops
