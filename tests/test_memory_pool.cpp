// The caching pool of TrackingAllocator (AllocatorCaching::pool, what cuda_allocator() uses),
// driven by counting raw allocate/free functions: a repeated allocation sequence is served
// from the pool, in-use and reserved bytes are told apart, release_cached() and an
// out-of-memory retry give cached blocks back, and the non-caching (CPU) mode keeps
// reserved == in use.
#include <catch2/catch.hpp>

#include <cstddef>
#include <vector>

#include "revox/core/memory.hpp"

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
  CHECK(revox::cpu_allocator().caching() == false);
}
