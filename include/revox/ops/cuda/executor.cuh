// revox/ops/cuda/executor.cuh — cuda::Executor, the GPU executor (kernels/executor.hpp) the
// convolutions of kernels/{pointwise_conv3d,conv3d,depthwise_conv3d}.hpp run on: bodies
// through cuda::for_each (cuda/launch.cuh), GEMMs through cuda::gemm (cuda/gemm.cuh, cuBLAS),
// zeroing through cudaMemsetAsync, all on dev's stream, scratch from cuda_allocator().
// Include from a .cu translation unit.
#pragma once

#include <cstddef>

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/gemm.cuh"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/executor.hpp"

namespace revox::cuda {

// The GPU executor of the ops in revox/ops/kernel_bodies/*.hpp (see kernels/executor.hpp).
struct Executor {
  using device_type = Cuda;
  Cuda dev;

  template <class Body>
  void for_each(index_t count, const Body& body) const {
    ::revox::cuda::for_each(dev, count, body);
  }
  template <class T>
  void gemm(const ::revox::kernels::Gemm<T>& g) const {
    ::revox::cuda::gemm(dev, g);
  }
  template <class T>
  void zero(T* data, index_t count) const {
    if (count > 0) {
      REVOX_CUDA_CHECK(cudaMemsetAsync(data, 0, static_cast<std::size_t>(count) * sizeof(T),
                                       dev.stream));
    }
  }
};

}  // namespace revox::cuda
