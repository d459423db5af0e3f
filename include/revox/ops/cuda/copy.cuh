// revox/ops/cuda/copy.cuh — CopyKernels<Cuda>: dst = src on the GPU: cudaMemcpyAsync device to
// device on dev's stream, so the copy is ordered with the kernels around it (and can be
// captured in a CUDA graph). Include from a .cu translation unit.
#pragma once

#include <type_traits>

#include "revox/core/cuda.hpp"
#include "revox/ops/copy.hpp"

namespace revox::ops {

template <>
struct CopyKernels<Cuda> {
  template <class T>
  static void copy(const Cuda& dev, TensorView<std::add_const_t<T>> src, TensorView<T> dst) {
    const auto bytes = static_cast<std::size_t>(dst.numel()) * sizeof(T);
    if (bytes == 0) return;
    REVOX_CUDA_CHECK(
        cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice, dev.stream));
  }
};

}  // namespace revox::ops
