// revox/ops/pointwise_conv3d.hpp — dispatchers for the pointwise (1x1x1) 3D convolution:
// one signature for every device. Shapes and semantics are in ops/cpu/pointwise_conv3d.hpp:
//   pointwise_conv3d_forward(dev, x, weight, bias_or_null, y)        y  ASSIGNED
//   pointwise_conv3d_backward_data(dev, dy, weight, dx)              dx ASSIGNED
//   pointwise_conv3d_backward_weight(dev, x, dy, dweight, dbias_or_null)  ACCUMULATED
// Pointers are device memory; weight is (Cout, Cin) row-major (PyTorch's (Cout, Cin, 1, 1, 1)).
// CUDA: declared here, defined in ops/cuda/pointwise_conv3d.cuh (cuBLAS; the launch sequence
// is ops/kernels/pointwise_conv3d.hpp), which a .cu translation unit includes.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"

namespace revox {
namespace cuda {  // revox/ops/cuda/pointwise_conv3d.cuh
template <class T>
void pointwise_conv3d_forward(const Cuda& dev, TensorView<const T> x,
                              cpu::conv3d_detail::const_ptr<T> weight,
                              cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y);
template <class T>
void pointwise_conv3d_backward_data(const Cuda& dev, TensorView<const T> dy,
                                    cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx);
template <class T>
void pointwise_conv3d_backward_weight(const Cuda& dev, TensorView<const T> x,
                                      TensorView<const T> dy,
                                      cpu::conv3d_detail::mut_ptr<T> dweight,
                                      cpu::conv3d_detail::mut_ptr<T> dbias);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void pointwise_conv3d_forward(const Dev& dev, TensorView<const T> x,
                              cpu::conv3d_detail::const_ptr<T> weight,
                              cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::pointwise_conv3d_forward");
    (void)dev;
    cpu::pointwise_conv3d_forward(x, weight, bias, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::pointwise_conv3d_forward<T>(dev, x, weight, bias, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::pointwise_conv3d_forward", x.shape);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_forward: unknown device");
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_data(const Dev& dev, TensorView<const T> dy,
                                    cpu::conv3d_detail::const_ptr<T> weight, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::pointwise_conv3d_backward_data");
    (void)dev;
    cpu::pointwise_conv3d_backward_data(dy, weight, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::pointwise_conv3d_backward_data<T>(dev, dy, weight, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::pointwise_conv3d_backward_data", dy.shape);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_backward_data: unknown device");
  }
}

template <class Dev, class T>
void pointwise_conv3d_backward_weight(const Dev& dev, TensorView<const T> x,
                                      TensorView<const T> dy,
                                      cpu::conv3d_detail::mut_ptr<T> dweight,
                                      cpu::conv3d_detail::mut_ptr<T> dbias) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::pointwise_conv3d_backward_weight");
    (void)dev;
    cpu::pointwise_conv3d_backward_weight(x, dy, dweight, dbias);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::pointwise_conv3d_backward_weight<T>(dev, x, dy, dweight, dbias);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::pointwise_conv3d_backward_weight", x.shape);
  } else {
    static_assert(::revox::detail::always_false_v<Dev>,
                  "ops::pointwise_conv3d_backward_weight: unknown device");
  }
}

}  // namespace ops
}  // namespace revox
