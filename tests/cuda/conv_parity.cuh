// What the GPU parity tests of the convolutions share (tests/cuda/test_cuda_{depthwise_conv3d,
// pointwise_conv3d,conv3d,context}.cu): each op runs through the ops:: dispatchers (or
// cuda::conv3d_* with a forced im2col chunk size) against the plain CPU reference, float and
// double. Device outputs are pre-filled with NaN, the host outputs with a finite value, so an
// element the GPU never writes shows.
//
// The header includes revox/revox.hpp and runs the CPU fast paths too: a .cu translation unit
// holding both devices' kernels compiles without warnings.
//
// Tolerances (max |gpu - ref| / (1 + |ref|), revox::test::max_mixed_error): double 1e-11; float
// 2e-5 for outputs and input gradients (sums of at most Cin * 27 products, cuBLAS in FP32, no
// TF32), and for weight and bias gradients 2e-5 * max(1, sqrt(voxels / 64)), because those sum
// over every voxel of the batch in FP32 inside cuBLAS.
#pragma once

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>

#include "../support/tensors.hpp"
#include "cuda_check.cuh"
#include "revox/revox.hpp"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/conv3d.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/ops/cuda/conv3d.cuh"
#include "revox/ops/cuda/depthwise_conv3d.cuh"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/cuda/executor.cuh"
#include "revox/ops/cuda/pointwise_conv3d.cuh"
#include "revox/ops/depthwise_conv3d.hpp"
#include "revox/ops/fill.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox_cuda_test::convolution {

using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::max_mixed_error;
using revox::test::random_tensor;

using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;

template <class T>
using DeviceTensor = Tensor<T, Cuda>;

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-11;
}
template <class T>
double sum_tolerance(index_t voxels) {
  const double scale = std::sqrt(static_cast<double>(voxels) / 64.0);
  return tolerance<T>() * (scale > 1.0 ? scale : 1.0);
}

// An uninitialised device tensor filled with NaN.
template <class T>
DeviceTensor<T> device_nan(const Cuda& dev, Shape5 shape) {
  DeviceTensor<T> t(shape);
  revox::ops::fill(dev, t.view(), std::numeric_limits<T>::quiet_NaN());
  return t;
}

template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.numel(); ++i) {
    if (!(a[i] == b[i])) return false;
  }
  return true;
}

template <class T>
void report(const char* what, const Shape5& shape, double error, double limit) {
  const bool ok = error <= limit;
  if (!ok) {
    std::printf("  %s %s N=%lld C=%lld %lldx%lldx%lld: error %.3g > %.3g\n", what,
                std::is_same_v<T, float> ? "float" : "double", static_cast<long long>(shape.n),
                static_cast<long long>(shape.c), static_cast<long long>(shape.d),
                static_cast<long long>(shape.h), static_cast<long long>(shape.w), error, limit);
  }
  CUDA_TEST_CHECK(ok);
}

// ---- depthwise --------------------------------------------------------------------------
template <class T>
void depthwise_parity(const Cuda& dev, const Shape5& s, bool with_bias, revox::Rng& rng) {
  const auto x = random_tensor<T>(s, rng);
  const auto w = random_tensor<T>(revox::flat_shape(s.c * 27), rng);
  const auto b = random_tensor<T>(revox::flat_shape(s.c), rng);
  const auto dy = random_tensor<T>(s, rng);
  const auto dw0 = random_tensor<T>(w.shape(), rng);
  const auto db0 = random_tensor<T>(b.shape(), rng);
  const auto x_d = revox::to_device(dev, x);
  const auto w_d = revox::to_device(dev, w);
  const auto b_d = revox::to_device(dev, b);
  const auto dy_d = revox::to_device(dev, dy);

  auto y_d = device_nan<T>(dev, s);
  auto y = Tensor<T>::full(s, T(3));
  revox::ops::depthwise_conv3d_forward(dev, x_d.cview(), w_d.data(),
                                       with_bias ? b_d.data() : nullptr, y_d.view());
  revox::cpu::reference::depthwise_conv3d_forward<T>(x.cview(), w.data(),
                                                     with_bias ? b.data() : nullptr, y.view());
  report<T>("depthwise forward", s, max_mixed_error(revox::to_host(dev, y_d), y), tolerance<T>());

  auto dx_d = device_nan<T>(dev, s);
  auto dx = Tensor<T>::full(s, T(3));
  revox::ops::depthwise_conv3d_backward_data(dev, dy_d.cview(), w_d.data(), dx_d.view());
  revox::cpu::reference::depthwise_conv3d_backward_data<T>(dy.cview(), w.data(), dx.view());
  report<T>("depthwise backward_data", s, max_mixed_error(revox::to_host(dev, dx_d), dx),
            tolerance<T>());

  auto dw_d = revox::to_device(dev, dw0);
  auto db_d = revox::to_device(dev, db0);
  auto dw = dw0.clone();
  auto db = db0.clone();
  revox::ops::depthwise_conv3d_backward_weight(dev, x_d.cview(), dy_d.cview(), dw_d.data(),
                                               with_bias ? db_d.data() : nullptr);
  revox::cpu::reference::depthwise_conv3d_backward_weight<T>(x.cview(), dy.cview(), dw.data(),
                                                             with_bias ? db.data() : nullptr);
  const auto dw_gpu = revox::to_host(dev, dw_d);
  report<T>("depthwise backward_weight", s, max_mixed_error(dw_gpu, dw), tolerance<T>());
  report<T>("depthwise backward_bias", s, max_mixed_error(revox::to_host(dev, db_d), db),
            tolerance<T>());
  // Deterministic: the same accumulation again gives the same bits.
  auto dw2_d = revox::to_device(dev, dw0);
  revox::ops::depthwise_conv3d_backward_weight(dev, x_d.cview(), dy_d.cview(), dw2_d.data(),
                                               nullptr);
  CUDA_TEST_CHECK(bitwise_equal(revox::to_host(dev, dw2_d), dw_gpu));
  // The fused backward: the same dx and the same accumulated gradients as the two calls.
  auto dx3_d = device_nan<T>(dev, s);
  auto dw3_d = revox::to_device(dev, dw0);
  auto db3_d = revox::to_device(dev, db0);
  revox::ops::depthwise_conv3d_backward(dev, x_d.cview(), dy_d.cview(), w_d.data(),
                                        dx3_d.view(), dw3_d.data(),
                                        with_bias ? db3_d.data() : nullptr);
  CUDA_TEST_CHECK(bitwise_equal(revox::to_host(dev, dx3_d), revox::to_host(dev, dx_d)));
  CUDA_TEST_CHECK(bitwise_equal(revox::to_host(dev, dw3_d), dw_gpu));
  if (with_bias) {
    CUDA_TEST_CHECK(bitwise_equal(revox::to_host(dev, db3_d), revox::to_host(dev, db_d)));
  }
}

// ---- pointwise and dense conv3d ----------------------------------------------------------
// kernel_size 0 means "through ops::pointwise_conv3d_*"; otherwise ops::conv3d_* (or
// cuda::conv3d_* directly when scratch_bytes is given, to force several chunks).
template <class T>
void conv_parity(const Cuda& dev, const Shape5& xs, index_t cout, int kernel_size,
                 bool with_bias, index_t scratch_bytes, revox::Rng& rng) {
  const index_t k = kernel_size == 0 ? 1 : kernel_size;
  const Shape5 ys = xs.with_channels(cout);
  const auto x = random_tensor<T>(xs, rng);
  const auto w = random_tensor<T>(revox::flat_shape(cout * xs.c * k * k * k), rng);
  const auto b = random_tensor<T>(revox::flat_shape(cout), rng);
  const auto dy = random_tensor<T>(ys, rng);
  const auto dw0 = random_tensor<T>(w.shape(), rng);
  const auto db0 = random_tensor<T>(b.shape(), rng);
  const auto x_d = revox::to_device(dev, x);
  const auto w_d = revox::to_device(dev, w);
  const auto b_d = revox::to_device(dev, b);
  const auto dy_d = revox::to_device(dev, dy);
  const T* bias_d = with_bias ? b_d.data() : nullptr;
  const T* bias = with_bias ? b.data() : nullptr;
  const int ks = static_cast<int>(k);
  const std::string name = kernel_size == 0 ? "pointwise" : "conv3d k=" + std::to_string(k);

  auto y_d = device_nan<T>(dev, ys);
  auto dx_d = device_nan<T>(dev, xs);
  auto dw_d = revox::to_device(dev, dw0);
  auto db_d = revox::to_device(dev, db0);
  if (kernel_size == 0) {
    revox::ops::pointwise_conv3d_forward(dev, x_d.cview(), w_d.data(), bias_d, y_d.view());
    revox::ops::pointwise_conv3d_backward_data(dev, dy_d.cview(), w_d.data(), dx_d.view());
    revox::ops::pointwise_conv3d_backward_weight(dev, x_d.cview(), dy_d.cview(), dw_d.data(),
                                                 with_bias ? db_d.data() : nullptr);
  } else if (scratch_bytes == 0) {
    revox::ops::conv3d_forward(dev, x_d.cview(), w_d.data(), bias_d, y_d.view(), ks);
    revox::ops::conv3d_backward_data(dev, dy_d.cview(), w_d.data(), dx_d.view(), ks);
    revox::ops::conv3d_backward_weight(dev, x_d.cview(), dy_d.cview(), dw_d.data(),
                                       with_bias ? db_d.data() : nullptr, ks);
  } else {
    revox::ops::Conv3dKernels<revox::Cuda>::conv3d_forward<T>(dev, x_d.cview(), w_d.data(), bias_d, y_d.view(), ks,
                                   scratch_bytes);
    revox::ops::Conv3dKernels<revox::Cuda>::conv3d_backward_data<T>(dev, dy_d.cview(), w_d.data(), dx_d.view(), ks,
                                         scratch_bytes);
    revox::ops::Conv3dKernels<revox::Cuda>::conv3d_backward_weight<T>(dev, x_d.cview(), dy_d.cview(), dw_d.data(),
                                           with_bias ? db_d.data() : nullptr, ks, scratch_bytes);
  }
  auto y = Tensor<T>::full(ys, T(5));
  auto dx = Tensor<T>::full(xs, T(5));
  auto dw = dw0.clone();
  auto db = db0.clone();
  revox::cpu::reference::conv3d_forward<T>(x.cview(), w.data(), bias, y.view(), ks);
  revox::cpu::reference::conv3d_backward_data<T>(dy.cview(), w.data(), dx.view(), ks);
  revox::cpu::reference::conv3d_backward_weight<T>(x.cview(), dy.cview(), dw.data(),
                                                   with_bias ? db.data() : nullptr, ks);
  // The CPU fast path (ops/cpu/gemm.hpp GEMMs), instantiated in this CUDA translation unit.
  auto y_cpu = Tensor<T>::full(ys, std::numeric_limits<T>::quiet_NaN());
  if (kernel_size == 0) {
    revox::ops::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), w.data(), bias, y_cpu.view());
  } else {
    revox::ops::conv3d_forward(revox::Cpu{}, x.cview(), w.data(), bias, y_cpu.view(), ks);
  }
  report<T>((name + " cpu forward").c_str(), xs, max_mixed_error(y_cpu, y), tolerance<T>());
  const index_t voxels = xs.n * xs.spatial();
  report<T>((name + " forward").c_str(), xs, max_mixed_error(revox::to_host(dev, y_d), y),
            tolerance<T>());
  report<T>((name + " backward_data").c_str(), xs, max_mixed_error(revox::to_host(dev, dx_d), dx),
            tolerance<T>());
  report<T>((name + " backward_weight").c_str(), xs, max_mixed_error(revox::to_host(dev, dw_d), dw),
            sum_tolerance<T>(voxels));
  report<T>((name + " backward_bias").c_str(), xs, max_mixed_error(revox::to_host(dev, db_d), db),
            sum_tolerance<T>(voxels));
}

// A convolution test's main: test(dev, T{}) for T = float, then double, on the stream of a
// CudaContext (the convolutions' GEMMs need its cuBLAS handle).
template <class Test>
int run_with_context(const char* test_name, Test&& test) {
  return run_test(test_name, [&] {
    revox::CudaContext ctx(0);
    const Cuda dev = ctx.device();
    test(dev, float{});
    test(dev, double{});
    ctx.synchronize();
  });
}

}  // namespace revox_cuda_test::convolution
