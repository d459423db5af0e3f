// The caching pool of TrackingAllocator (AllocatorCaching::pool, what cuda_allocator() uses),
// driven by counting raw allocate/free functions: a repeated allocation sequence is served
// from the pool, in-use and reserved bytes are told apart, release_cached() and an
// out-of-memory retry give cached blocks back, small requests bypass the pool when the
// allocator has a pool minimum (the CPU allocator), the cache limit bounds the cached bytes,
// and the non-caching mode keeps reserved == in use.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/tensor.hpp"

namespace {

struct RawCounter {
  std::size_t live_blocks = 0;
  std::size_t live_bytes = 0;
  std::size_t limit = static_cast<std::size_t>(-1);  // raw bytes the "device" can hold
};
RawCounter raw;

void* limited_allocate(std::size_t bytes) {
  if (raw.live_bytes + bytes > raw.limit) return nullptr;
  ++raw.live_blocks;
  raw.live_bytes += bytes;
  return ::operator new(bytes);
}
void limited_free(void* ptr, std::size_t bytes) {
  --raw.live_blocks;
  raw.live_bytes -= bytes;
  ::operator delete(ptr);
}

// One "training step": the same sizes in the same order, all freed at the end.
std::vector<void*> step(revox::TrackingAllocator& allocator,
                        const std::vector<std::size_t>& sizes) {
  std::vector<void*> blocks;
  for (const std::size_t bytes : sizes) blocks.push_back(allocator.allocate(bytes));
  return blocks;
}
void release(revox::TrackingAllocator& allocator, const std::vector<void*>& blocks,
             const std::vector<std::size_t>& sizes) {
  for (std::size_t i = 0; i < blocks.size(); ++i) allocator.deallocate(blocks[i], sizes[i]);
}

}  // namespace

TEST_CASE("pool_block_bytes rounds up by at most 1/8 (or 511 bytes) in 512-byte steps",
          "[core][memory][pool]") {
  using revox::TrackingAllocator;
  std::size_t previous = 0;
  for (std::size_t bytes = 1; bytes < (std::size_t{1} << 26); bytes = bytes * 5 / 4 + 7) {
    const std::size_t block = TrackingAllocator::pool_block_bytes(bytes);
    CAPTURE(bytes, block);
    CHECK(block >= bytes);
    CHECK(block % 512 == 0);
    CHECK((block - bytes < 512 || block - bytes <= bytes / 8));
    CHECK(block >= previous);  // monotone: a larger request never gets a smaller block
    previous = block;
  }
  // Requests that differ a little share a size class.
  CHECK(TrackingAllocator::pool_block_bytes(1000000) ==
        TrackingAllocator::pool_block_bytes(1000100));
}

TEST_CASE("A caching TrackingAllocator serves a repeated allocation sequence from its pool",
          "[core][memory][pool]") {
  raw = RawCounter{};
  {
    revox::TrackingAllocator allocator("pool-test", limited_allocate, limited_free,
                                       revox::AllocatorCaching::pool);
    CHECK(allocator.caching());
    const std::vector<std::size_t> sizes = {1000, 5000, 1000, std::size_t{3} << 20, 100, 5000};
    std::size_t requested = 0;
    std::size_t rounded = 0;
    for (const std::size_t bytes : sizes) {
      requested += bytes;
      rounded += revox::TrackingAllocator::pool_block_bytes(bytes);
    }

    auto blocks = step(allocator, sizes);
    auto stats = allocator.stats();
    CHECK(stats.current_bytes == requested);
    CHECK(stats.reserved_bytes == rounded);
    CHECK(stats.cached_bytes == 0);
    CHECK(stats.raw_allocations == sizes.size());
    CHECK(raw.live_blocks == sizes.size());
    release(allocator, blocks, sizes);
    stats = allocator.stats();
    CHECK(stats.current_bytes == 0);
    CHECK(stats.live_allocations == 0);
    CHECK(stats.reserved_bytes == rounded);
    CHECK(stats.cached_bytes == rounded);
    CHECK(stats.raw_frees == 0);
    CHECK(raw.live_blocks == sizes.size());  // nothing went back to the raw allocator

    // The second and third steps allocate nothing new.
    for (int repeat = 0; repeat < 2; ++repeat) {
      blocks = step(allocator, sizes);
      CHECK(allocator.raw_allocations() == sizes.size());
      CHECK(allocator.current_bytes() == requested);
      CHECK(allocator.cached_bytes() == 0);
      release(allocator, blocks, sizes);
    }
    stats = allocator.stats();
    CHECK(stats.total_allocations == 3 * sizes.size());
    CHECK(stats.peak_bytes == requested);
    CHECK(stats.peak_reserved_bytes == rounded);

    // A size of a new class takes a new block; the cached ones stay.
    void* other = allocator.allocate(70000);
    CHECK(allocator.raw_allocations() == sizes.size() + 1);
    allocator.deallocate(other, 70000);

    const std::size_t cached = allocator.cached_bytes();
    CHECK(allocator.release_cached() == cached);
    stats = allocator.stats();
    CHECK(stats.cached_bytes == 0);
    CHECK(stats.reserved_bytes == 0);
    CHECK(stats.raw_frees == sizes.size() + 1);
    CHECK(raw.live_blocks == 0);
    CHECK(raw.live_bytes == 0);

    // Blocks cached when the allocator goes away are given back by its destructor.
    allocator.deallocate(allocator.allocate(4096), 4096);
    CHECK(raw.live_blocks == 1);
  }
  CHECK(raw.live_blocks == 0);
}

TEST_CASE("A caching TrackingAllocator gives cached blocks back before reporting out of memory",
          "[core][memory][pool]") {
  raw = RawCounter{};
  raw.limit = 10000;
  revox::TrackingAllocator allocator("pool-test", limited_allocate, limited_free,
                                     revox::AllocatorCaching::pool);
  void* a = allocator.allocate(6000);  // a 6144-byte block
  allocator.deallocate(a, 6000);
  CHECK(allocator.cached_bytes() == 6144);
  // 7000 bytes (a 7168-byte block) fit only once the cached block is released.
  void* b = allocator.allocate(7000);
  CHECK(b != nullptr);
  CHECK(allocator.cached_bytes() == 0);
  CHECK(allocator.reserved_bytes() == 7168);
  CHECK(allocator.stats().raw_frees == 1);
  // More than the device holds still fails, naming the sizes.
  CHECK_THROWS_WITH(allocator.allocate(5000),
                    Catch::Contains("pool-test allocator: out of memory allocating 5000 bytes") &&
                        Catch::Contains("7000 bytes already in use, 7168 reserved"));
  allocator.deallocate(b, 7000);
  CHECK(allocator.current_bytes() == 0);
}

TEST_CASE("A non-caching TrackingAllocator frees at once: reserved equals in use",
          "[core][memory][pool]") {
  raw = RawCounter{};
  revox::TrackingAllocator allocator("plain-test", limited_allocate, limited_free);
  CHECK_FALSE(allocator.caching());
  const std::vector<std::size_t> sizes = {1000, 5000, 3};
  for (int repeat = 0; repeat < 2; ++repeat) {
    const auto blocks = step(allocator, sizes);
    CHECK(allocator.reserved_bytes() == allocator.current_bytes());
    CHECK(raw.live_bytes == 6003);  // exact sizes, no rounding
    release(allocator, blocks, sizes);
    CHECK(raw.live_blocks == 0);
  }
  const auto stats = allocator.stats();
  CHECK(stats.raw_allocations == stats.total_allocations);
  CHECK(stats.raw_frees == 6);
  CHECK(stats.cached_bytes == 0);
  CHECK(allocator.release_cached() == 0);
}

TEST_CASE("A pool minimum sends small requests straight to the raw allocator",
          "[core][memory][pool]") {
  raw = RawCounter{};
  revox::TrackingAllocator allocator("min-test", limited_allocate, limited_free,
                                     revox::AllocatorCaching::pool, 4096);
  CHECK(allocator.pool_min_bytes() == 4096);
  const std::vector<std::size_t> sizes = {4095, 4096, 100, 10000};
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto blocks = step(allocator, sizes);
    // Small requests at their exact size, pooled ones rounded: 4095 + 100 + 4096 + 10240.
    CHECK(raw.live_bytes == 4095 + 100 + 4096 + 10240);
    CHECK(allocator.current_bytes() == 4095 + 4096 + 100 + 10000);
    release(allocator, blocks, sizes);
    // The small blocks went back at once, the two pooled ones wait for reuse.
    CHECK(raw.live_blocks == 2);
    CHECK(allocator.cached_bytes() == 4096 + 10240);
  }
  const auto stats = allocator.stats();
  // Small blocks: a raw call every time (2 x 3); pooled ones: only the first time (2).
  CHECK(stats.raw_allocations == 8);
  CHECK(stats.raw_frees == 6);
  CHECK(stats.total_allocations == 12);
}

TEST_CASE("The cache limit bounds the cached bytes, set_cache_limit trims at once",
          "[core][memory][pool]") {
  raw = RawCounter{};
  revox::TrackingAllocator allocator("limit-test", limited_allocate, limited_free,
                                     revox::AllocatorCaching::pool, 0, 3072);
  CHECK(allocator.cache_limit() == 3072);
  void* a = allocator.allocate(1024);
  void* b = allocator.allocate(2048);
  void* c = allocator.allocate(1536);
  allocator.deallocate(a, 1024);
  allocator.deallocate(b, 2048);
  CHECK(allocator.cached_bytes() == 3072);  // exactly at the limit
  allocator.deallocate(c, 1536);            // past it: given back at once
  CHECK(allocator.cached_bytes() == 3072);
  CHECK(raw.live_blocks == 2);
  CHECK(allocator.reserved_bytes() == 3072);
  // A freed block larger than the whole limit is never cached.
  void* big = allocator.allocate(8192);
  CHECK(allocator.cached_bytes() == 3072);
  allocator.deallocate(big, 8192);
  CHECK(allocator.cached_bytes() == 3072);
  CHECK(raw.live_blocks == 2);
  // Lowering the limit below what is cached releases it; 0 turns caching off.
  allocator.set_cache_limit(0);
  CHECK(allocator.cached_bytes() == 0);
  CHECK(raw.live_blocks == 0);
  void* d = allocator.allocate(1024);
  allocator.deallocate(d, 1024);
  CHECK(raw.live_blocks == 0);
  CHECK(allocator.current_bytes() == 0);
  CHECK(allocator.reserved_bytes() == 0);
}

TEST_CASE("A pool bounded by its peak gives cached blocks back instead of growing",
          "[core][memory][pool]") {
  raw = RawCounter{};
  revox::TrackingAllocator allocator("bounded-test", limited_allocate, limited_free,
                                     revox::AllocatorCaching::pool, 0);
  CHECK_FALSE(allocator.bounded_by_peak());  // off unless asked
  allocator.set_bounded_by_peak(true);
  CHECK(allocator.bounded_by_peak());
  void* a = allocator.allocate(4096);
  void* b = allocator.allocate(8192);
  CHECK(allocator.in_use_high_water_bytes() == 12288);
  allocator.deallocate(a, 4096);
  allocator.deallocate(b, 8192);
  CHECK(allocator.cached_bytes() == 12288);
  CHECK(allocator.reserved_bytes() == 12288);
  // A hit takes no new memory.
  a = allocator.allocate(4096);
  CHECK(allocator.raw_allocations() == 2);
  allocator.deallocate(a, 4096);
  // A miss of 16384: the in-use mark becomes 16384, so both cached blocks (12288) must go
  // first: neither alone covers the 12288-byte excess, the largest goes, then the other.
  void* c = allocator.allocate(16384);
  CHECK(allocator.stats().raw_frees == 2);
  CHECK(allocator.cached_bytes() == 0);
  CHECK(allocator.reserved_bytes() == 16384);
  CHECK(allocator.in_use_high_water_bytes() == 16384);
  allocator.deallocate(c, 16384);
  // A miss of 4096 beside the cached 16384 block would hold 20480 > 16384: that block (the
  // smallest that covers the 4096-byte excess) goes back; then 8192 fits within the mark.
  a = allocator.allocate(4096);
  CHECK(allocator.reserved_bytes() == 4096);
  b = allocator.allocate(8192);
  CHECK(allocator.reserved_bytes() == 12288);
  allocator.deallocate(a, 4096);
  allocator.deallocate(b, 8192);
  // Reserved never exceeded the most that was in use at once.
  CHECK(allocator.stats().peak_reserved_bytes <= allocator.in_use_high_water_bytes());
  CHECK(allocator.current_bytes() == 0);
  CHECK(allocator.release_cached() == 12288);
  CHECK(raw.live_blocks == 0);
}

TEST_CASE("A bounded pool serves a repeated step from its pool when the sizes line up",
          "[core][memory][pool]") {
  raw = RawCounter{};
  revox::TrackingAllocator allocator("bounded-repeat", limited_allocate, limited_free,
                                     revox::AllocatorCaching::pool, 0);
  allocator.set_bounded_by_peak(true);
  const std::vector<std::size_t> sizes = {1 << 20, 3 << 20, 1 << 20, 5000};
  for (int repeat = 0; repeat < 3; ++repeat) {
    auto blocks = step(allocator, sizes);
    release(allocator, blocks, sizes);
  }
  CHECK(allocator.raw_allocations() == sizes.size());  // only the first step's
  CHECK(allocator.stats().peak_reserved_bytes == allocator.in_use_high_water_bytes());
}

TEST_CASE("The CPU allocator pools large tensors: a repeated step maps no new memory",
          "[core][memory][pool]") {
  revox::TrackingAllocator& cpu = revox::cpu_allocator();
  CHECK(cpu.caching());
  CHECK(cpu.pool_min_bytes() == revox::kCpuPoolMinBytes);
  if (cpu.cache_limit() == 0) {
    // AddressSanitizer build: freed blocks must not be reused, so nothing is cached.
    const std::size_t before = cpu.raw_allocations();
    { revox::Tensor<float> t(revox::Shape5{1, 1, 64, 64, 64}); }
    CHECK(cpu.raw_allocations() == before + 1);
    CHECK(cpu.cached_bytes() == 0);
    return;
  }
  CHECK(cpu.cache_limit() == revox::kCpuDefaultCacheLimit);
  CHECK(cpu.bounded_by_peak());
  const revox::Shape5 big{1, 3, 64, 64, 64};  // 3 MiB: pooled
  const revox::Shape5 small{1, 1, 8, 8, 8};   // 2 KiB: glibc's
  auto step_once = [&] {
    revox::Tensor<float> a(big);
    revox::Tensor<float> b(big);
    revox::Tensor<float> s(small);
    a[0] = b[0] = s[0] = 1.0f;
  };
  step_once();
  const std::size_t raw_before = cpu.raw_allocations();
  const std::size_t total_before = cpu.stats().total_allocations;
  step_once();
  // Only the small tensor called the raw allocator again; the two large ones were reused.
  CHECK(cpu.stats().total_allocations == total_before + 3);
  CHECK(cpu.raw_allocations() == raw_before + 1);
  CHECK(cpu.cached_bytes() >= 2 * revox::TrackingAllocator::pool_block_bytes(3 << 20));
}

TEST_CASE("REVOX_CPU_CACHE_MB sets the CPU allocator's cache limit, bad values are refused",
          "[core][memory][pool]") {
  using revox::detail::cpu_cache_limit_from_environment;
  const char* saved = std::getenv("REVOX_CPU_CACHE_MB");
  const std::string saved_value = saved != nullptr ? saved : "";
  ::unsetenv("REVOX_CPU_CACHE_MB");
  CHECK(cpu_cache_limit_from_environment() == revox::kCpuDefaultCacheLimit);
  ::setenv("REVOX_CPU_CACHE_MB", "16", 1);
  CHECK(cpu_cache_limit_from_environment() == (std::size_t{16} << 20));
  ::setenv("REVOX_CPU_CACHE_MB", "0", 1);
  CHECK(cpu_cache_limit_from_environment() == 0);
  for (const char* bad : {"abc", "12x", "-5", "1.5", "99999999999999999999"}) {
    ::setenv("REVOX_CPU_CACHE_MB", bad, 1);
    CHECK_THROWS_WITH(cpu_cache_limit_from_environment(),
                      Catch::Contains("REVOX_CPU_CACHE_MB must be a whole number of MiB") &&
                          Catch::Contains(bad));
  }
  if (saved != nullptr) {
    ::setenv("REVOX_CPU_CACHE_MB", saved_value.c_str(), 1);
  } else {
    ::unsetenv("REVOX_CPU_CACHE_MB");
  }
}
