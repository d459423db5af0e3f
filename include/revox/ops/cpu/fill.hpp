// revox/ops/cpu/fill.hpp — FillKernels<Cpu>: out[i] = value for every element.
#pragma once

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/fill.hpp"

namespace revox::ops {

template <>
struct FillKernels<Cpu> {
  template <class T>
  static void fill(const Cpu& /*dev*/, TensorView<T> out, T value) {
    const index_t count = out.numel();
    T* data = out.data;
#pragma omp parallel for simd schedule(static) if (count > (index_t{1} << 16))
    for (index_t i = 0; i < count; ++i) data[i] = value;
  }
};

}  // namespace revox::ops
