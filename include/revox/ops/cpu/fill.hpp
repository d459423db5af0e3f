// revox/ops/cpu/fill.hpp — out[i] = value for every element (CPU).
#pragma once

#include "revox/core/tensor.hpp"

namespace revox::cpu {

template <class T>
void fill(TensorView<T> out, T value) {
  const index_t count = out.numel();
  T* data = out.data;
#pragma omp parallel for simd schedule(static) if (count > (index_t{1} << 16))
  for (index_t i = 0; i < count; ++i) data[i] = value;
}

}  // namespace revox::cpu
