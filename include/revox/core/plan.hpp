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
// kernels' per-thread scratch, the CPU allocator's pooled free blocks), and layers that read
// tensor data on the host or branch on it (their plan is wrong or crashes).
//
// The allocator and the record below are thread-local: each thread plans on its own, and a
// Tensor<T, Plan> must be freed on the thread that made it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>

#include "revox/core/device.hpp"
#include "revox/core/memory.hpp"
#include "revox/core/shape.hpp"

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
  std::uintptr_t next_address = 4096;  // the next fake address
};

namespace detail {

inline PlanRecord& plan_record() {
  static thread_local PlanRecord record;
  return record;
}

inline void* plan_raw_allocate(std::size_t bytes) {
  PlanRecord& r = plan_record();
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
}  // namespace revox
