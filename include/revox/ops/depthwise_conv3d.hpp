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
// CPU: ops/cpu/depthwise_conv3d.hpp. CUDA: declared here, defined in
// ops/cuda/depthwise_conv3d.cuh (kernel bodies of ops/kernels/depthwise_conv3d.hpp), which a
// .cu translation unit includes; pointers are then device memory.
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"

namespace revox {
namespace cuda {  // revox/ops/cuda/depthwise_conv3d.cuh
template <class T>
void depthwise_conv3d_forward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                              std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                              TensorView<T> y);
template <class T>
void depthwise_conv3d_backward_data(const Cuda& dev, TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx);
template <class T>
void depthwise_conv3d_backward_weight(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias);
template <class T>
void depthwise_conv3d_backward(const Cuda& dev, TensorView<std::add_const_t<T>> x,
                               TensorView<std::add_const_t<T>> dy, std::add_const_t<T>* weight,
                               TensorView<T> dx, std::add_pointer_t<T> dweight,
                               std::add_pointer_t<T> dbias);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void depthwise_conv3d_forward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                              std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                              TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::depthwise_conv3d_forward");
    (void)dev;
    cpu::depthwise_conv3d_forward<T>(x, weight, bias, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::depthwise_conv3d_forward<T>(dev, x, weight, bias, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::depthwise_conv3d_forward", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::depthwise_conv3d_forward: unknown device");
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_data(const Dev& dev, TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::depthwise_conv3d_backward_data");
    (void)dev;
    cpu::depthwise_conv3d_backward_data<T>(dy, weight, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::depthwise_conv3d_backward_data<T>(dev, dy, weight, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::depthwise_conv3d_backward_data", dy.shape);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::depthwise_conv3d_backward_data: unknown device");
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward_weight(const Dev& dev, TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::depthwise_conv3d_backward_weight");
    (void)dev;
    cpu::depthwise_conv3d_backward_weight<T>(x, dy, dweight, dbias);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::depthwise_conv3d_backward_weight<T>(dev, x, dy, dweight, dbias);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::depthwise_conv3d_backward_weight", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::depthwise_conv3d_backward_weight: unknown device");
  }
}

template <class Dev, class T>
void depthwise_conv3d_backward(const Dev& dev, TensorView<std::add_const_t<T>> x,
                               TensorView<std::add_const_t<T>> dy, std::add_const_t<T>* weight,
                               TensorView<T> dx, std::add_pointer_t<T> dweight,
                               std::add_pointer_t<T> dbias) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::depthwise_conv3d_backward");
    (void)dev;
    cpu::depthwise_conv3d_backward<T>(x, dy, weight, dx, dweight, dbias);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::depthwise_conv3d_backward<T>(dev, x, dy, weight, dx, dweight, dbias);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::depthwise_conv3d_backward", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::depthwise_conv3d_backward: unknown device");
  }
}

}  // namespace ops
}  // namespace revox
