// revox/ops/cuda/optim.cuh — OptimKernels<Cuda>: the GPU side of revox's optimizers
// (optim/*.hpp): the parameter range table copied to the device once, and each step's update
// body (ops/kernel_bodies/optim.hpp) run by one thread per flat-buffer index, skipping the padding
// between parameters. The update is element-wise, so the result is the CPU's, element for
// element. Asynchronous on dev.stream. Include from a .cu translation unit that constructs an
// optimizer on Cuda.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/optim.hpp"
#include "revox/optim/optimizer.hpp"

namespace revox::ops {

template <>
struct OptimKernels<Cuda> {
  // The parameter range table (optim::detail::parameter_range_table, `count` entries) from
  // the host to the device, ordered on dev.stream; waits for the copy, so host_src may be
  // freed on return.
  template <class T>
  static void upload_parameter_ranges(const Cuda& dev, T* device_dst, const T* host_src,
                                      index_t count) {
    if (count == 0) return;
    REVOX_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src,
                                     static_cast<std::size_t>(count) * sizeof(T),
                                     cudaMemcpyHostToDevice, dev.stream));
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
  }

  // update.update(i) for every i in [0, flat_size) inside `ranges` (device memory).
  template <class Update>
  static void for_each_parameter_element(const Cuda& dev, index_t flat_size,
                                         ::revox::kernels::ParamRanges ranges,
                                         const Update& update) {
    cuda::for_each(dev, flat_size, ::revox::kernels::ParameterElements<Update>{update, ranges});
  }
};

}  // namespace revox::ops
