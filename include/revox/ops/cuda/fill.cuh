// revox/ops/cuda/fill.cuh — FillKernels<Cuda>: out[i] = value for every element. Include
// from a .cu translation unit. Grid-stride loop with 64-bit indices.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/fill.hpp"

namespace revox::cuda {
template <class T>
__global__ void fill_kernel(T* __restrict__ out, index_t count, T value) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    out[i] = value;
  }
}
}  // namespace revox::cuda

namespace revox::ops {

template <>
struct FillKernels<Cuda> {
  template <class T>
  static void fill(const Cuda& dev, TensorView<T> out, T value) {
    const index_t count = out.numel();
    if (count == 0) return;
    constexpr int kThreads = 256;
    const index_t wanted = (count + kThreads - 1) / kThreads;
    const int blocks = static_cast<int>(wanted < 65536 ? wanted : 65536);
    cuda::fill_kernel<T><<<blocks, kThreads, 0, dev.stream>>>(out.data, count, value);
    REVOX_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace revox::ops
