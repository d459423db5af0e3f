// revox/ops/depthwise_conv3d.hpp — the device dispatchers of the depthwise 3x3x3
// convolution (groups = channels, stride 1, zero padding 1). Shapes, what each op assigns or
// accumulates, and the preconditions are in revox/ops/cpu/depthwise_conv3d.hpp:
//   depthwise_conv3d_forward(dev, x, weight, bias_or_null, y)              y ASSIGNED
//   depthwise_conv3d_backward_data(dev, dy, weight, dx)                    dx ASSIGNED
//   depthwise_conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null)   ACCUMULATED
//   depthwise_conv3d_backward(dev, x, dy, weight, dx, dweight, dbias_or_null)
//                     both: dx ASSIGNED, dweight and dbias ACCUMULATED, with exactly the
//                     results of the two calls above. On the CPU one pass over x and dy
//                     (12 bytes per element instead of 16); on the GPU, for now, the two
//                     kernels one after the other.
// Only the output argument deduces T: inputs may be mutable views, bias and dbias a nullptr.
// The op's shape (revox/ops/op.hpp): DepthwiseConv3dKernels<Cpu> in
// ops/cpu/depthwise_conv3d.hpp, DepthwiseConv3dKernels<Cuda> in ops/cuda/depthwise_conv3d.cuh
// (kernel bodies of ops/kernel_bodies/depthwise_conv3d.hpp; pointers are then device memory).
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct DepthwiseConv3dKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::depthwise_conv3d has no kernels for this device: a CUDA translation unit "
                "must include revox/ops/cuda/depthwise_conv3d.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void depthwise_conv3d_forward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                              std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                              TensorView<T> y) {
  OpScope<Dev> scope("ops::depthwise_conv3d_forward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    DepthwiseConv3dKernels<Dev>::template depthwise_conv3d_forward<T>(dev, x, weight, bias, y);
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_data(const Dev& dev, TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  OpScope<Dev> scope("ops::depthwise_conv3d_backward_data", dy.shape);
  if constexpr (runs_kernels_v<Dev>) {
    DepthwiseConv3dKernels<Dev>::template depthwise_conv3d_backward_data<T>(dev, dy, weight, dx);
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_weight(const Dev& dev, TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  OpScope<Dev> scope("ops::depthwise_conv3d_backward_weight", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    DepthwiseConv3dKernels<Dev>::template depthwise_conv3d_backward_weight<T>(dev, x, dy,
                                                                              dweight, dbias);
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                               TensorView<std::add_const_t<T>> dy, std::add_const_t<T>* weight,
                               TensorView<T> dx, std::add_pointer_t<T> dweight,
                               std::add_pointer_t<T> dbias) {
  OpScope<Dev> scope("ops::depthwise_conv3d_backward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    DepthwiseConv3dKernels<Dev>::template depthwise_conv3d_backward<T>(dev, x, dy, weight, dx,
                                                                       dweight, dbias);
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/depthwise_conv3d.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/depthwise_conv3d.cuh"
#endif
