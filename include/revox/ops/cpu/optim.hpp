// revox/ops/cpu/optim.hpp — OptimKernels<Cpu>: the CPU side of revox's optimizers
// (optim/*.hpp), the same two functions as OptimKernels<Cuda> (ops/cuda/optim.cuh): the
// parameter range table copied into the optimizer's buffer, and each step's element update
// (ops/kernel_bodies/optim.hpp) run over the flat buffers in chunks of kChunk elements, in
// parallel with OpenMP, skipping the padding between parameters. The update is element-wise,
// so any split gives the same result.
#pragma once

#include <algorithm>

#include "revox/core/config.hpp"
#include "revox/core/device.hpp"
#include "revox/ops/kernel_bodies/optim.hpp"
#include "revox/optim/optimizer.hpp"

namespace revox::ops {

template <>
struct OptimKernels<Cpu> {
  // Elements per OpenMP work item.
  static constexpr index_t kChunk = index_t{1} << 14;

  // The parameter range table (optim::detail::parameter_range_table, `count` entries) into
  // the optimizer's own buffer.
  template <class T>
  static void upload_parameter_ranges(const Cpu&, T* dst, const T* host_src, index_t count) {
    std::copy(host_src, host_src + count, dst);
  }

  // update.update(i) for every i in [0, flat_size) inside `ranges`.
  template <class Update>
  static void for_each_parameter_element(const Cpu&, index_t flat_size,
                                         ::revox::kernels::ParamRanges ranges,
                                         const Update& update) {
    const index_t chunks = (flat_size + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (index_t c = 0; c < chunks; ++c) {
      // A private copy: the element stores cannot alias its scalars, which stay in registers.
      const Update local = update;
      const index_t lo = c * kChunk;
      const index_t hi = std::min(lo + kChunk, flat_size);
      // The parameters that overlap [lo, hi): from the first one that ends after lo.
      index_t k = std::upper_bound(ranges.end, ranges.end + ranges.count, lo) - ranges.end;
      for (; k < ranges.count && ranges.begin[k] < hi; ++k) {
        const index_t end = std::min(hi, ranges.end[k]);
        for (index_t i = std::max(lo, ranges.begin[k]); i < end; ++i) local.update(i);
      }
    }
  }
};

}  // namespace revox::ops
