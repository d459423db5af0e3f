// GPU parity of the depthwise 3x3x3 convolution through the ops:: dispatchers against the plain
// CPU reference, float and double (tests/cuda/conv_parity.cuh: shared checks, tolerances). Exits
// 77 (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_depthwise_conv3d.cpp.
#include "conv_parity.cuh"
#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_depthwise_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    depthwise_parity<T>(dev, odd, with_bias, rng);
    depthwise_parity<T>(dev, Shape5{1, 2, 1, 1, 1}, with_bias, rng);
  }
  depthwise_parity<T>(dev, larger, true, rng);
}

}  // namespace

int main() {
  return run_with_context("test_cuda_depthwise_conv3d", [](const revox::Cuda& dev, auto t) {
    all_depthwise_parity<decltype(t)>(dev);
  });
}
