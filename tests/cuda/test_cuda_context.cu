// The CudaContext, the cuBLAS error path and the caching pool of cuda_allocator(), driven by
// the convolutions (tests/cuda/conv_parity.cuh): a second identical training-like step calls
// cudaMalloc no more. Exits 77 (skipped) without a GPU.
#include <cstdio>
#include <string>

#include "conv_parity.cuh"
#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::Cuda;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

// One forward and backward of every op: the allocation sequence of a "training step".
void step(const Cuda& dev, revox::Rng& rng) {
  const Shape5 s{2, 3, 5, 7, 9};
  conv_parity<float>(dev, s, 4, 3, true, 0, rng);
  conv_parity<float>(dev, s, 4, 0, true, 0, rng);
  depthwise_parity<float>(dev, s, true, rng);
}

}  // namespace

int main() {
  return revox_cuda_test::run_test("test_cuda_context", [] {
    auto& allocator = revox::cuda_allocator();
    const auto start = allocator.stats();
    {
      revox::CudaContext ctx(0);
      const Cuda dev = ctx.device();
      CUDA_TEST_CHECK(dev.stream != nullptr);
      CUDA_TEST_CHECK(dev.cublas != nullptr);
      CUDA_TEST_CHECK(allocator.caching());

      // The caching pool: a second identical step calls cudaMalloc no more.
      revox::Rng rng_a(7);
      step(dev, rng_a);
      ctx.synchronize();
      const auto after_first = allocator.stats();
      revox::Rng rng_b(7);
      step(dev, rng_b);
      ctx.synchronize();
      const auto after_second = allocator.stats();
      CUDA_TEST_CHECK(after_second.raw_allocations == after_first.raw_allocations);
      CUDA_TEST_CHECK(after_second.total_allocations > after_first.total_allocations);
      CUDA_TEST_CHECK(after_second.current_bytes == after_first.current_bytes);
      CUDA_TEST_CHECK(after_second.reserved_bytes >= after_second.current_bytes);
      CUDA_TEST_CHECK(after_second.cached_bytes > 0);
      std::printf("pool: %zu cudaMalloc calls for %zu allocations; %zu bytes in use, %zu "
                  "reserved\n",
                  after_second.raw_allocations - start.raw_allocations,
                  after_second.total_allocations - start.total_allocations,
                  after_second.current_bytes, after_second.reserved_bytes);

      // Errors name the problem.
      bool threw = false;
      try {
        revox::CudaContext wrong(revox::cuda_device_count());
      } catch (const revox::Error& e) {
        threw = std::string(e.what()).find("GPU index") != std::string::npos;
      }
      CUDA_TEST_CHECK(threw);
      threw = false;
      try {
        DeviceTensor<float> a(revox::flat_shape(4));
        revox::ops::pointwise_conv3d_forward(Cuda{}, a.cview(), a.data(), nullptr, a.view());
      } catch (const revox::Error& e) {
        threw = std::string(e.what()).find("no cuBLAS handle") != std::string::npos;
      }
      CUDA_TEST_CHECK(threw);
    }
    // The last context released the cached blocks; every tensor is gone.
    const auto end = allocator.stats();
    CUDA_TEST_CHECK(end.current_bytes == start.current_bytes);
    CUDA_TEST_CHECK(end.cached_bytes == 0);
  });
}
