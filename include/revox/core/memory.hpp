// revox/core/memory.hpp — the tracking allocator: every byte a tensor or scratch buffer
// takes goes through one of these, one per device, so that current and peak memory are
// measured, never guessed.
//
// TrackingAllocator counts; the device supplies the raw allocate/free functions. Counters
// are updated under a mutex (allocations are per tensor, never per voxel, so the lock is
// cheap) and are exact: current_bytes() is the sum of the sizes of live allocations,
// peak_bytes() the maximum of current_bytes() since construction or the last reset_peak().
//
// With AllocatorCaching::pool a freed block is kept in a free list keyed by its rounded size
// (pool_block_bytes) and handed out again by the next allocation of the same size class, so
// a training step that repeats the previous step's allocations calls the raw allocator only
// during the first one. The CUDA allocator pools every size (cudaMalloc is slow and
// synchronizes). The CPU allocator pools requests of kCpuPoolMinBytes and more: glibc serves
// smaller ones from its own free lists, but it maps every large block fresh from the kernel
// and unmaps it on free, so without the pool each step page-faults and zeroes its large
// intermediates again (measured: 20% of an MBConv-Base training step at 128^3). Requests
// below an allocator's pool_min_bytes bypass the pool in both directions (the size alone
// decides). A cache limit bounds the cached bytes: a freed block that would take them past
// it goes back to the raw allocator at once, so workloads whose shapes keep changing (e.g.
// predicting whole volumes of different sizes) do not accumulate blocks of every size.
// current/peak bytes still count the requested sizes of live allocations; reserved_bytes
// counts what is held from the raw allocator (blocks in use, rounded, plus cached free
// blocks). release_cached() returns the cached blocks to the raw allocator; so does an
// allocation that the raw allocator refuses, before it retries once. A pool bounded by its
// peak (set_bounded_by_peak(true); the CPU allocator's default) never holds more from the raw
// allocator than the blocks in use have ever needed at once (their rounded sizes, since
// construction): a miss that would take reserved_bytes past that mark first gives cached
// blocks back (the smallest one that covers the excess, else the largest, until it is
// covered). Without the bound, a step whose forward and backward free and request blocks of
// different sizes holds both sets: measured at the paper's MBConv-Base size, 6.4 GB in use
// but a 10.0 GB resident set with the 4 GiB cache (docs/results.md). The pool does not know
// about streams: a block freed while a kernel may still use it is safe to reuse only by work
// ordered after that kernel (revox runs every kernel of a device on one stream).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include <sys/mman.h>

#include "revox/core/error.hpp"

namespace revox {

struct MemoryStats {
  std::size_t current_bytes = 0;  // in use: the requested sizes of live allocations
  std::size_t peak_bytes = 0;
  std::size_t live_allocations = 0;
  std::size_t total_allocations = 0;  // since construction; never reset
  // The raw allocator's side. Without caching, reserved == current and raw_allocations ==
  // total_allocations.
  std::size_t reserved_bytes = 0;       // held from the raw allocator: in use + cached
  std::size_t peak_reserved_bytes = 0;  // reset by reset_peak() to the reserved bytes now
  std::size_t cached_bytes = 0;         // reserved but free, kept for reuse
  std::size_t raw_allocations = 0;      // raw allocate calls since construction; never reset
  std::size_t raw_frees = 0;            // raw free calls since construction; never reset
};

// What a quarantine (TrackingAllocator::begin_quarantine) saw: the blocks freed during it,
// and how many of them were written to after they were freed.
struct QuarantineReport {
  std::size_t blocks = 0;
  std::size_t bytes = 0;
  std::size_t written_after_free = 0;  // blocks whose poison pattern changed
};

// Whether freed blocks go back to the raw allocator at once or wait in a pool for reuse.
enum class AllocatorCaching { none, pool };

class TrackingAllocator {
 public:
  using RawAllocate = void* (*)(std::size_t bytes);
  using RawFree = void (*)(void* ptr, std::size_t bytes);

  static constexpr std::size_t kNoCacheLimit = static_cast<std::size_t>(-1);

  // With AllocatorCaching::pool: requests of fewer than pool_min_bytes bypass the pool, and
  // at most cache_limit bytes stay cached.
  TrackingAllocator(const char* device_name, RawAllocate raw_allocate, RawFree raw_free,
                    AllocatorCaching caching = AllocatorCaching::none,
                    std::size_t pool_min_bytes = 0, std::size_t cache_limit = kNoCacheLimit)
      : device_name_(device_name),
        raw_allocate_(raw_allocate),
        raw_free_(raw_free),
        caching_(caching == AllocatorCaching::pool),
        pool_min_bytes_(pool_min_bytes),
        cache_limit_(cache_limit) {}
  TrackingAllocator(const TrackingAllocator&) = delete;
  TrackingAllocator& operator=(const TrackingAllocator&) = delete;
  // Cached blocks go back to the raw allocator; live allocations must be gone by now.
  ~TrackingAllocator() { release_cached(); }

  // The size of the block the pool holds for a request of `bytes` (bytes > 0): a multiple of
  // 512 bytes and of 1/8 of the largest power of two <= bytes, so a block is at most 12.5%
  // (or 511 bytes) larger than the request and sizes that differ a little share a class.
  static std::size_t pool_block_bytes(std::size_t bytes) {
    constexpr std::size_t kMinimum = 512;
    if (bytes <= kMinimum) return kMinimum;
    std::size_t power = kMinimum;
    while (power <= bytes / 2) power *= 2;
    const std::size_t granularity = std::max(kMinimum, power / 8);
    return (bytes + granularity - 1) / granularity * granularity;
  }

  // Zero bytes gives nullptr and is not counted as an allocation.
  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    if (!pooled(bytes)) {
      // The raw allocation runs outside the lock, so threads allocate concurrently.
      void* ptr = raw_allocate_(bytes);
      if (ptr == nullptr) throw_out_of_memory(bytes);
      std::lock_guard<std::mutex> lock(mutex_);
      count_raw_allocation(bytes);
      count_allocation(bytes);
      return ptr;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    const std::size_t block = pool_block_bytes(bytes);
    void* ptr = take_cached(block);
    if (ptr == nullptr) {
      if (bounded_by_peak_) trim_cache_for(block);
      ptr = raw_allocate_(block);
      if (ptr == nullptr && stats_.cached_bytes > 0) {
        release_cached_locked();
        ptr = raw_allocate_(block);
      }
      if (ptr == nullptr) {
        lock.unlock();
        throw_out_of_memory(bytes);
      }
      count_raw_allocation(block);
    }
    count_allocation(bytes);
    return ptr;
  }

  // `bytes` must be the size passed to allocate(); tensors always know it.
  void deallocate(void* ptr, std::size_t bytes) noexcept {
    if (ptr == nullptr) return;
    if (quarantine_) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (quarantine_) {
        try {
          quarantined_.push_back({ptr, bytes});
          std::memset(ptr, kQuarantinePoison, bytes);
          count_deallocation(bytes);
          return;
        } catch (...) {
          // No memory for the bookkeeping: free the block normally.
        }
      }
    }
    release_block(ptr, bytes);
  }

  // Quarantine, for checking code that may use memory after freeing it (testing/gradcheck.hpp):
  // until end_quarantine(), freed blocks are counted as freed but neither reused nor given
  // back; their bytes are set to kQuarantinePoison (0xFF: a NaN in float and in double, so a
  // read of freed memory shows up as NaN instead of plausible numbers). end_quarantine()
  // checks that every block still holds the poison (a write after free changes it), then
  // releases them. For allocators of host-accessible memory only (the CPU's).
  static constexpr unsigned char kQuarantinePoison = 0xFF;
  void begin_quarantine() {
    std::lock_guard<std::mutex> lock(mutex_);
    REVOX_CHECK(!quarantine_, device_name_, " allocator: a quarantine is already running");
    quarantine_ = true;
  }
  QuarantineReport end_quarantine() noexcept {
    std::vector<std::pair<void*, std::size_t>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quarantine_ = false;
      blocks.swap(quarantined_);
    }
    QuarantineReport report;
    for (const auto& [ptr, bytes] : blocks) {
      ++report.blocks;
      report.bytes += bytes;
      const auto* p = static_cast<const unsigned char*>(ptr);
      bool intact = true;
      for (std::size_t i = 0; i < bytes && intact; ++i) intact = p[i] == kQuarantinePoison;
      if (!intact) ++report.written_after_free;
      release_block(ptr, bytes, /*counted=*/true);
    }
    return report;
  }

 private:
  // Gives a freed block back to the pool or the raw allocator (deallocate without counting
  // the deallocation when `counted`).
  void release_block(void* ptr, std::size_t bytes, bool counted = false) noexcept {
    if (!pooled(bytes)) {
      raw_free_(ptr, bytes);
      std::lock_guard<std::mutex> lock(mutex_);
      count_raw_free(bytes);
      if (!counted) count_deallocation(bytes);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (!counted) count_deallocation(bytes);
    const std::size_t block = pool_block_bytes(bytes);
    if (block > cache_limit_ || stats_.cached_bytes > cache_limit_ - block) {
      raw_free_(ptr, block);
      count_raw_free(block);
      return;
    }
    try {
      free_blocks_[block].push_back(ptr);
      stats_.cached_bytes += block;
    } catch (...) {
      // No memory for the free list's bookkeeping: give the block back instead.
      raw_free_(ptr, block);
      count_raw_free(block);
    }
  }

 public:
  // Sets the most bytes kept cached (0: none; blocks freed from then on go back at once) and
  // releases the cached blocks if they are more than that now.
  void set_cache_limit(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_limit_ = bytes;
    if (stats_.cached_bytes > cache_limit_) release_cached_locked();
  }
  std::size_t cache_limit() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_limit_;
  }
  std::size_t pool_min_bytes() const { return pool_min_bytes_; }

  // Bounds what the pool holds by the most its blocks in use have needed (see the top of this
  // file); off by default, on for the CPU allocator.
  void set_bounded_by_peak(bool bounded) {
    std::lock_guard<std::mutex> lock(mutex_);
    bounded_by_peak_ = bounded;
  }
  bool bounded_by_peak() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return bounded_by_peak_;
  }
  // The most bytes held for blocks in use at once (rounded pooled blocks plus unpooled
  // requests), since construction: what a pool bounded by its peak may hold.
  std::size_t in_use_high_water_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_high_water_;
  }

  // Returns every cached block to the raw allocator; gives the number of bytes released.
  std::size_t release_cached() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return release_cached_locked();
  }

  MemoryStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  std::size_t current_bytes() const { return stats().current_bytes; }
  std::size_t peak_bytes() const { return stats().peak_bytes; }
  std::size_t live_allocations() const { return stats().live_allocations; }
  std::size_t reserved_bytes() const { return stats().reserved_bytes; }
  std::size_t cached_bytes() const { return stats().cached_bytes; }
  std::size_t raw_allocations() const { return stats().raw_allocations; }

  // Starts a new peak measurement from the memory in use (and reserved) now.
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes = stats_.current_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }

  const char* device_name() const { return device_name_; }
  bool caching() const { return caching_; }

 private:
  [[noreturn]] void throw_out_of_memory(std::size_t bytes) const {
    const MemoryStats now = stats();
    throw Error(detail::concat(device_name_, " allocator: out of memory allocating ", bytes,
                               " bytes (", now.current_bytes, " bytes already in use, ",
                               now.reserved_bytes, " reserved)"));
  }

  // Whether a request of `bytes` goes through the pool; fixed by the size alone, so a block
  // is freed the way it was allocated.
  bool pooled(std::size_t bytes) const { return caching_ && bytes >= pool_min_bytes_; }

  // The rest are called with mutex_ held.
  void count_allocation(std::size_t bytes) {
    in_use_high_water_ =
        std::max(in_use_high_water_, stats_.reserved_bytes - stats_.cached_bytes);
    stats_.current_bytes += bytes;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    ++stats_.live_allocations;
    ++stats_.total_allocations;
  }
  void count_deallocation(std::size_t bytes) {
    stats_.current_bytes -= bytes;
    --stats_.live_allocations;
  }
  void count_raw_allocation(std::size_t block) {
    ++stats_.raw_allocations;
    stats_.reserved_bytes += block;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  }
  void count_raw_free(std::size_t block) {
    ++stats_.raw_frees;
    stats_.reserved_bytes -= block;
  }
  void* take_cached(std::size_t block) {
    const auto found = free_blocks_.find(block);
    if (found == free_blocks_.end() || found->second.empty()) return nullptr;
    void* ptr = found->second.back();
    found->second.pop_back();
    stats_.cached_bytes -= block;
    return ptr;
  }
  // A bounded pool's miss for `block`: gives back cached blocks until reserved_bytes + block
  // stays within the in-use high-water mark (raised by this block if it needs more).
  void trim_cache_for(std::size_t block) noexcept {
    const std::size_t in_use_after = stats_.reserved_bytes - stats_.cached_bytes + block;
    const std::size_t bound = std::max(in_use_high_water_, in_use_after);
    while (stats_.cached_bytes > 0 && stats_.reserved_bytes + block > bound) {
      const std::size_t excess = stats_.reserved_bytes + block - bound;
      // The smallest cached block that covers the excess, else the largest one.
      auto it = free_blocks_.lower_bound(excess);
      while (it != free_blocks_.end() && it->second.empty()) ++it;
      if (it == free_blocks_.end()) {
        auto last = free_blocks_.end();
        do {
          --last;
        } while (last->second.empty() && last != free_blocks_.begin());
        it = last;
      }
      if (it->second.empty()) break;  // (cached_bytes > 0 means some list is not empty)
      void* ptr = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= it->first;
      raw_free_(ptr, it->first);
      count_raw_free(it->first);
      if (it->second.empty()) free_blocks_.erase(it);
    }
  }
  std::size_t release_cached_locked() noexcept {
    const std::size_t released = stats_.cached_bytes;
    for (auto& [block, pointers] : free_blocks_) {
      for (void* ptr : pointers) {
        raw_free_(ptr, block);
        count_raw_free(block);
      }
    }
    free_blocks_.clear();
    stats_.cached_bytes = 0;
    return released;
  }

  const char* device_name_;
  RawAllocate raw_allocate_;
  RawFree raw_free_;
  bool caching_;
  std::size_t pool_min_bytes_;
  std::size_t cache_limit_;  // guarded by mutex_
  bool bounded_by_peak_ = false;   // guarded by mutex_
  std::size_t in_use_high_water_ = 0;  // guarded by mutex_; never reset
  mutable std::mutex mutex_;
  MemoryStats stats_;
  std::map<std::size_t, std::vector<void*>> free_blocks_;  // block size -> cached blocks
  std::atomic<bool> quarantine_{false};  // changed under mutex_
  std::vector<std::pair<void*, std::size_t>> quarantined_;  // guarded by mutex_
};

// Requests of at least this many bytes go through the CPU allocator's pool.
inline constexpr std::size_t kCpuPoolMinBytes = std::size_t{1} << 20;

namespace detail {

// 64-byte alignment: one cache line, and a full AVX-512 vector.
inline constexpr std::size_t kCpuAlignment = 64;

// Blocks of kCpuPoolMinBytes and more are mapped from the kernel directly and unmapped when
// the pool gives them back, so that what the pool releases leaves the process. Through
// glibc, a freed block below its mmap threshold (which grows to 32 MiB as large blocks are
// freed) stays in the heap: measured, a memory_table run of a few steps of different shapes
// held 5.7 GB of resident set for steps that each peaked under 2 GB. AddressSanitizer builds
// keep operator new, whose blocks it checks.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kCpuMapLargeBlocks = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kCpuMapLargeBlocks = false;
#else
inline constexpr bool kCpuMapLargeBlocks = true;
#endif
#else
inline constexpr bool kCpuMapLargeBlocks = true;
#endif

inline void* cpu_raw_allocate(std::size_t bytes) {
  if (kCpuMapLargeBlocks && bytes >= kCpuPoolMinBytes) {
    void* ptr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return ptr == MAP_FAILED ? nullptr : ptr;  // page-aligned: more than kCpuAlignment
  }
  return ::operator new(bytes, std::align_val_t{kCpuAlignment}, std::nothrow);
}

inline void cpu_raw_free(void* ptr, std::size_t bytes) {
  if (kCpuMapLargeBlocks && bytes >= kCpuPoolMinBytes) {
    ::munmap(ptr, bytes);
    return;
  }
  ::operator delete(ptr, std::align_val_t{kCpuAlignment});
}

}  // namespace detail
// The most bytes the CPU allocator keeps cached by default; set_cache_limit() changes it. 0
// in AddressSanitizer builds, where reusing freed blocks would hide use-after-free errors.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t kCpuDefaultCacheLimit = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr std::size_t kCpuDefaultCacheLimit = 0;
#else
inline constexpr std::size_t kCpuDefaultCacheLimit = std::size_t{4} << 30;
#endif
#else
inline constexpr std::size_t kCpuDefaultCacheLimit = std::size_t{4} << 30;
#endif

namespace detail {

// The CPU allocator's cache limit: REVOX_CPU_CACHE_MB (a whole number of MiB, 0 turns the
// pool off) when set, kCpuDefaultCacheLimit otherwise. A malformed value is an error.
inline std::size_t cpu_cache_limit_from_environment() {
  const char* text = std::getenv("REVOX_CPU_CACHE_MB");
  if (text == nullptr || *text == '\0') return kCpuDefaultCacheLimit;
  char* end = nullptr;
  errno = 0;
  const unsigned long long mib = std::strtoull(text, &end, 10);
  REVOX_CHECK(errno == 0 && end != text && *end == '\0' && text[0] != '-' &&
                  mib <= (static_cast<unsigned long long>(-1) >> 20),
              "REVOX_CPU_CACHE_MB must be a whole number of MiB (0 turns the CPU allocator's "
              "pool off), got '", text, "'");
  return static_cast<std::size_t>(mib) << 20;
}

}  // namespace detail

// The process-wide allocator for host memory: large blocks pooled (see the top of this file),
// at most kCpuDefaultCacheLimit bytes cached unless REVOX_CPU_CACHE_MB or set_cache_limit()
// says otherwise, and bounded by its peak (set_bounded_by_peak): the process holds about what
// the tracked peak says, not that plus the cache.
inline TrackingAllocator& cpu_allocator() {
  static TrackingAllocator& allocator = [] () -> TrackingAllocator& {
    static TrackingAllocator a("CPU", detail::cpu_raw_allocate, detail::cpu_raw_free,
                               AllocatorCaching::pool, kCpuPoolMinBytes,
                               detail::cpu_cache_limit_from_environment());
    a.set_bounded_by_peak(true);
    return a;
  }();
  return allocator;
}

}  // namespace revox
