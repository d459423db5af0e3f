// revox/revox.cuh — the umbrella header for CUDA translation units (.cu files compiled by
// nvcc): everything revox/revox.hpp brings, the Cuda device (CudaContext, copies, the caching
// allocator) and the CUDA kernels of every op, loss and optimizer, so that any layer, model
// or optimizer can run with a `Cuda` device. Link CUDA::cudart and CUDA::cublas.
//
//   revox::CudaContext context(0);                 // GPU 0
//   const revox::Cuda dev = context.device();
//   revox::UNet<float> net(revox::unet_preset("mbconv-base"));
//   revox::Parameters<float, revox::Cuda> params(net);
//   ... net.forward(dev, x, y, &saved); net.backward(dev, saved, dy, {}); adam.step();
#pragma once

#include "revox/revox.hpp"

#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/activations.cuh"
#include "revox/ops/cuda/add.cuh"
#include "revox/ops/cuda/conv3d.cuh"
#include "revox/ops/cuda/copy.cuh"
#include "revox/ops/cuda/depthwise_conv3d.cuh"
#include "revox/ops/cuda/dice_loss.cuh"
#include "revox/ops/cuda/executor.cuh"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/cuda/gemm.cuh"
#include "revox/ops/cuda/group_norm.cuh"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/cuda/max_pool3d.cuh"
#include "revox/ops/cuda/optim.cuh"
#include "revox/ops/cuda/pointwise_conv3d.cuh"
#include "revox/ops/cuda/upsample_trilinear.cuh"
