#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/tensor.hpp"

namespace {
int raw_allocations = 0;
void* counting_allocate(std::size_t bytes) {
  ++raw_allocations;
  return ::operator new(bytes);
}
void counting_free(void* ptr, std::size_t) {
  --raw_allocations;
  ::operator delete(ptr);
}
void* failing_allocate(std::size_t) { return nullptr; }
}  // namespace

TEST_CASE("TrackingAllocator counts current, peak and live allocations exactly",
          "[core][memory]") {
  revox::TrackingAllocator allocator("test", counting_allocate, counting_free);
  CHECK(allocator.current_bytes() == 0);
  void* a = allocator.allocate(100);
  void* b = allocator.allocate(28);
  CHECK(allocator.current_bytes() == 128);
  CHECK(allocator.peak_bytes() == 128);
  CHECK(allocator.live_allocations() == 2);
  allocator.deallocate(a, 100);
  CHECK(allocator.current_bytes() == 28);
  CHECK(allocator.peak_bytes() == 128);
  void* c = allocator.allocate(50);
  CHECK(allocator.current_bytes() == 78);
  CHECK(allocator.peak_bytes() == 128);
  allocator.reset_peak();
  CHECK(allocator.peak_bytes() == 78);
  void* d = allocator.allocate(2);
  CHECK(allocator.peak_bytes() == 80);
  allocator.deallocate(d, 2);
  allocator.deallocate(c, 50);
  allocator.deallocate(b, 28);
  const auto stats = allocator.stats();
  CHECK(stats.current_bytes == 0);
  CHECK(stats.peak_bytes == 80);
  CHECK(stats.live_allocations == 0);
  CHECK(stats.total_allocations == 4);
  CHECK(raw_allocations == 0);
  // Zero bytes allocates nothing and is not counted.
  CHECK(allocator.allocate(0) == nullptr);
  CHECK(allocator.stats().total_allocations == 4);
}

TEST_CASE("TrackingAllocator reports out-of-memory with the device and the size",
          "[core][memory]") {
  revox::TrackingAllocator allocator("GPU-test", failing_allocate, counting_free);
  CHECK_THROWS_WITH(allocator.allocate(4096),
                    Catch::Contains("GPU-test allocator: out of memory allocating 4096 bytes"));
  CHECK(allocator.current_bytes() == 0);
  CHECK(allocator.live_allocations() == 0);
}

TEST_CASE("Every tensor goes through the CPU tracking allocator, 64-byte aligned",
          "[core][memory]") {
  auto& allocator = revox::cpu_allocator();
  const auto start = allocator.stats();
  allocator.reset_peak();
  {
    std::vector<revox::Tensor<double>> tensors;
    for (int i = 1; i <= 5; ++i) {
      tensors.emplace_back(revox::Shape5{1, i, 3, 3, 3});
      CHECK(reinterpret_cast<std::uintptr_t>(tensors.back().data()) % 64 == 0);
    }
    // 8 bytes * 27 * (1 + 2 + 3 + 4 + 5)
    CHECK(allocator.current_bytes() == start.current_bytes + 8 * 27 * 15);
    CHECK(allocator.live_allocations() == start.live_allocations + 5);
    tensors.erase(tensors.begin() + 4);
    CHECK(allocator.current_bytes() == start.current_bytes + 8 * 27 * 10);
  }
  CHECK(allocator.current_bytes() == start.current_bytes);
  CHECK(allocator.peak_bytes() == start.current_bytes + 8 * 27 * 15);
  CHECK(allocator.live_allocations() == start.live_allocations);
}
