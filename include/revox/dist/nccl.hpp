// revox/dist/nccl.hpp — the NCCL backend of revox/dist/communicator.hpp: CUDA tensor
// buffers, one process per GPU (link revox::nccl: NCCL, the CUDA runtime and MPI). Host code
// only; a CPU-only build never includes it.
//
//   NcclCommunicator  Communicator<Cuda>. Created by every process of an MpiCommunicator
//                     together: the process takes the GPU of its local rank (the rank among
//                     the processes on its machine, MPI_Comm_split_type; cudaSetDevice), rank 0
//                     draws the NCCL unique id (ncclGetUniqueId), MPI_Bcast hands it to the
//                     others, and ncclCommInitRank joins them. The tensor collectives are
//                     enqueued on the Cuda device's stream, ordered with revox's kernels there
//                     and asynchronous to the host like them. all_reduce_sum with a scale other
//                     than 1 is ONE ncclAllReduce with a pre-multiplied sum
//                     (ncclRedOpCreatePreMulSum, NCCL >= 2.11): scale * a + scale * b, equal to
//                     scale * (a + b) when scale is a power of two (2, 4, 8 ranks x samples),
//                     within one rounding otherwise. The host collectives (metrics, counters)
//                     run over the MpiCommunicator.
//   CudaWorld         what a CUDA program creates once in main, in two steps:
//                       dist::CudaWorld world;                  // MPI under a launcher
//                       CudaContext context(world.gpu_index()); // this process's GPU
//                       auto& comm = world.connect(context.device());
//                     Under an MPI launcher: MPI, an MpiCommunicator, the GPU of the local
//                     rank and an NcclCommunicator on the context's stream (also for one
//                     process). On a plain start: GPU 0 and a SingleProcess<Cuda>, without MPI
//                     or NCCL (its scale kernel: include revox/dist/cuda/scale.cuh in the .cu
//                     file that calls connect).
//
// More processes on a machine than it has GPUs is an error (NCCL needs one GPU per rank).
// Every NCCL error throws revox::Error naming the call and NCCL's own message.
#pragma once

#include <nccl.h>

#include <memory>
#include <string>
#include <type_traits>

#include "revox/core/cuda.hpp"
#include "revox/core/error.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/dist/mpi.hpp"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 11, 0)
#error "revox/dist/nccl.hpp needs NCCL 2.11 or newer (ncclRedOpCreatePreMulSum)"
#endif

#define REVOX_NCCL_CHECK(call)                                                           \
  do {                                                                                   \
    const ncclResult_t revox_nccl_status_ = (call);                                      \
    if (revox_nccl_status_ != ncclSuccess) {                                             \
      throw ::revox::Error(::revox::detail::concat(                                      \
          "NCCL error '", ncclGetErrorString(revox_nccl_status_), "' (",                  \
          static_cast<int>(revox_nccl_status_), ") from ", #call, " at ", __FILE__, ":",  \
          __LINE__));                                                                    \
    }                                                                                    \
  } while (false)

namespace revox::dist {

namespace detail {

template <class T>
ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>) {
    return ncclFloat;
  } else if constexpr (std::is_same_v<T, double>) {
    return ncclDouble;
  } else {
    static_assert(revox::detail::always_false_v<T>, "dist::nccl: float or double buffers");
  }
}

// The GPU of the process with `local_rank` on its machine (checked, not yet selected).
inline int gpu_of_local_rank(int local_rank) {
  const int count = cuda_device_count();
  REVOX_CHECK(count > 0, "dist::nccl: no usable GPU on this machine (local rank ", local_rank,
              "); run the CPU trainer, or start the job where the GPUs are");
  REVOX_CHECK(local_rank < count, "dist::nccl: this process is local rank ", local_rank,
              " on a machine with ", count, " GPU(s); start at most ", count,
              " process(es) per machine (one per GPU)");
  return local_rank;
}

}  // namespace detail

class NcclCommunicator final : public Communicator<Cuda> {
 public:
  // Collective over every process of `host`; `host` must outlive this communicator. Makes
  // the local rank's GPU the current device (cudaSetDevice); `dev` must be a stream of it.
  explicit NcclCommunicator(MpiCommunicator& host, Cuda dev = Cuda{})
      : Communicator<Cuda>(host.rank(), host.size(), host.local_rank()),
        host_(host),
        dev_(dev),
        device_(detail::gpu_of_local_rank(host.local_rank())) {
    REVOX_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (host.rank() == 0) REVOX_NCCL_CHECK(ncclGetUniqueId(&id));
    host.broadcast_host(&id, sizeof id, 0);
    REVOX_NCCL_CHECK(ncclCommInitRank(&comm_, host.size(), id, host.rank()));
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
  }

  const char* backend() const override { return "nccl"; }
  int device() const { return device_; }
  ncclComm_t raw() const { return comm_; }

  void all_reduce_sum(TensorView<float> buffer, float scale) override {
    reduce(buffer, scale);
  }
  void all_reduce_sum(TensorView<double> buffer, double scale) override {
    reduce(buffer, scale);
  }
  void broadcast(TensorView<float> buffer, int root) override { bcast(buffer, root); }
  void broadcast(TensorView<double> buffer, int root) override { bcast(buffer, root); }
  void all_reduce_sum_host(double* values, index_t count) override {
    host_.all_reduce_sum_host(values, count);
  }
  void all_reduce_max_host(double* values, index_t count) override {
    host_.all_reduce_max_host(values, count);
  }
  void broadcast_host(void* bytes, std::size_t count, int root) override {
    host_.broadcast_host(bytes, count, root);
  }
  void barrier() override {
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev_.stream));
    host_.barrier();
  }
  [[noreturn]] void abort(int exit_code) override {
    if (comm_ != nullptr) (void)ncclCommAbort(comm_);
    comm_ = nullptr;
    host_.abort(exit_code);
  }

 private:
  template <class T>
  void reduce(TensorView<T> buffer, T scale) {
    if (buffer.numel() == 0) return;
    const auto count = static_cast<std::size_t>(buffer.numel());
    if (scale == T(1)) {
      REVOX_NCCL_CHECK(ncclAllReduce(buffer.data, buffer.data, count, detail::nccl_type<T>(),
                                     ncclSum, comm_, dev_.stream));
      return;
    }
    T factor = scale;
    ncclRedOp_t op{};
    REVOX_NCCL_CHECK(ncclRedOpCreatePreMulSum(&op, &factor, detail::nccl_type<T>(),
                                              ncclScalarHostImmediate, comm_));
    const ncclResult_t status = ncclAllReduce(buffer.data, buffer.data, count,
                                              detail::nccl_type<T>(), op, comm_, dev_.stream);
    // An operator may be destroyed as soon as the last call that uses it has returned.
    (void)ncclRedOpDestroy(op, comm_);
    REVOX_NCCL_CHECK(status);
  }

  template <class T>
  void bcast(TensorView<T> buffer, int root) {
    check_root("broadcast", root);
    if (buffer.numel() == 0) return;
    REVOX_NCCL_CHECK(ncclBroadcast(buffer.data, buffer.data,
                                   static_cast<std::size_t>(buffer.numel()),
                                   detail::nccl_type<T>(), root, comm_, dev_.stream));
  }

  MpiCommunicator& host_;
  Cuda dev_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
};

class CudaWorld {
 public:
  CudaWorld() {
    if (launch_info().launched) {
      environment_ = std::make_unique<MpiEnvironment>();
      host_ = std::make_unique<MpiCommunicator>();
    }
  }
  // The GPU this process should use: its local rank under a launcher (checked against the
  // machine's GPU count), else 0.
  int gpu_index() const { return host_ ? detail::gpu_of_local_rank(host_->local_rank()) : 0; }
  // The communicator over `dev` (a stream of gpu_index()); created by the first call, which
  // every process makes together.
  Communicator<Cuda>& connect(const Cuda& dev) {
    if (!communicator_) {
      if (host_) {
        communicator_ = std::make_unique<NcclCommunicator>(*host_, dev);
      } else {
        communicator_ = std::make_unique<SingleProcess<Cuda>>(dev);
      }
    }
    return *communicator_;
  }

 private:
  // Declared in the order they are built: destroyed in reverse.
  std::unique_ptr<MpiEnvironment> environment_;
  std::unique_ptr<MpiCommunicator> host_;
  std::unique_ptr<Communicator<Cuda>> communicator_;
};

}  // namespace revox::dist
