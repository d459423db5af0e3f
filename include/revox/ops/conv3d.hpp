// revox/ops/conv3d.hpp — dispatchers for the dense 3D convolution (stride 1, 'same' padding,
// groups 1, odd kernel_size): one signature for every device. Shapes and semantics are in
// ops/cpu/conv3d.hpp:
//   conv3d_forward(dev, x, weight, bias_or_null, y, kernel_size)                 y  ASSIGNED
//   conv3d_backward_data(dev, dy, weight, dx, kernel_size)                       dx ASSIGNED
//   conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null, kernel_size)      ACCUMULATED
// Pointers are device memory; weight is (Cout, Cin, k, k, k) row-major, PyTorch's layout.
// The op's shape (revox/ops/op.hpp): Conv3dKernels<Cpu> in ops/cpu/conv3d.hpp,
// Conv3dKernels<Cuda> in ops/cuda/conv3d.cuh (im2col / col2im bodies and cuBLAS; the launch
// sequence is ops/kernel_bodies/conv3d.hpp). Both devices bound the im2col column buffer by
// cpu::kConv3dScratchBytes (ops/cpu/conv_shapes.hpp, which also sizes the Plan device's
// scratch).
#pragma once

#include <cstddef>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/op.hpp"

namespace revox::ops {

template <class Dev>
struct Conv3dKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "ops::conv3d has no kernels for this device: a CUDA translation unit must "
                "include revox/ops/cuda/conv3d.cuh (or revox/revox.cuh)");
};

template <class Dev, class T>
void conv3d_forward(const Dev& dev, TensorView<const T> x, cpu::conv3d_detail::const_ptr<T> weight,
                    cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size) {
  OpScope<Dev> scope("ops::conv3d_forward", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    Conv3dKernels<Dev>::conv3d_forward(dev, x, weight, bias, y, kernel_size);
  }
  if constexpr (is_plan_v<Dev>) {
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::forward, x.shape,
                                                           y.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "im2col column-chunk scratch");
  }
}

template <class Dev, class T>
void conv3d_backward_data(const Dev& dev, TensorView<const T> dy,
                          cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                          int kernel_size) {
  OpScope<Dev> scope("ops::conv3d_backward_data", dy.shape);
  if constexpr (runs_kernels_v<Dev>) {
    Conv3dKernels<Dev>::conv3d_backward_data(dev, dy, weight, dx, kernel_size);
  }
  if constexpr (is_plan_v<Dev>) {
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::backward_data,
                                                           dx.shape, dy.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "column-chunk scratch");
  }
}

template <class Dev, class T>
void conv3d_backward_weight(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                            cpu::conv3d_detail::mut_ptr<T> dweight,
                            cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size) {
  OpScope<Dev> scope("ops::conv3d_backward_weight", x.shape);
  if constexpr (runs_kernels_v<Dev>) {
    Conv3dKernels<Dev>::conv3d_backward_weight(dev, x, dy, dweight, dbias, kernel_size);
  }
  if constexpr (is_plan_v<Dev>) {
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::backward_weight,
                                                           x.shape, dy.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "im2col column-chunk scratch");
  }
}

}  // namespace revox::ops

#include "revox/ops/cpu/conv3d.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/conv3d.cuh"
#endif
