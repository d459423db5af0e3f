// The NCCL communicator (revox/dist/nccl.hpp) on one GPU, and the Cuda SingleProcess
// (revox/dist/cuda/scale.cuh): all-reduce with and without a scale, broadcast, host
// collectives over MPI, and CudaWorld without a launcher (GPU 0, SingleProcess<Cuda>). One
// process (MPI as a singleton, NCCL with one rank); the multi-GPU path needs a machine with
// several GPUs. Exits 77 (skipped) without a GPU.
#include <cstdio>
#include <string>
#include <vector>

#include "revox/core/cuda.hpp"
#include "revox/dist/cuda/scale.cuh"
#include "revox/dist/nccl.hpp"

using namespace revox;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

std::vector<float> round_trip(dist::Communicator<Cuda>& comm, const Cuda& dev,
                              const std::vector<float>& host, float scale, const char* what) {
  Tensor<float> t(Shape5{1, 1, 1, 1, static_cast<index_t>(host.size())});
  for (std::size_t i = 0; i < host.size(); ++i) t[static_cast<index_t>(i)] = host[i];
  Tensor<float, Cuda> d = to_device(dev, t);
  if (std::string(what) == "broadcast") {
    comm.broadcast(d.view(), 0);
  } else {
    comm.all_reduce_sum(d.view(), scale);
  }
  Tensor<float> back = to_host(dev, d);
  return std::vector<float>(back.data(), back.data() + back.numel());
}

void check(dist::Communicator<Cuda>& comm, const Cuda& dev, const char* name) {
  std::vector<float> host(100003);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = 0.5f * static_cast<float>(i % 101);
  const auto same = round_trip(comm, dev, host, 1.0f, "sum");
  const auto half = round_trip(comm, dev, host, 0.25f, "sum");
  const auto kept = round_trip(comm, dev, host, 1.0f, "broadcast");
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < host.size(); ++i) {
    wrong += same[i] != host[i] || half[i] != 0.25f * host[i] || kept[i] != host[i];
  }
  expect(wrong == 0, std::string(name) + ": " + std::to_string(wrong) +
                         " elements differ after all_reduce_sum / broadcast on one rank");
  double values[2] = {2.5, -1.0};
  comm.all_reduce_sum_host(values, 2);
  expect(values[0] == 2.5 && values[1] == -1.0, std::string(name) + ": host all-reduce");
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("no GPU: skipped\n");
    return 77;
  }
  try {
    {
      dist::CudaWorld world;  // no launcher: GPU 0 and a SingleProcess<Cuda>
      CudaContext context(world.gpu_index());
      dist::Communicator<Cuda>& comm = world.connect(context.device());
      expect(std::string(comm.backend()) == "single", "CudaWorld without a launcher");
      check(comm, context.device(), "SingleProcess<Cuda>");
    }
    dist::MpiEnvironment environment;
    dist::MpiCommunicator host;
    CudaContext context(host.local_rank());
    dist::NcclCommunicator nccl(host, context.device());
    expect(nccl.size() == host.size() && nccl.rank() == host.rank(), "ranks of NCCL and MPI");
    expect(nccl.device() == host.local_rank(), "the GPU is the local rank's");
    check(nccl, context.device(), "NcclCommunicator");
    nccl.barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: %s\n", e.what());
    return 1;
  }
  if (failures == 0) std::printf("NCCL communicator: all passed\n");
  return failures == 0 ? 0 : 1;
}
