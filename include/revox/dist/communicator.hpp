// revox/dist/communicator.hpp — data-parallel training: the communicator interface every
// backend implements, the single-process backend, and what a training loop calls.
//
// Data parallelism: every process (one per GPU, or per CPU machine/socket) holds a full
// replica of the model and runs the same program on different samples. After its backward
// pass each process holds the gradient SUM of its own samples in the flat gradient buffer
// (Parameters<T, Device>::grads()); then
//   average_gradients(comm, params, samples_per_rank)
// runs ONE all-reduce over that buffer and scales it by 1 / (samples_per_rank * size), so
// every process holds the mean gradient over all samples of the step and applies the same
// optimizer update to the same weights: the replicas stay identical. At the start (and after
// loading a checkpoint) broadcast_parameters and broadcast_optimizer_state copy rank 0's
// weights and optimizer state to every rank.
//
// Backends (Communicator<Device>, Device the memory of the tensor buffers):
//   SingleProcess<Device>  this header; size 1, the collectives only apply the scale
//   MpiCommunicator        revox/dist/mpi.hpp (target revox::mpi): CPU buffers, MPI_Allreduce
//                          / MPI_Bcast on a duplicate of MPI_COMM_WORLD
//   NcclCommunicator       revox/dist/nccl.hpp (target revox::nccl): CUDA buffers, NCCL, one
//                          process per GPU; the host collectives run over MPI
// A Cuda SingleProcess needs revox/dist/cuda/scale.cuh in one CUDA translation unit (it
// defines the scale kernel, like every CUDA op's .cuh).
//
// Rules (MPI's): every rank calls the same collectives in the same order with the same
// counts. A rank that fails must end the whole job — Communicator::abort, or run_or_abort
// around the program's body — else the others wait forever in their next collective.
// Tensor collectives work on buffers in Device memory (ASSIGNED in place); the *_host ones
// on host memory (metrics, counters, text).
//
// Determinism: the sum of an all-reduce may depend on the backend's reduction order; with
// 2 ranks it is a + b, the same as one process adding the two samples' gradients.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "revox/core/config.hpp"
#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"

namespace revox::dist {

// The interface every backend implements; see the top of this file.
template <class Device>
class Communicator {
 public:
  using device_type = Device;

  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // The rank among the processes on this machine (picks the GPU of a process).
  int local_rank() const { return local_rank_; }
  // "single", "mpi" or "nccl".
  virtual const char* backend() const = 0;

  // buffer <- scale * (the sum over ranks of buffer), element by element, on every rank.
  virtual void all_reduce_sum(TensorView<float> buffer, float scale) = 0;
  virtual void all_reduce_sum(TensorView<double> buffer, double scale) = 0;
  // buffer <- root's buffer on every rank.
  virtual void broadcast(TensorView<float> buffer, int root) = 0;
  virtual void broadcast(TensorView<double> buffer, int root) = 0;

  // Host memory: values[i] <- the sum (max) over ranks of values[i].
  virtual void all_reduce_sum_host(double* values, index_t count) = 0;
  virtual void all_reduce_max_host(double* values, index_t count) = 0;
  // bytes <- root's bytes on every rank.
  virtual void broadcast_host(void* bytes, std::size_t count, int root) = 0;
  virtual void barrier() = 0;
  // Ends every process of the job with `exit_code` (MPI_Abort); never returns.
  [[noreturn]] virtual void abort(int exit_code) = 0;

 protected:
  Communicator(int rank, int size, int local_rank)
      : rank_(rank), size_(size), local_rank_(local_rank) {}

  void check_root(const char* what, int root) const {
    REVOX_CHECK(root >= 0 && root < size_, "dist::", backend(), " ", what, ": root ", root,
                " is not a rank of a job of size ", size_);
  }

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
};

// The element-wise scale of the collectives, as a kernel body (revox's kernel-body
// convention): the CPU runs it in an OpenMP loop, the GPU through cuda::for_each
// (revox/dist/cuda/scale.cuh), tests through kernels::emulate_for_each.
template <class T>
struct ScaleBody {
  T* data;
  T scale;
  REVOX_HD void operator()(index_t i) const { data[i] = data[i] * scale; }
};

namespace detail {
// Defined in revox/dist/cuda/scale.cuh.
template <class T>
void cuda_scale(const Cuda& dev, TensorView<T> buffer, T scale);

template <class Device, class T>
void scale_buffer(const Device& dev, TensorView<T> buffer, T scale) {
  if (scale == T(1) || buffer.numel() == 0) return;
  if constexpr (is_cpu_v<Device>) {
    (void)dev;
    const ScaleBody<T> body{buffer.data, scale};
    const index_t count = buffer.numel();
#pragma omp parallel for schedule(static) if (count > (index_t{1} << 16))
    for (index_t i = 0; i < count; ++i) body(i);
  } else if constexpr (is_cuda_v<Device>) {
    cuda_scale(dev, buffer, scale);
  } else {
    static_assert(revox::detail::always_false_v<Device>, "dist: unknown device type");
  }
}
}  // namespace detail

// One process: size 1, rank 0; the collectives leave the buffers as they are, except for
// the scale of all_reduce_sum. `dev` is where the tensor buffers live (a Cuda carries the
// stream the scale runs on).
template <class Device>
class SingleProcess final : public Communicator<Device> {
 public:
  explicit SingleProcess(Device dev = Device{}) : Communicator<Device>(0, 1, 0), dev_(dev) {}

  const char* backend() const override { return "single"; }
  void all_reduce_sum(TensorView<float> buffer, float scale) override {
    detail::scale_buffer(dev_, buffer, scale);
  }
  void all_reduce_sum(TensorView<double> buffer, double scale) override {
    detail::scale_buffer(dev_, buffer, scale);
  }
  void broadcast(TensorView<float>, int root) override { this->check_root("broadcast", root); }
  void broadcast(TensorView<double>, int root) override { this->check_root("broadcast", root); }
  void all_reduce_sum_host(double*, index_t) override {}
  void all_reduce_max_host(double*, index_t) override {}
  void broadcast_host(void*, std::size_t, int root) override {
    this->check_root("broadcast_host", root);
  }
  void barrier() override {}
  [[noreturn]] void abort(int exit_code) override {
    std::cerr.flush();
    std::exit(exit_code);
  }

 private:
  Device dev_;
};

// ---- how this process was launched ------------------------------------------------------

// What the MPI launcher (mpirun / mpiexec of Open MPI or MPICH, srun with PMI/PMIx) told this
// process through its environment; launched == false for a plain start.
struct LaunchInfo {
  bool launched = false;
  int size = 1;  // processes in the job, when the launcher says (else 1)
  int rank = 0;
};

namespace detail {
inline int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end != nullptr && *end == '\0' && value >= 0 && value < (1L << 30)
             ? static_cast<int>(value)
             : fallback;
}
}  // namespace detail

inline LaunchInfo launch_info() {
  LaunchInfo info;
  const char* size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
  const char* rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  for (const char* name : rank_vars) {
    const int rank = detail::env_int(name, -1);
    if (rank >= 0) {
      info.launched = true;
      info.rank = rank;
      break;
    }
  }
  for (const char* name : size_vars) {
    const int size = detail::env_int(name, -1);
    if (size >= 1) {
      info.launched = true;
      info.size = size;
      break;
    }
  }
  return info;
}

// The communicator of a program built without MPI: a single process. Throws when an MPI
// launcher started this process as one of several, which would otherwise run N unrelated
// copies of the program that overwrite each other's outputs.
inline std::unique_ptr<Communicator<Cpu>> single_process_communicator(
    const std::string& program) {
  const LaunchInfo info = launch_info();
  REVOX_CHECK(!info.launched || info.size <= 1, program, ": started by an MPI launcher as rank ",
              info.rank, " of ", info.size, " processes, but this build has no MPI support "
              "(configure revox with MPI found, e.g. Debian's libopenmpi-dev, so that "
              "REVOX_WITH_MPI is ON), so the processes could not work together; run one "
              "process without mpirun, or rebuild with MPI");
  return std::make_unique<SingleProcess<Cpu>>();
}

// ---- what a training loop calls ---------------------------------------------------------

// The mean gradient over every sample of the step on every rank: ONE all-reduce over the
// flat gradient buffer (padding included, which stays zero), scaled by
// 1 / (samples_per_rank * size). The buffer must hold the SUM of the gradients of this rank's
// samples_per_rank samples.
template <class T, class Device>
void average_gradients(Communicator<Device>& comm, Parameters<T, Device>& params,
                       index_t samples_per_rank) {
  REVOX_CHECK(samples_per_rank >= 1, "dist::average_gradients: samples_per_rank must be >= 1, "
              "got ", samples_per_rank);
  const double total = static_cast<double>(samples_per_rank) * comm.size();
  comm.all_reduce_sum(params.grads(), static_cast<T>(1.0 / total));
}

// Rank `root`'s weights on every rank.
template <class T, class Device>
void broadcast_parameters(Communicator<Device>& comm, Parameters<T, Device>& params,
                          int root = 0) {
  comm.broadcast(params.values(), root);
}

// Rank `root`'s optimizer state (every state buffer of visit_state, and the step count) on
// every rank.
template <class Device, class Optimizer>
void broadcast_optimizer_state(Communicator<Device>& comm, Optimizer& optimizer, int root = 0) {
  optimizer.visit_state([&](const char*, auto view) { comm.broadcast(view, root); });
  std::int64_t steps = optimizer.steps();
  comm.broadcast_host(&steps, sizeof steps, root);
  optimizer.set_steps(steps);
}

// Rank `root`'s string on every rank.
template <class Device>
void broadcast_string(Communicator<Device>& comm, std::string& text, int root = 0) {
  std::uint64_t length = text.size();
  comm.broadcast_host(&length, sizeof length, root);
  text.resize(static_cast<std::size_t>(length));
  if (length != 0) comm.broadcast_host(text.data(), text.size(), root);
}

// FNV-1a (64 bit) of the bytes of a host buffer: equal buffers, equal checksums.
inline std::uint64_t checksum(const void* data, std::size_t bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

inline std::uint64_t checksum(const std::string& text) {
  return checksum(text.data(), text.size());
}

// Checks that every rank holds the same bytes as rank 0 in `values` (HOST memory, e.g. the
// weights; a communicator over GPU tensors checks a host copy through its host collectives):
// compares checksums, and throws on EVERY rank when any rank differs, naming the ranks and
// `what` (e.g. "the weights after step 12").
template <class Device, class T>
void check_replicas(Communicator<Device>& comm, TensorView<const T> values,
                    const std::string& what) {
  std::uint64_t mine = checksum(values.data, static_cast<std::size_t>(values.numel()) * sizeof(T));
  std::uint64_t root = mine;
  comm.broadcast_host(&root, sizeof root, 0);
  // Each rank reports itself in its own slot (exact: one non-zero term per slot).
  std::vector<double> differs(static_cast<std::size_t>(comm.size()), 0.0);
  differs[static_cast<std::size_t>(comm.rank())] = mine == root ? 0.0 : 1.0;
  comm.all_reduce_sum_host(differs.data(), static_cast<index_t>(differs.size()));
  std::string bad;
  for (std::size_t r = 0; r < differs.size(); ++r) {
    if (differs[r] != 0.0) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
  }
  REVOX_CHECK(bad.empty(), "dist: the replicas differ: ", what, " on rank(s) ", bad,
              " differ from rank 0's (checksums compared over ", values.numel(),
              " elements); the processes no longer train the same model");
}

// Runs fn() (returning void). When it throws, prints "<program> (rank r of n): error: ..."
// to stderr and ends the whole job with comm.abort(1), so that no other rank waits forever
// in a collective. With one process the exception propagates unchanged.
template <class Device, class Fn>
void run_or_abort(Communicator<Device>& comm, const std::string& program, Fn&& fn) {
  if (comm.size() == 1) {
    std::forward<Fn>(fn)();
    return;
  }
  std::string message;
  try {
    std::forward<Fn>(fn)();
    return;
  } catch (const InternalError& e) {
    message = std::string("internal error (a bug in revox): ") + e.what();
  } catch (const std::exception& e) {
    message = std::string("error: ") + e.what();
  } catch (...) {
    message = "error: unknown exception";
  }
  std::cerr << program << " (rank " << comm.rank() << " of " << comm.size() << "): " << message
            << "\n"
            << program << ": ending all " << comm.size() << " processes" << std::endl;
  comm.abort(1);
}

}  // namespace revox::dist
