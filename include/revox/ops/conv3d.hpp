// revox/ops/conv3d.hpp — dispatchers for the dense 3D convolution (stride 1, 'same' padding,
// groups 1, odd kernel_size): one signature for every device. Shapes and semantics are in
// ops/cpu/conv3d.hpp:
//   conv3d_forward(dev, x, weight, bias_or_null, y, kernel_size)                 y  ASSIGNED
//   conv3d_backward_data(dev, dy, weight, dx, kernel_size)                       dx ASSIGNED
//   conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null, kernel_size)      ACCUMULATED
// Pointers are device memory; weight is (Cout, Cin, k, k, k) row-major, PyTorch's layout.
// CUDA: declared here, defined in ops/cuda/conv3d.cuh (im2col / col2im bodies and cuBLAS; the
// launch sequence is ops/kernels/conv3d.hpp), which a .cu translation unit includes. Both
// devices bound the im2col column buffer by cpu::kConv3dScratchBytes.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv3d.hpp"

namespace revox {
namespace cuda {  // revox/ops/cuda/conv3d.cuh
template <class T>
void conv3d_forward(const Cuda& dev, TensorView<const T> x,
                    cpu::conv3d_detail::const_ptr<T> weight,
                    cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size,
                    index_t scratch_bytes = cpu::kConv3dScratchBytes);
template <class T>
void conv3d_backward_data(const Cuda& dev, TensorView<const T> dy,
                          cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                          int kernel_size, index_t scratch_bytes = cpu::kConv3dScratchBytes);
template <class T>
void conv3d_backward_weight(const Cuda& dev, TensorView<const T> x, TensorView<const T> dy,
                            cpu::conv3d_detail::mut_ptr<T> dweight,
                            cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size,
                            index_t scratch_bytes = cpu::kConv3dScratchBytes);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void conv3d_forward(const Dev& dev, TensorView<const T> x, cpu::conv3d_detail::const_ptr<T> weight,
                    cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y, int kernel_size) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::conv3d_forward");
    (void)dev;
    cpu::conv3d_forward(x, weight, bias, y, kernel_size);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::conv3d_forward<T>(dev, x, weight, bias, y, kernel_size);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::conv3d_forward", x.shape);
    (void)weight;
    (void)bias;
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::forward, x.shape,
                                                           y.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "im2col column-chunk scratch");
  } else {
    static_assert(::revox::detail::always_false_v<Dev>, "ops::conv3d_forward: unknown device");
  }
}

template <class Dev, class T>
void conv3d_backward_data(const Dev& dev, TensorView<const T> dy,
                          cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx,
                          int kernel_size) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::conv3d_backward_data");
    (void)dev;
    cpu::conv3d_backward_data(dy, weight, dx, kernel_size);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::conv3d_backward_data<T>(dev, dy, weight, dx, kernel_size);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::conv3d_backward_data", dy.shape);
    (void)weight;
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::backward_data,
                                                           dx.shape, dy.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "column-chunk scratch");
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::conv3d_backward_data: unknown device");
  }
}

template <class Dev, class T>
void conv3d_backward_weight(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                            cpu::conv3d_detail::mut_ptr<T> dweight,
                            cpu::conv3d_detail::mut_ptr<T> dbias, int kernel_size) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::conv3d_backward_weight");
    (void)dev;
    cpu::conv3d_backward_weight(x, dy, dweight, dbias, kernel_size);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::conv3d_backward_weight<T>(dev, x, dy, dweight, dbias, kernel_size);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::conv3d_backward_weight", x.shape);
    (void)dweight;
    (void)dbias;
    ::revox::detail::plan_scratch(
        static_cast<std::size_t>(cpu::conv3d_scratch_bytes(cpu::Conv3dPass::backward_weight,
                                                           x.shape, dy.shape.c, kernel_size,
                                                           static_cast<index_t>(sizeof(T)))),
        "im2col column-chunk scratch");
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::conv3d_backward_weight: unknown device");
  }
}

}  // namespace ops
}  // namespace revox
