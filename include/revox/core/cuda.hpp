// revox/core/cuda.hpp — the CUDA device: a stream and a cuBLAS handle (the `Cuda` value ops
// take), the CudaContext that owns them, the device's caching tracking allocator,
// host<->device copies, and the error checks used after every CUDA and cuBLAS call.
//
// Needs the CUDA runtime and cuBLAS headers (CMake: CUDA::cudart, plus CUDA::cublas where a
// CudaContext is created or a cuBLAS-backed op runs); a CPU-only build never includes it.
// Every CUDA or cuBLAS error throws revox::Error naming the call, the file and the line.
// cuda_device_count() returns 0 instead of failing on a machine without a GPU or driver, so
// a CUDA-enabled binary can start there and fall back to the CPU.
//
//   revox::CudaContext ctx(0);          // GPU 0: a stream, a cuBLAS handle bound to it
//   const revox::Cuda dev = ctx.device();
//   auto x = revox::to_device(dev, host_tensor);   // cudaMemcpyAsync on dev.stream
//   revox::ops::conv3d_forward(dev, ...);          // kernels and cuBLAS on dev.stream
//   auto y = revox::to_host(dev, y_device);        // waits for dev.stream
//
// Memory: cuda_allocator() pools freed blocks (AllocatorCaching::pool in core/memory.hpp),
// so after the first training step the same sequence of tensor allocations is served from
// the pool without cudaMalloc or cudaFree. Its stats() tell bytes in use (current_bytes)
// from bytes held on the GPU (reserved_bytes) and count the cudaMalloc calls
// (raw_allocations); release_cached() gives the cached blocks back. The pool serves one GPU:
// a process drives one GPU at a time (CudaContexts for two different GPUs may not be alive
// together), and the last CudaContext to go releases the cached blocks.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/core/transfer.hpp"

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

#define REVOX_CUBLAS_CHECK(call)                                                     \
  do {                                                                               \
    const cublasStatus_t revox_status_ = (call);                                     \
    if (revox_status_ != CUBLAS_STATUS_SUCCESS) {                                    \
      throw ::revox::Error(::revox::detail::concat(                                  \
          "cuBLAS error '", cublasGetStatusString(revox_status_), "' (",              \
          static_cast<int>(revox_status_), ") from ", #call, " at ", __FILE__, ":",   \
          __LINE__));                                                                \
    }                                                                                \
  } while (false)

namespace revox {

// The device value every CUDA op takes: the stream revox's kernels and cuBLAS calls run on,
// and a cuBLAS handle bound to that stream. Small and copyable; it owns nothing (CudaContext
// does). Cuda{} is the legacy default stream without a cuBLAS handle: enough for the
// hand-written kernels, while the cuBLAS-backed ops (pointwise and dense convolutions)
// require a handle and say so.
struct Cuda {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
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

// Errors are dropped: a free may run during process exit, after the runtime has unloaded.
inline void cuda_raw_free(void* ptr, std::size_t /*bytes*/) {
  if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace detail

// The process-wide allocator for memory on the GPU in use, with a caching pool.
inline TrackingAllocator& cuda_allocator() {
  static TrackingAllocator allocator("CUDA", detail::cuda_raw_allocate, detail::cuda_raw_free,
                                     AllocatorCaching::pool);
  return allocator;
}

template <>
struct DeviceTraits<Cuda> {
  static TrackingAllocator& allocator() { return cuda_allocator(); }
  static constexpr const char* name = "CUDA";
  static constexpr bool host_accessible = false;
  // On the legacy default stream, which waits for (and is waited for by) the blocking
  // streams a CudaContext creates.
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes != 0) REVOX_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes != 0) REVOX_CUDA_CHECK(cudaMemset(dst, 0, bytes));
  }
  // cudaMemcpy: returns when the data is on the host (device -> host), or once the host
  // buffer may be reused (host -> device, pageable memory), ordered after the work queued
  // on the blocking streams.
  static void copy_to_host(void* host_dst, const void* dev_src, std::size_t bytes) {
    if (bytes != 0) {
      REVOX_CUDA_CHECK(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost));
    }
  }
  static void copy_from_host(void* dev_dst, const void* host_src, std::size_t bytes) {
    if (bytes != 0) {
      REVOX_CUDA_CHECK(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice));
    }
  }
  // On dev's stream (see "copies on dev's stream" below): the copy to the host waits for the
  // stream, the copy from the host does not.
  static void copy_to_host(const Cuda& dev, void* host_dst, const void* dev_src,
                           std::size_t bytes) {
    if (bytes == 0) return;
    REVOX_CUDA_CHECK(
        cudaMemcpyAsync(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost, dev.stream));
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
  }
  static void copy_from_host(const Cuda& dev, void* dev_dst, const void* host_src,
                             std::size_t bytes) {
    if (bytes != 0) {
      REVOX_CUDA_CHECK(
          cudaMemcpyAsync(dev_dst, host_src, bytes, cudaMemcpyHostToDevice, dev.stream));
    }
  }
};

// Owns what a Cuda value refers to: selects GPU `gpu_index` (cudaSetDevice), creates a
// blocking stream and a cuBLAS handle bound to it with a workspace from cuda_allocator()
// (so cuBLAS allocates no memory of its own while it runs), in cuBLAS's default math mode
// (FP32 GEMMs in FP32, no TF32). Not copyable or movable: hand out device() instead. The
// destructor waits for the stream and frees everything; the last context alive also
// releases the allocator's cached blocks.
class CudaContext {
 public:
  // cuBLAS's recommended workspace for Hopper (enough for every earlier architecture).
  static constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

  explicit CudaContext(int gpu_index = 0) : gpu_index_(gpu_index) {
    const int count = cuda_device_count();
    REVOX_CHECK(gpu_index >= 0 && gpu_index < count, "CudaContext: GPU index ", gpu_index,
                " requested, but this machine has ", count,
                " usable CUDA device(s) (0: no GPU or no driver)");
    register_context(gpu_index);
    try {
      REVOX_CUDA_CHECK(cudaSetDevice(gpu_index));
      REVOX_CUDA_CHECK(cudaStreamCreateWithFlags(&device_.stream, cudaStreamDefault));
      REVOX_CUBLAS_CHECK(cublasCreate(&device_.cublas));
      REVOX_CUBLAS_CHECK(cublasSetStream(device_.cublas, device_.stream));
      REVOX_CUBLAS_CHECK(cublasSetMathMode(device_.cublas, CUBLAS_DEFAULT_MATH));
      REVOX_CUBLAS_CHECK(cublasSetPointerMode(device_.cublas, CUBLAS_POINTER_MODE_HOST));
      workspace_ = Tensor<unsigned char, Cuda>(flat_shape(kCublasWorkspaceBytes));
      REVOX_CUBLAS_CHECK(
          cublasSetWorkspace(device_.cublas, workspace_.data(), kCublasWorkspaceBytes));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~CudaContext() { destroy(); }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  // The value to pass to ops; valid while this context is alive.
  Cuda device() const { return device_; }
  int gpu_index() const { return gpu_index_; }
  // Waits until everything queued on the stream has finished.
  void synchronize() const { REVOX_CUDA_CHECK(cudaStreamSynchronize(device_.stream)); }

 private:
  struct Registry {
    std::mutex mutex;
    int alive = 0;
    int gpu = -1;
  };
  static Registry& registry() {
    static Registry instance;
    return instance;
  }
  static void register_context(int gpu_index) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    REVOX_CHECK(r.alive == 0 || r.gpu == gpu_index, "CudaContext: a context for GPU ", r.gpu,
                " is alive; revox drives one GPU per process (one process per GPU), so a "
                "context for GPU ", gpu_index, " cannot be created next to it");
    ++r.alive;
    r.gpu = gpu_index;
  }

  // Safe on a partly constructed context; never throws.
  void destroy() noexcept {
    if (device_.stream != nullptr && cudaStreamSynchronize(device_.stream) != cudaSuccess) {
      (void)cudaGetLastError();
    }
    if (device_.cublas != nullptr) (void)cublasDestroy(device_.cublas);
    device_.cublas = nullptr;
    workspace_ = Tensor<unsigned char, Cuda>();
    if (device_.stream != nullptr && cudaStreamDestroy(device_.stream) != cudaSuccess) {
      (void)cudaGetLastError();
    }
    device_.stream = nullptr;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (--r.alive == 0) {
      r.gpu = -1;
      cuda_allocator().release_cached();
    }
  }

  int gpu_index_;
  Cuda device_{};
  Tensor<unsigned char, Cuda> workspace_;
};

// Waits until everything queued on dev's stream has finished.
inline void synchronize(const Cuda& dev) { REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream)); }

// ---- copies on dev's stream ----------------------------------------------------------------
// Host memory revox allocates is pageable: a host-to-device copy from it returns once the
// source has been staged, so the host buffer may be reused at once (for pinned host memory,
// synchronize(dev) first). Device-to-host copies wait for the stream, because the host
// reads the data next.

template <class T>
void copy_to_device(const Cuda& dev, T* device_dst, const T* host_src, index_t count) {
  REVOX_CHECK(count >= 0, "copy_to_device: count must be non-negative, got ", count);
  DeviceTraits<Cuda>::copy_from_host(dev, device_dst, host_src,
                                     static_cast<std::size_t>(count) * sizeof(T));
}

template <class T>
void copy_to_host(const Cuda& dev, T* host_dst, const T* device_src, index_t count) {
  REVOX_CHECK(count >= 0, "copy_to_host: count must be non-negative, got ", count);
  DeviceTraits<Cuda>::copy_to_host(dev, host_dst, device_src,
                                   static_cast<std::size_t>(count) * sizeof(T));
}

// Asynchronous, ordered on dev's stream.
template <class T>
void copy_on_device(const Cuda& dev, T* device_dst, const T* device_src, index_t count) {
  REVOX_CHECK(count >= 0, "copy_on_device: count must be non-negative, got ", count);
  if (count == 0) return;
  REVOX_CUDA_CHECK(cudaMemcpyAsync(device_dst, device_src,
                                   static_cast<std::size_t>(count) * sizeof(T),
                                   cudaMemcpyDeviceToDevice, dev.stream));
}

// Tensors: to_host(dev, t) and to_device(dev, host) of revox/core/transfer.hpp on dev's
// stream; to_host(t) and to_device<Cuda>(host) there, and to_device(host) here, on the legacy
// default stream (synchronous with respect to the host).
template <class T>
Tensor<T, Cuda> to_device(const Tensor<T, Cpu>& host) {
  return to_device<Cuda, T>(host);
}

}  // namespace revox
