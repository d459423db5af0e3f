// revox/core/memory.hpp — the tracking allocator: every byte a tensor or scratch buffer
// takes goes through one of these, one per device, so that current and peak memory are
// measured, never guessed.
//
// TrackingAllocator counts; the device supplies the raw allocate/free functions. Counters
// are updated under a mutex (allocations are per tensor, never per voxel, so the lock is
// cheap) and are exact: current_bytes() is the sum of the sizes of live allocations,
// peak_bytes() the maximum of current_bytes() since construction or the last reset_peak().
#pragma once

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>

#include "revox/core/error.hpp"

namespace revox {

struct MemoryStats {
  std::size_t current_bytes = 0;
  std::size_t peak_bytes = 0;
  std::size_t live_allocations = 0;
  std::size_t total_allocations = 0;  // since construction; never reset
};

class TrackingAllocator {
 public:
  using RawAllocate = void* (*)(std::size_t bytes);
  using RawFree = void (*)(void* ptr, std::size_t bytes);

  TrackingAllocator(const char* device_name, RawAllocate raw_allocate, RawFree raw_free)
      : device_name_(device_name), raw_allocate_(raw_allocate), raw_free_(raw_free) {}
  TrackingAllocator(const TrackingAllocator&) = delete;
  TrackingAllocator& operator=(const TrackingAllocator&) = delete;

  // Zero bytes gives nullptr and is not counted as an allocation.
  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* ptr = raw_allocate_(bytes);
    REVOX_CHECK(ptr != nullptr, device_name_, " allocator: out of memory allocating ", bytes,
                " bytes (", stats().current_bytes, " bytes already in use)");
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.current_bytes += bytes;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    ++stats_.live_allocations;
    ++stats_.total_allocations;
    return ptr;
  }

  // `bytes` must be the size passed to allocate(); tensors always know it.
  void deallocate(void* ptr, std::size_t bytes) noexcept {
    if (ptr == nullptr) return;
    raw_free_(ptr, bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.current_bytes -= bytes;
    --stats_.live_allocations;
  }

  MemoryStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  std::size_t current_bytes() const { return stats().current_bytes; }
  std::size_t peak_bytes() const { return stats().peak_bytes; }
  std::size_t live_allocations() const { return stats().live_allocations; }

  // Starts a new peak measurement from the memory in use now.
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes = stats_.current_bytes;
  }

  const char* device_name() const { return device_name_; }

 private:
  const char* device_name_;
  RawAllocate raw_allocate_;
  RawFree raw_free_;
  mutable std::mutex mutex_;
  MemoryStats stats_;
};

namespace detail {

// 64-byte alignment: one cache line, and a full AVX-512 vector.
inline constexpr std::size_t kCpuAlignment = 64;

inline void* cpu_raw_allocate(std::size_t bytes) {
  return ::operator new(bytes, std::align_val_t{kCpuAlignment}, std::nothrow);
}

inline void cpu_raw_free(void* ptr, std::size_t /*bytes*/) {
  ::operator delete(ptr, std::align_val_t{kCpuAlignment});
}

}  // namespace detail

// The process-wide allocator for host memory.
inline TrackingAllocator& cpu_allocator() {
  static TrackingAllocator allocator("CPU", detail::cpu_raw_allocate, detail::cpu_raw_free);
  return allocator;
}

}  // namespace revox
