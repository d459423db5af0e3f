// revox/core/cuda.hpp — the CUDA device: a stream, the device's tracking allocator,
// host<->device copies, and the error check used after every CUDA API call.
//
// Needs the CUDA runtime headers and library (CUDA::cudart); a CPU-only build never
// includes it. Every CUDA error throws revox::Error naming the call, the file and the line.
// cuda_device_count() returns 0 instead of failing on a machine without a GPU or driver, so
// a CUDA-enabled binary can start there and fall back to the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

#define REVOX_CUDA_CHECK(call)                                                       \
  do {                                                                               \
    const cudaError_t revox_status_ = (call);                                        \
    if (revox_status_ != cudaSuccess) {                                              \
      throw ::revox::Error(::revox::detail::concat(                                  \
          "CUDA error '", cudaGetErrorString(revox_status_), "' (",                   \
          static_cast<int>(revox_status_), ") from ", #call, " at ", __FILE__, ":",   \
          __LINE__));                                                                \
    }                                                                                \
  } while (false)

// After a kernel launch: reports launch-configuration errors at the launch site.
#define REVOX_CUDA_CHECK_LAUNCH() REVOX_CUDA_CHECK(cudaGetLastError())

namespace revox {

// A GPU and the stream revox's kernels run on. Stream 0 is the legacy default stream.
struct Cuda {
  cudaStream_t stream = nullptr;
};

// Number of usable GPUs; 0 when there is no GPU or no driver.
inline int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

namespace detail {

inline void* cuda_raw_allocate(std::size_t bytes) {
  void* ptr = nullptr;
  if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return ptr;
}

inline void cuda_raw_free(void* ptr, std::size_t /*bytes*/) { (void)cudaFree(ptr); }

}  // namespace detail

// The process-wide allocator for memory on the current GPU.
inline TrackingAllocator& cuda_allocator() {
  static TrackingAllocator allocator("CUDA", detail::cuda_raw_allocate, detail::cuda_raw_free);
  return allocator;
}

template <>
struct DeviceTraits<Cuda> {
  static TrackingAllocator& allocator() { return cuda_allocator(); }
  static constexpr const char* name = "CUDA";
  static constexpr bool host_accessible = false;
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes != 0) REVOX_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes != 0) REVOX_CUDA_CHECK(cudaMemset(dst, 0, bytes));
  }
};

template <class T>
Tensor<T, Cuda> to_device(const Tensor<T, Cpu>& host) {
  Tensor<T, Cuda> device(host.shape());
  if (host.bytes() != 0) {
    REVOX_CUDA_CHECK(
        cudaMemcpy(device.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice));
  }
  return device;
}

template <class T>
Tensor<T, Cpu> to_host(const Tensor<T, Cuda>& device) {
  Tensor<T, Cpu> host(device.shape());
  if (device.bytes() != 0) {
    REVOX_CUDA_CHECK(
        cudaMemcpy(host.data(), device.data(), device.bytes(), cudaMemcpyDeviceToHost));
  }
  return host;
}

}  // namespace revox
