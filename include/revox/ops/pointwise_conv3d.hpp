// revox/ops/pointwise_conv3d.hpp — dispatchers for the pointwise (1x1x1) 3D convolution:
// one signature for every device. Shapes and semantics are in ops/cpu/pointwise_conv3d.hpp:
//   pointwise_conv3d_forward(dev, x, weight, bias_or_null, y)        y  ASSIGNED
//   pointwise_conv3d_backward_data(dev, dy, weight, dx)              dx ASSIGNED
//   pointwise_conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null)  ACCUMULATED
// Pointers are device memory; weight is (Cout, Cin) row-major (PyTorch's (Cout, Cin, 1, 1, 1)).
// The op's shape (revox/ops/op.hpp): PointwiseConv3dKernels<Cpu> in
// ops/cpu/pointwise_conv3d.hpp, PointwiseConv3dKernels<Cuda> in ops/cuda/pointwise_conv3d.cuh
// (cuBLAS; the launch sequence is ops/kernel_bodies/pointwise_conv3d.hpp).
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct PointwiseConv3dKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::pointwise_conv3d has no kernels for this device: a CUDA translation unit "
                "must include revox/ops/cuda/pointwise_conv3d.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void pointwise_conv3d_forward(const Dev& dev, TensorView<const T> x,
                              cpu::conv3d_detail::const_ptr<T> weight,
                              cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
  OpScope<Dev> scope("ops::pointwise_conv3d_forward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    PointwiseConv3dKernels<Dev>::pointwise_conv3d_forward(dev, x, weight, bias, y);
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_data(const Dev& dev, TensorView<const T> dy,
                                    cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx) {
  OpScope<Dev> scope("ops::pointwise_conv3d_backward_data", dy.shape);
  if constexpr (runs_kernels_v<Dev>) {
    PointwiseConv3dKernels<Dev>::pointwise_conv3d_backward_data(dev, dy, weight, dx);
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_weight(const Dev& dev, TensorView<const T> x,
                                      TensorView<const T> dy,
                                      cpu::conv3d_detail::mut_ptr<T> dweight,
                                      cpu::conv3d_detail::mut_ptr<T> dbias) {
  OpScope<Dev> scope("ops::pointwise_conv3d_backward_weight", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    PointwiseConv3dKernels<Dev>::pointwise_conv3d_backward_weight(dev, x, dy, dweight, dbias);
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/pointwise_conv3d.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/pointwise_conv3d.cuh"
#endif
