// revox/ops/cpu/copy.hpp — CopyKernels<Cpu>: dst = src, element for element. src and dst
// hold the same number of elements and do not overlap. Large copies are split into fixed
// chunks over the OpenMP threads (one core does not reach the memory bandwidth on its own);
// small ones are one memcpy.
#pragma once

#include <cstring>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/copy.hpp"

namespace revox::cpu {

// Bytes per chunk of a parallel copy, and the size from which a copy runs in parallel.
inline constexpr index_t kCopyChunkBytes = index_t{1} << 20;
inline constexpr index_t kCopyParallelBytes = index_t{4} << 20;

}  // namespace revox::cpu

namespace revox::ops {

template <>
struct CopyKernels<Cpu> {
  template <class T>
  static void copy(const Cpu& /*dev*/, TensorView<std::add_const_t<T>> src, TensorView<T> dst) {
    REVOX_ASSERT(src.numel() == dst.numel());
    const index_t bytes = dst.numel() * static_cast<index_t>(sizeof(T));
    if (bytes == 0) return;
    const auto* from = reinterpret_cast<const unsigned char*>(src.data);
    auto* to = reinterpret_cast<unsigned char*>(dst.data);
    if (bytes < cpu::kCopyParallelBytes) {
      std::memcpy(to, from, static_cast<std::size_t>(bytes));
      return;
    }
    const index_t chunks = (bytes + cpu::kCopyChunkBytes - 1) / cpu::kCopyChunkBytes;
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < chunks; ++i) {
      const index_t begin = i * cpu::kCopyChunkBytes;
      const index_t end =
          begin + cpu::kCopyChunkBytes < bytes ? begin + cpu::kCopyChunkBytes : bytes;
      std::memcpy(to + begin, from + begin, static_cast<std::size_t>(end - begin));
    }
  }
};

}  // namespace revox::ops
