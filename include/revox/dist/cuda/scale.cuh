// revox/dist/cuda/scale.cuh — the CUDA side of the communicators' element-wise scale
// (dist::ScaleBody of revox/dist/communicator.hpp, launched by cuda::for_each on the
// device's stream). A program that uses a SingleProcess<Cuda> communicator includes it in
// the .cu translation units that create one.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/ops/cuda/launch.cuh"

namespace revox::dist::detail {

template <class T>
void cuda_scale(const Cuda& dev, TensorView<T> buffer, T scale) {
  revox::cuda::for_each(dev, buffer.numel(), ScaleBody<T>{buffer.data, scale});
}

}  // namespace revox::dist::detail
