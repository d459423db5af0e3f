// revox/core/plan.hpp — the planning device: runs layer code without memory or arithmetic and
// counts what the CPU backend would allocate through its tracking allocator.
//
// Plan is a device like Cpu and Cuda: a layer's forward and backward run on it unchanged
// (Tensor<T, Plan>, ops::*(Plan{}, ...)). Its allocator is a TrackingAllocator (no pool)
// whose raw allocate hands out fake, never dereferenced, non-overlapping addresses from a
// growing counter and counts the bytes; copy and zero do nothing (host_accessible is false,
// so Tensor::full and host reads of the data do not compile or must not run). Every op
// dispatcher in revox/ops/*.hpp has a Plan branch that does no arithmetic and allocates, and
// frees again, exactly the tracked scratch the CPU kernel allocates for the same shapes (the
// column chunk of conv3d's im2col path, GroupNorm's double sums). So running a layer on
// Plan allocates, byte for byte and in the same order, what the CPU run allocates through
// cpu_allocator(): the tracked peak of any composition of layers, with no real memory. The
// memory planner (revox/models/memory_planner.hpp) is built on this.
//
// What it does not see: memory outside the tracking allocator (std::vector bookkeeping, the
// kernels' per-thread scratch, the CPU allocator's pooled free blocks). A layer that computes
// on the host with its own loops must skip them on Plan (`if constexpr (!is_plan_v<Dev>)`
// around the arithmetic; its tensor allocations stay): the fake addresses lie in an address
// range reserved without access (PROT_NONE), so a read or write of tensor data faults, and
// PlanFaultGuard (used by the memory planner) turns that fault into a message saying so
// instead of a bare segmentation fault.
//
// The allocator and the record below are thread-local: each thread plans on its own, and a
// Tensor<T, Plan> must be freed on the thread that made it.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/memory.hpp"
#include "revox/core/shape.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define REVOX_PLAN_RESERVES_ADDRESSES 1
#endif

namespace revox {

// The planning device (see the top of this file).
struct Plan {};

template <class Device>
inline constexpr bool is_plan_v = std::is_same_v<std::decay_t<Device>, Plan>;

// What the Plan allocator has seen on this thread: the bytes in use and their peak (the same
// numbers as DeviceTraits<Plan>::allocator()'s stats), and where the peak was first reached.
struct PlanRecord {
  std::size_t current_bytes = 0;
  std::size_t peak_bytes = 0;
  std::string phase;        // set by the planner ("forward", "backward", ...)
  const char* label = nullptr;  // the op scratch being allocated now (nullptr: a tensor)
  const char* last_op = nullptr;  // the op that ran last in this phase, and its first view
  Shape5 last_op_shape{};
  std::string peak_at;  // see plan_raw_allocate
  std::uintptr_t next_address = 0;  // the next fake address (0: not started)
};

namespace detail {

// The address range Plan's fake addresses come from: reserved once per process without any
// access or memory (PROT_NONE, MAP_NORESERVE), so no real object can lie there and any touch
// faults. Without mmap (or if it fails) the addresses start at 4096 instead.
struct PlanAddressRange {
  std::uintptr_t base = 4096;
  std::uintptr_t size = 0;  // 0: nothing reserved
  bool contains(std::uintptr_t address) const {
    return size != 0 && address >= base && address - base < size;
  }
};

inline const PlanAddressRange& plan_address_range() {
  static const PlanAddressRange range = [] {
    PlanAddressRange r;
#ifdef REVOX_PLAN_RESERVES_ADDRESSES
    constexpr std::size_t kBytes = std::size_t{1} << 42;  // 4 TiB of addresses, no memory
    void* p = ::mmap(nullptr, kBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (p != MAP_FAILED) {
      r.base = reinterpret_cast<std::uintptr_t>(p);
      r.size = kBytes;
    }
#endif
    return r;
  }();
  return range;
}

inline PlanRecord& plan_record() {
  static thread_local PlanRecord record;
  return record;
}

inline void* plan_raw_allocate(std::size_t bytes) {
  PlanRecord& r = plan_record();
  if (r.next_address == 0) r.next_address = plan_address_range().base;
  void* ptr = reinterpret_cast<void*>(r.next_address);
  // 64-byte aligned like the CPU allocator's blocks, and never reused.
  r.next_address += (bytes + 63) / 64 * 64;
  r.current_bytes += bytes;
  if (r.current_bytes > r.peak_bytes) {
    // "<phase>: <bytes>-byte <op scratch label> of <op> on <shape>" for an op's scratch,
    // "<phase>: <bytes>-byte tensor allocated after <op> on <shape>" for a tensor.
    r.peak_bytes = r.current_bytes;
    std::ostringstream where;
    if (!r.phase.empty()) where << r.phase << ": ";
    where << bytes << "-byte ";
    if (r.label != nullptr) {
      where << r.label << " of " << r.last_op << " on " << r.last_op_shape;
    } else if (r.last_op != nullptr) {
      where << "tensor allocated after " << r.last_op << " on " << r.last_op_shape;
    } else {
      where << "tensor allocated before the first op of the phase";
    }
    r.peak_at = where.str();
  }
  return ptr;
}

inline void plan_raw_free(void* /*ptr*/, std::size_t bytes) {
  PlanRecord& r = plan_record();
  r.current_bytes -= bytes;
}

}  // namespace detail

template <>
struct DeviceTraits<Plan> {
  static TrackingAllocator& allocator() {
    static thread_local TrackingAllocator allocator("Plan", detail::plan_raw_allocate,
                                                    detail::plan_raw_free);
    return allocator;
  }
  static constexpr const char* name = "Plan";
  static constexpr bool host_accessible = false;
  static void copy(void* /*dst*/, const void* /*src*/, std::size_t /*bytes*/) {}
  static void zero(void* /*dst*/, std::size_t /*bytes*/) {}
};

// The current Plan record of this thread (mutable: the planner sets phase and resets peaks).
inline PlanRecord& plan_record() { return detail::plan_record(); }

// Starts a new peak measurement on this thread's Plan allocator from the bytes in use now.
inline void plan_reset_peak(const std::string& phase) {
  PlanRecord& r = plan_record();
  r.phase = phase;
  r.peak_bytes = r.current_bytes;
  r.last_op = nullptr;
  r.peak_at = phase + ": nothing allocated above the start";
  DeviceTraits<Plan>::allocator().reset_peak();
}

namespace detail {

// What every op's Plan branch calls first: names the op for peak_at.
inline void plan_op(const char* op, const Shape5& shape) {
  PlanRecord& r = plan_record();
  r.last_op = op;
  r.last_op_shape = shape;
}

// What an op's Plan branch calls for each tracked scratch buffer its CPU kernel allocates
// (and frees before returning): `bytes` allocated and freed again, labelled for peak_at.
inline void plan_scratch(std::size_t bytes, const char* label) {
  if (bytes == 0) return;
  TrackingAllocator& allocator = DeviceTraits<Plan>::allocator();
  PlanRecord& r = plan_record();
  const char* previous = r.label;
  r.label = label;
  void* ptr = allocator.allocate(bytes);
  r.label = previous;
  allocator.deallocate(ptr, bytes);
}

}  // namespace detail
#ifdef REVOX_PLAN_RESERVES_ADDRESSES
// While alive, a segmentation fault (or bus error) at one of Plan's fake addresses prints what
// happened and how to fix it, then aborts; any other fault goes to the handler that was
// installed before. The memory planner holds one while it runs a layer on Plan. Process-wide
// (signal dispositions are), nestable.
class PlanFaultGuard {
 public:
  PlanFaultGuard() {
    detail::plan_address_range();  // reserved before the handler can look at it
    if (depth()++ == 0) {
      struct sigaction action {};
      action.sa_sigaction = &PlanFaultGuard::handle;
      action.sa_flags = SA_SIGINFO;
      sigemptyset(&action.sa_mask);
      sigaction(SIGSEGV, &action, &previous(0));
      sigaction(SIGBUS, &action, &previous(1));
    }
  }
  PlanFaultGuard(const PlanFaultGuard&) = delete;
  PlanFaultGuard& operator=(const PlanFaultGuard&) = delete;
  ~PlanFaultGuard() {
    if (--depth() == 0) {
      sigaction(SIGSEGV, &previous(0), nullptr);
      sigaction(SIGBUS, &previous(1), nullptr);
    }
  }

 private:
  static int& depth() {
    static int d = 0;
    return d;
  }
  static struct sigaction& previous(int which) {
    static struct sigaction saved[2];
    return saved[which];
  }
  static void handle(int signal, siginfo_t* info, void* /*context*/) {
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    if (detail::plan_address_range().contains(address)) {
      static const char message[] =
          "revox: a layer read or wrote tensor data while its memory was being planned (the "
          "Plan device has no memory). A layer that computes on the host with its own loops "
          "must skip that arithmetic when is_plan_v<Dev> (keep its tensor allocations): see "
          "docs/guide.md, \"Planning memory for your own network\".\n";
      const ssize_t written = ::write(2, message, sizeof message - 1);
      (void)written;
      std::abort();
    }
    // Not ours: put the previous handler back; the faulting instruction runs again under it.
    sigaction(signal, &previous(signal == SIGSEGV ? 0 : 1), nullptr);
  }
};
#else
class PlanFaultGuard {};
#endif

}  // namespace revox
