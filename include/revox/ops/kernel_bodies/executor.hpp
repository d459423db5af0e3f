// revox/ops/kernel_bodies/executor.hpp — what the CUDA launch sequences of the convolutions
// (kernels/{pointwise_conv3d,conv3d,depthwise_conv3d}.hpp) run on, and the CPU one that runs
// them in tests. Plain C++ (no CUDA headers).
//
// Each of those ops is written once as a function template over an executor providing
//   device_type                               where scratch tensors live
//   for_each(count, body)                     the kernel-body launch (kernels/for_each.hpp)
//   gemm(Gemm<T>)                             the GEMM (kernels/gemm.hpp)
//   zero(T* data, index_t count)              data[0, count) = 0
// and runs on the GPU with cuda::Executor (ops/cuda/executor.cuh) and on the CPU, in tests,
// with EmulatedExecutor below: the index math, the descriptors and the chunking are all
// tested against the CPU reference without a GPU.
#pragma once

#include <algorithm>

#include "revox/core/config.hpp"
#include "revox/core/device.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/gemm.hpp"

namespace revox::kernels {

// Runs a CUDA op's launch sequence on the CPU: bodies through emulate_for_each, GEMMs
// through emulate_gemm, scratch from the CPU tracking allocator.
struct EmulatedExecutor {
  using device_type = Cpu;
  template <class Body>
  void for_each(index_t count, const Body& body) const {
    emulate_for_each(count, body);
  }
  template <class T>
  void gemm(const Gemm<T>& g) const {
    emulate_gemm(g);
  }
  template <class T>
  void zero(T* data, index_t count) const {
    std::fill(data, data + count, T(0));
  }
};

}  // namespace revox::kernels
