// Tensor, Shape5 and fill on the CPU; tensors, copies and fill on the GPU.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_tensor (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

#include "revox/core/tensor.hpp"
#include "revox/ops/fill.hpp"

using revox::Shape5;
using revox::Tensor;

TEST_CASE("Shape5 offsets are NCDHW and 64-bit", "[core][tensor]") {
  const Shape5 s{2, 3, 4, 5, 6};
  CHECK(s.numel() == 720);
  CHECK(s.spatial() == 120);
  CHECK(s.offset(0, 0, 0, 0, 1) == 1);
  CHECK(s.offset(0, 0, 0, 1, 0) == 6);
  CHECK(s.offset(0, 0, 1, 0, 0) == 30);
  CHECK(s.offset(0, 1, 0, 0, 0) == 120);
  CHECK(s.offset(1, 0, 0, 0, 0) == 360);
  CHECK(s.offset(1, 2, 3, 4, 5) == 719);
  // A batch-4, 120-channel 256x256x160 map has 5.0e9 elements: past 2^32.
  const Shape5 big{4, 120, 160, 256, 256};
  CHECK(big.numel() == std::int64_t{4} * 120 * 160 * 256 * 256);
  CHECK(big.numel() > (std::int64_t{1} << 32));
  CHECK(big.offset(3, 119, 159, 255, 255) == big.numel() - 1);
}

TEST_CASE("Tensor is move-only, clones explicitly and frees exactly once", "[core][tensor]") {
  auto& allocator = revox::cpu_allocator();
  const auto before = allocator.stats();
  {
    Tensor<float> a = Tensor<float>::full(Shape5{1, 2, 3, 4, 5}, 1.5f);
    CHECK(a.numel() == 120);
    CHECK(a.bytes() == 480);
    CHECK(allocator.current_bytes() == before.current_bytes + 480);
    Tensor<float> b = a.clone();
    CHECK(b.data() != a.data());
    CHECK(b[119] == 1.5f);
    b[0] = 2.0f;
    CHECK(a[0] == 1.5f);
    CHECK(allocator.live_allocations() == before.live_allocations + 2);

    const float* data = a.data();
    Tensor<float> c = std::move(a);
    CHECK(c.data() == data);
    CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    CHECK(a.numel() == 0);
    CHECK(allocator.live_allocations() == before.live_allocations + 2);
    c = std::move(b);  // frees c's old buffer
    CHECK(allocator.live_allocations() == before.live_allocations + 1);
    CHECK(allocator.current_bytes() == before.current_bytes + 480);
  }
  CHECK(allocator.current_bytes() == before.current_bytes);
  CHECK(allocator.live_allocations() == before.live_allocations);
  static_assert(!std::is_copy_constructible_v<Tensor<float>>);
  static_assert(!std::is_copy_assignable_v<Tensor<double>>);
  static_assert(std::is_nothrow_move_constructible_v<Tensor<double>>);
}

TEST_CASE("Tensor zeros, fill and views", "[core][tensor]") {
  Tensor<double> t = Tensor<double>::zeros(Shape5{1, 4, 2, 3, 2});
  for (std::int64_t i = 0; i < t.numel(); ++i) REQUIRE(t[i] == 0.0);
  revox::ops::fill(revox::Cpu{}, t.view(), 3.25);
  for (std::int64_t i = 0; i < t.numel(); ++i) REQUIRE(t[i] == 3.25);

  auto v = t.view();
  v.at(0, 2, 1, 2, 1) = -1.0;
  CHECK(t[t.shape().offset(0, 2, 1, 2, 1)] == -1.0);
  CHECK(v.channel(0, 2) == t.data() + 2 * 12);

  auto half = v.channels(2, 2);
  CHECK(half.shape == Shape5{1, 2, 2, 3, 2});
  CHECK(half.data == t.data() + 24);
  CHECK(half.at(0, 0, 1, 2, 1) == -1.0);
  revox::TensorView<const double> read_only = half;
  CHECK(read_only.data == half.data);
  static_assert(!std::is_convertible_v<revox::TensorView<const double>, revox::TensorView<double>>);
}

TEST_CASE("Tensor rejects bad shapes and bad channel slices", "[core][tensor]") {
  CHECK_THROWS_WITH(Tensor<float>(Shape5{1, -2, 3, 3, 3}),
                    Catch::Contains("extents must be non-negative") && Catch::Contains("C=-2"));
  Tensor<float> t(Shape5{2, 4, 2, 2, 2});
  CHECK_THROWS_WITH(t.view().channels(0, 2), Catch::Contains("batch 1, got N=2"));
  Tensor<float> u(Shape5{1, 4, 2, 2, 2});
  CHECK_THROWS_WITH(u.view().channels(3, 2), Catch::Contains("[3, 5) out of range for C=4"));
  Tensor<float> empty(Shape5{1, 0, 4, 4, 4});
  CHECK(empty.empty());
  CHECK(empty.data() == nullptr);
}

#else  // REVOX_GPU_TESTS

// CUDA tensor: allocation through the tracking allocator, fill kernel, copies, compared
// with the CPU. The device tensor is pre-filled with a different value than the expected
// result so an unwritten element shows.
#include <cstdio>

#include "cuda/cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/ops/cpu/fill.hpp"
#include "revox/ops/cuda/fill.cuh"

int main() {
  using revox::Shape5;
  using revox::Tensor;
  revox_cuda_test::require_gpu("cuda.test_tensor");
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
  return revox_cuda_test::finish("cuda.test_tensor");
}

#endif  // REVOX_GPU_TESTS
