// tests/support/kernel_bodies.hpp — what the tests of the CUDA kernel bodies run on the CPU
// (tests/test_kernel_bodies_*.cpp) share: tests/support/tensors.hpp, the emulated runner and
// executor, the tolerances, and the names they use (brought in at file scope below: the header
// is included by those tests only).
#pragma once

#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/executor.hpp"
#include "tensors.hpp"

namespace revox::test {

// A multi-stage kernel (GroupNorm, the Dice loss) with emulate_for_each as the runner.
struct Emulate {
  template <class Body>
  void operator()(index_t count, const Body& body) const {
    kernels::emulate_for_each(count, body);
  }
};
inline constexpr Emulate kEmulate{};

// The emulated executor, counting what the GPU would launch.
struct CountingExecutor {
  using device_type = revox::Cpu;
  mutable int bodies = 0;
  mutable int gemms = 0;
  mutable int zeros = 0;
  template <class Body>
  void for_each(index_t count, const Body& body) const {
    ++bodies;
    kernels::EmulatedExecutor{}.for_each(count, body);
  }
  template <class T>
  void gemm(const kernels::Gemm<T>& g) const {
    ++gemms;
    kernels::EmulatedExecutor{}.gemm(g);
  }
  template <class T>
  void zero(T* data, index_t count) const {
    ++zeros;
    kernels::EmulatedExecutor{}.zero(data, count);
  }
};

namespace elementwise {
// Rounding-level tolerance of a value computed in T through a different operation order.
template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-6 : 1e-14;
}
}  // namespace elementwise

namespace convolution {
// The convolutions' GEMMs sum in another order than the CPU reference.
template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}
}  // namespace convolution

}  // namespace revox::test

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using namespace revox::test;  // NOLINT(google-build-using-namespace)
namespace kernels = revox::kernels;
