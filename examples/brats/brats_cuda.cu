// revox-brats on a GPU: the Cuda instantiations of `train` (trainer.hpp) and `predict`
// (predict.hpp), and the device-to-device copy device.hpp declares. Compiled by nvcc only
// when CUDA is available (REVOX_BRATS_WITH_CUDA); train_command.cpp and predict_command.cpp call
// run_training_on_cuda / run_predict_on_cuda for --device cuda.
//
// GPU selection: --gpu N, else GPU 0. On a machine without a usable GPU (none, or no
// driver: cuda_device_count() == 0) both throw revox::Error "--device cuda: no CUDA device
// ..." before touching anything. Under an MPI launcher `train` runs data-parallel over NCCL
// (revox/dist/nccl.hpp: one process per GPU, the GPU of the process's local rank; --gpu is
// refused there); a build without NCCL refuses an MPI launch of more than one process.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <iostream>
#include <memory>
#include <string>

#include "revox/revox.cuh"

#include "device.hpp"
#include "predict.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/dist/cuda/scale.cuh"
#include "trainer.hpp"
#if defined(REVOX_WITH_NCCL)
#include "revox/dist/nccl.hpp"
#endif

namespace revox::brats {

void cuda_copy_on_device(const Cuda& dev, float* device_dst, const float* device_src,
                         index_t count) {
  revox::copy_on_device(dev, device_dst, device_src, count);
}

namespace {

// The GPU to use: `gpu` (--gpu) or `fallback`, checked against the machine's GPUs.
int checked_gpu(int gpu, int fallback) {
  const int count = cuda_device_count();
  REVOX_CHECK(count > 0, "--device cuda: no CUDA device on this machine (no GPU, or no NVIDIA "
              "driver: the CUDA runtime reports 0 devices); use --device cpu");
  const int index = gpu >= 0 ? gpu : fallback;
  REVOX_CHECK(index < count, gpu >= 0 ? "--gpu " : "GPU ", index, " does not exist: this "
              "machine has ", count, " CUDA device(s), numbered 0 to ", count - 1);
  return index;
}

std::string gpu_name(int index) {
  cudaDeviceProp properties{};
  REVOX_CUDA_CHECK(cudaGetDeviceProperties(&properties, index));
  return "GPU " + std::to_string(index) + " (" + properties.name + ")";
}

}  // namespace

void run_training_on_cuda(const TrainOptions& options, int gpu) {
  const dist::LaunchInfo launch = dist::launch_info();
  const bool parallel = launch.launched && launch.size > 1;
  const int first = checked_gpu(gpu, 0);
  if (parallel) {
    REVOX_CHECK(gpu < 0, "--gpu ", gpu, " cannot be used under an MPI launcher: every process "
                "trains on the GPU of its local rank (start one process per GPU)");
  }
#if defined(REVOX_WITH_NCCL)
  dist::CudaWorld world;  // MPI and NCCL under a launcher, else a single process
  CudaContext context(parallel ? world.gpu_index() : first);
  const Cuda dev = context.device();
  dist::Communicator<Cuda>& comm = world.connect(dev);
#else
  REVOX_CHECK(!parallel, "revox-brats train --device cuda: started by an MPI launcher as rank ",
              launch.rank, " of ", launch.size, " processes, but this build has no NCCL "
              "support (REVOX_WITH_NCCL is OFF: NCCL, CUDA and MPI must all be found when "
              "revox is configured), so the GPUs could not share gradients; run one process "
              "without mpirun, or rebuild with NCCL");
  CudaContext context(first);
  const Cuda dev = context.device();
  dist::SingleProcess<Cuda> single(dev);
  dist::Communicator<Cuda>& comm = single;
#endif
  if (comm.rank() == 0 && !options.quiet) {
    std::cout << "train: on " << gpu_name(context.gpu_index())
              << (comm.size() > 1 ? " and the GPUs of the other processes" : "") << std::endl;
  }
  dist::run_or_abort(comm, "revox-brats train", [&] {
    (void)run_training(options, std::cout, comm, dev);
    context.synchronize();
  });
}

void run_predict_on_cuda(const PredictArgs& args, int gpu) {
  CudaContext context(checked_gpu(gpu, 0));
  run_predict(args, context.device(), gpu_name(context.gpu_index()));
  context.synchronize();
}

}  // namespace revox::brats
