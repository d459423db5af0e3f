// revox/ops/kernel_bodies/for_each.hpp — the host side of revox's kernel-body convention.
//
// Every simple CUDA kernel of revox is a functor `Body` with
//   REVOX_HD void operator()(index_t i) const;
// in revox/ops/kernel_bodies/<op>.hpp (plain C++, no CUDA headers; REVOX_HD adds __host__
// __device__ under nvcc). revox/ops/cuda/launch.cuh runs it over a grid on the GPU;
// emulate_for_each runs the very same body on the CPU, in order, so the index math of
// every kernel is tested against the CPU reference on machines without a GPU. Bodies must
// not race: each i writes only its own outputs (reductions are two-stage: one body writes
// per-chunk partials, a second sums them in a fixed order).
#pragma once

#include "revox/core/config.hpp"

namespace revox::kernels {

template <class Body>
void emulate_for_each(index_t count, const Body& body) {
  for (index_t i = 0; i < count; ++i) body(i);
}

}  // namespace revox::kernels
