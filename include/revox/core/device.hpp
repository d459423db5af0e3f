// revox/core/device.hpp — the CPU device and the device traits every device provides.
//
// A device is a small value passed explicitly to every op and layer (`Cpu{}`, or the
// `Cuda` of revox/core/cuda.hpp). Layers dispatch on its type with `if constexpr`; a
// device type D provides, through DeviceTraits<D>:
//   static TrackingAllocator& allocator();   where its memory comes from
//   static constexpr const char* name;       for messages
//   static constexpr bool host_accessible;   whether the CPU may dereference its pointers
//   static void copy(void* dst, const void* src, std::size_t bytes);   within the device
//   static void zero(void* dst, std::size_t bytes);
//   static void copy_to_host(void* host_dst, const void* dev_src, std::size_t bytes);
//   static void copy_from_host(void* dev_dst, const void* host_src, std::size_t bytes);
//   static void copy_to_host(const D& dev, void* host_dst, const void* dev_src, bytes);
//   static void copy_from_host(const D& dev, void* dev_dst, const void* host_src, bytes);
// Host <-> device copies: the data is on the host when copy_to_host returns, and the host
// buffer may be reused when copy_from_host returns; the forms with `dev` are ordered on its
// queue (a Cuda's stream), the others synchronous. revox/core/transfer.hpp builds to_host
// and to_device for tensors on them.
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "revox/core/memory.hpp"

namespace revox {

// The NVIDIA GPU device, defined in revox/core/cuda.hpp (which needs the CUDA runtime).
struct Cuda;

// The host. Ops run with OpenMP over the threads set by OMP_NUM_THREADS /
// omp_set_num_threads.
struct Cpu {};

template <class Device>
struct DeviceTraits;

template <>
struct DeviceTraits<Cpu> {
  static TrackingAllocator& allocator() { return cpu_allocator(); }
  static constexpr const char* name = "CPU";
  static constexpr bool host_accessible = true;
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes != 0) std::memcpy(dst, src, bytes);
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes != 0) std::memset(dst, 0, bytes);
  }
  static void copy_to_host(void* host_dst, const void* dev_src, std::size_t bytes) {
    copy(host_dst, dev_src, bytes);
  }
  static void copy_from_host(void* dev_dst, const void* host_src, std::size_t bytes) {
    copy(dev_dst, host_src, bytes);
  }
  static void copy_to_host(const Cpu&, void* host_dst, const void* dev_src, std::size_t bytes) {
    copy(host_dst, dev_src, bytes);
  }
  static void copy_from_host(const Cpu&, void* dev_dst, const void* host_src,
                             std::size_t bytes) {
    copy(dev_dst, host_src, bytes);
  }
};

template <class Device>
inline constexpr bool is_cpu_v = std::is_same_v<std::decay_t<Device>, Cpu>;
template <class Device>
inline constexpr bool is_cuda_v = std::is_same_v<std::decay_t<Device>, Cuda>;

namespace detail {
template <class>
inline constexpr bool always_false_v = false;
}  // namespace detail

}  // namespace revox
