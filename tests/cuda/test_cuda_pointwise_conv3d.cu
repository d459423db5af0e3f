// GPU parity of the pointwise 1x1x1 convolution (ops::pointwise_conv3d_*) through the ops::
// dispatchers against the plain CPU reference, float and double (tests/cuda/conv_parity.cuh:
// shared checks, tolerances). Exits 77 (skipped) without a GPU. The same kernel bodies run on
// the CPU in tests/test_kernel_bodies_pointwise_conv3d.cpp.
#include "conv_parity.cuh"
#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_pointwise_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    conv_parity<T>(dev, odd, 5, 0, with_bias, 0, rng);
  }
  conv_parity<T>(dev, larger, 24, 0, true, 0, rng);
}

}  // namespace

int main() {
  return run_with_context("test_cuda_pointwise_conv3d", [](const revox::Cuda& dev, auto t) {
    all_pointwise_parity<decltype(t)>(dev);
  });
}
