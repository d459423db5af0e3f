// revox/dist/mpi.hpp — the MPI backend of revox/dist/communicator.hpp: CPU tensor buffers,
// through MPI's C API (link revox::mpi, which brings MPI::MPI_C).
//
//   MpiEnvironment   MPI_Init_thread(MPI_THREAD_FUNNELED) unless MPI is already initialised,
//                    and MPI_Finalize at its end if it initialised it. FUNNELED: only the
//                    thread that initialised MPI calls it (OpenMP threads never do).
//   MpiCommunicator  Communicator<Cpu> over a duplicate of a communicator (default
//                    MPI_COMM_WORLD), so revox's messages never mix with the program's own;
//                    errors on it are returned (MPI_ERRORS_RETURN) and thrown as
//                    revox::Error naming the call. local_rank() comes from
//                    MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the processes on one machine.
//   CpuWorld         what a CPU program creates once in main: under an MPI launcher (mpirun,
//                    mpiexec, srun; see launch_info) MPI and an MpiCommunicator over
//                    MPI_COMM_WORLD, also for one process; on a plain start a
//                    SingleProcess<Cpu>, without touching MPI at all.
//
// Counts above INT_MAX elements (MPI counts are int) are sent in chunks. The all-reduce sums
// with MPI_SUM in MPI_IN_PLACE mode, then scales on the CPU (communicator.hpp's ScaleBody).
// A process that dies, or calls abort(), makes the MPI launcher end the other processes.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <type_traits>

#include "revox/core/error.hpp"
#include "revox/dist/communicator.hpp"

namespace revox::dist {

namespace detail {

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(text, static_cast<std::size_t>(std::max(length, 0)));
}

inline void mpi_check(int code, const char* call) {
  if (code != MPI_SUCCESS) {
    throw Error(revox::detail::concat("MPI error '", mpi_error_text(code), "' (", code,
                                      ") from ", call));
  }
}

// Largest element count of one MPI call.
inline constexpr index_t kMpiChunk = index_t{1} << 30;

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) {
    return MPI_FLOAT;
  } else if constexpr (std::is_same_v<T, double>) {
    return MPI_DOUBLE;
  } else {
    static_assert(revox::detail::always_false_v<T>, "dist::mpi: float or double buffers");
  }
}

}  // namespace detail

#define REVOX_MPI_CHECK(call) ::revox::dist::detail::mpi_check((call), #call)

class MpiEnvironment {
 public:
  MpiEnvironment() {
    int initialized = 0;
    REVOX_MPI_CHECK(MPI_Initialized(&initialized));
    if (initialized == 0) {
      int provided = 0;
      REVOX_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
      owned_ = true;
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        owned_ = false;
        throw Error("MPI: the MPI library provides no MPI_THREAD_FUNNELED support, which "
                    "revox needs (OpenMP threads run while MPI is initialised)");
      }
    }
  }
  ~MpiEnvironment() {
    if (!owned_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0) MPI_Finalize();
  }
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

 private:
  bool owned_ = false;
};

class MpiCommunicator final : public Communicator<Cpu> {
 public:
  // Collective: every process of `comm` constructs it together. MPI must be initialised.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : MpiCommunicator(duplicate(comm)) {}
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0 && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  const char* backend() const override { return "mpi"; }
  // The duplicated communicator (for a backend built on top, e.g. NCCL's id broadcast).
  MPI_Comm raw() const { return comm_; }

  void all_reduce_sum(TensorView<float> buffer, float scale) override {
    reduce_in_place(buffer.data, buffer.numel(), MPI_SUM);
    detail::scale_buffer(Cpu{}, buffer, scale);
  }
  void all_reduce_sum(TensorView<double> buffer, double scale) override {
    reduce_in_place(buffer.data, buffer.numel(), MPI_SUM);
    detail::scale_buffer(Cpu{}, buffer, scale);
  }
  void broadcast(TensorView<float> buffer, int root) override {
    check_root("broadcast", root);
    broadcast_elements(buffer.data, buffer.numel(), root);
  }
  void broadcast(TensorView<double> buffer, int root) override {
    check_root("broadcast", root);
    broadcast_elements(buffer.data, buffer.numel(), root);
  }
  void all_reduce_sum_host(double* values, index_t count) override {
    reduce_in_place(values, count, MPI_SUM);
  }
  void all_reduce_max_host(double* values, index_t count) override {
    reduce_in_place(values, count, MPI_MAX);
  }
  void broadcast_host(void* bytes, std::size_t count, int root) override {
    check_root("broadcast_host", root);
    auto* p = static_cast<unsigned char*>(bytes);
    for (std::size_t done = 0; done < count;) {
      const auto n =
          std::min<std::size_t>(count - done, static_cast<std::size_t>(detail::kMpiChunk));
      REVOX_MPI_CHECK(MPI_Bcast(p + done, static_cast<int>(n), MPI_BYTE, root, comm_));
      done += n;
    }
  }
  void barrier() override { REVOX_MPI_CHECK(MPI_Barrier(comm_)); }
  [[noreturn]] void abort(int exit_code) override {
    std::cerr.flush();
    std::cout.flush();
    MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; if it ever did, end this process
  }

 private:
  struct Ids {
    MPI_Comm comm;
    int rank;
    int size;
    int local_rank;
  };
  explicit MpiCommunicator(Ids ids)
      : Communicator<Cpu>(ids.rank, ids.size, ids.local_rank), comm_(ids.comm) {}

  static Ids duplicate(MPI_Comm comm) {
    Ids ids{MPI_COMM_NULL, 0, 1, 0};
    REVOX_MPI_CHECK(MPI_Comm_dup(comm, &ids.comm));
    REVOX_MPI_CHECK(MPI_Comm_set_errhandler(ids.comm, MPI_ERRORS_RETURN));
    REVOX_MPI_CHECK(MPI_Comm_rank(ids.comm, &ids.rank));
    REVOX_MPI_CHECK(MPI_Comm_size(ids.comm, &ids.size));
    MPI_Comm node = MPI_COMM_NULL;
    REVOX_MPI_CHECK(
        MPI_Comm_split_type(ids.comm, MPI_COMM_TYPE_SHARED, ids.rank, MPI_INFO_NULL, &node));
    REVOX_MPI_CHECK(MPI_Comm_rank(node, &ids.local_rank));
    REVOX_MPI_CHECK(MPI_Comm_free(&node));
    return ids;
  }

  template <class T>
  void reduce_in_place(T* data, index_t count, MPI_Op op) {
    REVOX_CHECK(count >= 0, "dist::mpi: negative element count ", count);
    for (index_t done = 0; done < count;) {
      const index_t n = std::min(count - done, detail::kMpiChunk);
      REVOX_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + done, static_cast<int>(n),
                                    detail::mpi_type<T>(), op, comm_));
      done += n;
    }
  }

  template <class T>
  void broadcast_elements(T* data, index_t count, int root) {
    for (index_t done = 0; done < count;) {
      const index_t n = std::min(count - done, detail::kMpiChunk);
      REVOX_MPI_CHECK(
          MPI_Bcast(data + done, static_cast<int>(n), detail::mpi_type<T>(), root, comm_));
      done += n;
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
};

class CpuWorld {
 public:
  CpuWorld() {
    if (launch_info().launched) {
      environment_ = std::make_unique<MpiEnvironment>();
      communicator_ = std::make_unique<MpiCommunicator>();
    } else {
      communicator_ = std::make_unique<SingleProcess<Cpu>>();
    }
  }
  Communicator<Cpu>& communicator() { return *communicator_; }

 private:
  std::unique_ptr<MpiEnvironment> environment_;  // declared first: ends last
  std::unique_ptr<Communicator<Cpu>> communicator_;
};

}  // namespace revox::dist
