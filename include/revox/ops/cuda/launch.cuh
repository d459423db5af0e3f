// revox/ops/cuda/launch.cuh — how revox's simple CUDA kernels are launched.
//
// A kernel body is a small copyable functor with `REVOX_HD void operator()(index_t i) const`
// defined in revox/ops/kernel_bodies/<op>.hpp, a header without CUDA includes. On the GPU,
// cuda::for_each(dev, n, body) runs body(i) for every i in [0, n) with a grid-stride loop
// (64-bit indices); on the CPU, kernels::emulate_for_each(n, body) runs the same body in
// order, which is how tests check every kernel's index math against the CPU reference on
// machines without a GPU. Include from a .cu translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"

namespace revox::cuda {

template <class Body>
__global__ void for_each_kernel(Body body, index_t count) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    body(i);
  }
}

inline constexpr int kForEachThreads = 256;
inline constexpr index_t kForEachMaxBlocks = 65536;

// body(i) for every i in [0, count) on dev's stream; asynchronous, launch errors thrown here.
template <class Body>
void for_each(const Cuda& dev, index_t count, const Body& body) {
  if (count <= 0) return;
  const index_t wanted = (count + kForEachThreads - 1) / kForEachThreads;
  const int blocks = static_cast<int>(wanted < kForEachMaxBlocks ? wanted : kForEachMaxBlocks);
  for_each_kernel<Body><<<blocks, kForEachThreads, 0, dev.stream>>>(body, count);
  REVOX_CUDA_CHECK_LAUNCH();
}

}  // namespace revox::cuda
