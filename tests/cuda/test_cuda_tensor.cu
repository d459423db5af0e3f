// CUDA tensor: allocation through the tracking allocator, fill kernel, copies, compared
// with the CPU. The device tensor is pre-filled with a different value than the expected
// result so an unwritten element shows.
#include <cstdio>

#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/ops/cpu/fill.hpp"
#include "revox/ops/cuda/fill.cuh"

int main() {
  using revox::Shape5;
  using revox::Tensor;
  revox_cuda_test::require_gpu("test_cuda_tensor");
  try {
    const revox::Cuda dev{};
    auto& allocator = revox::cuda_allocator();
    const auto before = allocator.stats();
    {
      // Odd size, more elements than one grid-stride pass of the launch covers.
      const Shape5 shape{1, 3, 67, 129, 131};
      Tensor<float, revox::Cuda> x(shape);
      CUDA_TEST_CHECK(allocator.current_bytes() == before.current_bytes + x.bytes());
      revox::ops::fill(dev, x.view(), -7.0f);
      revox::ops::fill(dev, x.view(), 2.5f);
      REVOX_CUDA_CHECK(cudaDeviceSynchronize());
      Tensor<float> host = revox::to_host(x);
      Tensor<float> expected = Tensor<float>::full(shape, 0.0f);
      revox::ops::fill(revox::Cpu{}, expected.view(), 2.5f);
      long long mismatches = 0;
      for (long long i = 0; i < host.numel(); ++i) mismatches += host[i] != expected[i];
      CUDA_TEST_CHECK(mismatches == 0);

      Tensor<double> source = Tensor<double>::full(Shape5{1, 1, 2, 3, 5}, 0.0);
      for (long long i = 0; i < source.numel(); ++i) source[i] = 0.5 * static_cast<double>(i);
      Tensor<double, revox::Cuda> on_device = revox::to_device(source);
      Tensor<double, revox::Cuda> copy = on_device.clone();
      Tensor<double> back = revox::to_host(copy);
      for (long long i = 0; i < back.numel(); ++i) CUDA_TEST_CHECK(back[i] == source[i]);
      Tensor<double, revox::Cuda> zeros = Tensor<double, revox::Cuda>::zeros(source.shape());
      Tensor<double> zeros_host = revox::to_host(zeros);
      for (long long i = 0; i < zeros_host.numel(); ++i) CUDA_TEST_CHECK(zeros_host[i] == 0.0);
    }
    CUDA_TEST_CHECK(allocator.current_bytes() == before.current_bytes);
    CUDA_TEST_CHECK(allocator.live_allocations() == before.live_allocations);
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return revox_cuda_test::finish("test_cuda_tensor");
}
