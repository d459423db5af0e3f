// What the GPU parity tests of the element-wise ops, GroupNorm, the losses and the optimizers
// (tests/cuda/test_cuda_{activations,add,max_pool3d,upsample_trilinear,group_norm,dice_loss,
// optim}.cu) share: device outputs pre-filled with kDevicePrefill and host outputs with NaN
// (revox::test::nan_tensor), so an element one side never writes shows as a mismatch; errors
// are revox::test::max_error_same_nonfinite (worst |gpu - cpu| / max(1, |cpu|), NaN against
// NaN and equal infinities count as equal) unless noted. The names these tests use are brought
// in at file scope at the end: the header is included by those tests only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>

#include "../support/tensors.hpp"
#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/fill.hpp"

namespace revox_cuda_test {

constexpr double kDevicePrefill = 12345.0;

template <class T>
revox::Tensor<T, revox::Cuda> device_prefilled(const revox::Cuda& dev, revox::Shape5 shape) {
  revox::Tensor<T, revox::Cuda> t(shape);
  revox::ops::fill(dev, t.view(), static_cast<T>(kDevicePrefill));
  return t;
}

// Worst |a - b| relative to the largest |b|.
template <class T>
double scaled_error(const revox::Tensor<T>& a, const revox::Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  double largest = 0.0;
  for (revox::index_t i = 0; i < b.numel(); ++i) {
    largest = std::max(largest, std::abs(double(b[i])));
  }
  return revox::test::max_error_same_nonfinite(a.data(), b.data(), a.numel(),
                                               largest > 0.0 ? largest : 1.0);
}

inline void check_close(const std::string& what, double error, double tolerance) {
  CUDA_TEST_CHECK(error <= tolerance);
  if (!(error <= tolerance)) {
    std::printf("  %s: error %.3e above tolerance %.3e\n", what.c_str(), error, tolerance);
  }
}

template <class T>
void check_close(const std::string& what, const revox::Tensor<T>& got,
                 const revox::Tensor<T>& expected, double tolerance) {
  check_close(what, revox::test::max_error_same_nonfinite(got, expected), tolerance);
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

namespace elementwise {
// FMA contraction on the GPU (see each test for why its op needs a tolerance at all).
template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}
}  // namespace elementwise

// A parity test's main: test(dev, T{}) for T = float, then double, on the default stream.
template <class Test>
int run_parity_test(const char* test_name, Test&& test) {
  return run_test(test_name, [&] {
    const revox::Cuda dev{};
    test(dev, float{});
    test(dev, double{});
  });
}

}  // namespace revox_cuda_test

using revox::Cpu;
using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using namespace revox::test;       // NOLINT(google-build-using-namespace)
using namespace revox_cuda_test;  // NOLINT(google-build-using-namespace)
