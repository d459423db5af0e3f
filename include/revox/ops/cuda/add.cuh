// revox/ops/cuda/add.cuh — AddKernels<Cuda>: the element-wise sums of ops/add.hpp on the GPU
// (add, add_inplace, sub_inplace; the last two are the reversible coupling and its inverse):
// the bodies of ops/kernel_bodies/add.hpp, one thread per element (cuda::for_each). The dispatchers
// in ops/add.hpp check shapes and overlap before calling these. Every view is device memory.
// Asynchronous on dev.stream. Include from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/add.hpp"

namespace revox::ops {

template <>
struct AddKernels<Cuda> {
  template <class T>
  static void add(const Cuda& dev, TensorView<const T> a, TensorView<const T> b,
                  TensorView<T> y) {
    REVOX_ASSERT(a.shape == b.shape && a.shape == y.shape);
    cuda::for_each(dev, y.numel(), ::revox::kernels::Add<T>{a.data, b.data, y.data});
  }

  template <class T>
  static void add_inplace(const Cuda& dev, TensorView<T> y, TensorView<const T> x) {
    REVOX_ASSERT(x.shape == y.shape);
    cuda::for_each(dev, y.numel(), ::revox::kernels::AddInplace<T>{y.data, x.data});
  }

  template <class T>
  static void sub_inplace(const Cuda& dev, TensorView<T> y, TensorView<const T> x) {
    REVOX_ASSERT(x.shape == y.shape);
    cuda::for_each(dev, y.numel(), ::revox::kernels::SubInplace<T>{y.data, x.data});
  }
};

}  // namespace revox::ops
