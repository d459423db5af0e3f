// revox/ops/upsample_trilinear.hpp — trilinear x2 upsampling (align_corners=False) on any
// device (taps and semantics in ops/cpu/upsample_trilinear.hpp).
//   upsample_trilinear(dev, x, y)             x (N,C,D,H,W) -> y (N,C,2D,2H,2W), ASSIGNED
//   upsample_trilinear_backward(dev, dy, dx)  dy (N,C,2D,2H,2W) -> dx (N,C,D,H,W), ASSIGNED
// CPU kernels: ops/cpu/upsample_trilinear.hpp; CUDA: ops/cuda/upsample_trilinear.cuh
// (declared here, defined there; a .cu translation unit includes it), whose bodies are
// ops/kernels/upsample_trilinear.hpp.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/upsample_trilinear.hpp"

namespace revox {
namespace cuda {
// revox/ops/cuda/upsample_trilinear.cuh
template <class T>
void upsample_trilinear(const Cuda& dev, TensorView<const T> x, TensorView<T> y);
template <class T>
void upsample_trilinear_backward(const Cuda& dev, TensorView<const T> dy, TensorView<T> dx);
}  // namespace cuda

namespace ops {

template <class Dev, class T>
void upsample_trilinear(const Dev& dev, TensorView<const T> x, TensorView<T> y) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::upsample_trilinear");
    (void)dev;
    cpu::upsample_trilinear(x, y);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::upsample_trilinear(dev, x, y);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::upsample_trilinear", x.shape);
  } else {
    static_assert(detail::always_false_v<Dev>, "ops::upsample_trilinear: unknown device type");
  }
}

template <class Dev, class T>
void upsample_trilinear_backward(const Dev& dev, TensorView<const T> dy, TensorView<T> dx) {
  if constexpr (is_cpu_v<Dev>) {
    ::revox::detail::OpTimer timer("ops::upsample_trilinear_backward");
    (void)dev;
    cpu::upsample_trilinear_backward(dy, dx);
  } else if constexpr (is_cuda_v<Dev>) {
    cuda::upsample_trilinear_backward(dev, dy, dx);
  } else if constexpr (is_plan_v<Dev>) {
    (void)dev;
    ::revox::detail::plan_op("ops::upsample_trilinear_backward", dy.shape);
  } else {
    static_assert(detail::always_false_v<Dev>,
                  "ops::upsample_trilinear_backward: unknown device type");
  }
}

}  // namespace ops
}  // namespace revox
