// GPU parity of the dense Conv3d (kernel_size 1, 3 and 5, chunked im2col) through the ops::
// dispatchers against the plain CPU reference, float and double (tests/cuda/conv_parity.cuh:
// shared checks, tolerances). Exits 77 (skipped) without a GPU. The same kernel bodies run on
// the CPU in tests/test_kernel_bodies_conv3d.cpp.
#include "conv_parity.cuh"
#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_conv3d_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    conv_parity<T>(dev, odd, 4, 3, with_bias, 0, rng);
    conv_parity<T>(dev, odd, 4, 1, with_bias, 0, rng);  // kernel_size 1: the pointwise path
  }
  conv_parity<T>(dev, larger, 8, 3, true, 0, rng);
  // Several im2col chunks: one output row, then four rows per chunk.
  const index_t row = odd.c * 27 * odd.w * static_cast<index_t>(sizeof(T));
  conv_parity<T>(dev, odd, 4, 3, true, row, rng);
  conv_parity<T>(dev, odd, 4, 3, true, 4 * row, rng);
  conv_parity<T>(dev, Shape5{1, 2, 3, 5, 6}, 3, 5, true,
                 2 * 2 * 125 * 6 * static_cast<index_t>(sizeof(T)), rng);
}

}  // namespace

int main() {
  return run_with_context("test_cuda_conv3d", [](const revox::Cuda& dev, auto t) {
    all_conv3d_parity<decltype(t)>(dev);
  });
}
