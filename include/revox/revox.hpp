// revox/revox.hpp — the umbrella header: every CPU-side public header of revox. Include
// the individual headers instead to keep compile times down. CUDA code additionally
// includes revox/core/cuda.hpp and the ops/cuda/*.cuh kernels from .cu translation units.
#pragma once

#include "revox/core/config.hpp"
#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/memory.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/add.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/ops/fill.hpp"
