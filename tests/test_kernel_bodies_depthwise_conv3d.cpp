// The CUDA depthwise 3x3x3 convolution run on the CPU: the same launch sequence the GPU runs
// (include/revox/ops/kernel_bodies/depthwise_conv3d.hpp), with its kernel bodies through
// emulate_for_each and its GEMM descriptors through emulate_gemm, the CPU emulation of cuBLAS's
// column-major GEMM. It is compared with the plain CPU reference (ops/cpu) on odd shapes,
// outputs pre-filled with NaN, with the reductions and the im2col buffer forced into several
// chunks.
#include <catch2/catch.hpp>

#include "revox/core/random.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"
#include "revox/ops/kernel_bodies/depthwise_conv3d.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::convolution::tolerance;

namespace {

template <class T>
void check_depthwise(const Shape5& s, bool with_bias, index_t chunk, revox::Rng& rng) {
  CAPTURE(s, with_bias, chunk);
  const auto x = random_tensor<T>(s, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(s.c * 27), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(s.c), rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;
  const kernels::EmulatedExecutor exec;

  auto y = nan_tensor<T>(s);
  auto y_ref = Tensor<T>::full(s, T(7));
  kernels::depthwise_conv3d_forward<kernels::EmulatedExecutor, T>(exec, x.cview(), weight.data(),
                                                                  bias_ptr, y.view());
  revox::cpu::reference::depthwise_conv3d_forward<T>(x.cview(), weight.data(), bias_ptr,
                                                     y_ref.view());
  CHECK(max_mixed_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(s, rng);
  auto dx = nan_tensor<T>(s);
  auto dx_ref = Tensor<T>::full(s, T(-3));
  kernels::depthwise_conv3d_backward_data<kernels::EmulatedExecutor, T>(
      exec, dy.cview(), weight.data(), dx.view());
  revox::cpu::reference::depthwise_conv3d_backward_data<T>(dy.cview(), weight.data(),
                                                           dx_ref.view());
  CHECK(max_mixed_error(dx, dx_ref) <= tolerance<T>());

  // Gradients accumulate onto a random prior.
  const auto dw_prior = random_tensor<T>(weight.shape(), rng);
  const auto db_prior = random_tensor<T>(bias.shape(), rng);
  auto dw = dw_prior.clone();
  auto db = db_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_ref = db_prior.clone();
  CountingExecutor counting;
  kernels::depthwise_conv3d_backward_weight<CountingExecutor, T>(
      counting, x.cview(), dy.cview(), dw.data(), with_bias ? db.data() : nullptr, chunk);
  revox::cpu::reference::depthwise_conv3d_backward_weight<T>(
      x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
  CHECK(counting.bodies == 2);  // two stages
  CHECK(max_mixed_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_mixed_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_mixed_error(db, db_prior) == 0.0);
}

TEMPLATE_TEST_CASE("CUDA depthwise_conv3d bodies match the CPU reference (emulated)",
                   "[cuda][emulated][depthwise]", float, double) {
  revox::Rng rng(11);
  const Shape5 shapes[] = {{2, 3, 5, 7, 9}, {1, 1, 1, 1, 1}, {1, 2, 3, 1, 4}, {3, 2, 1, 6, 1}};
  for (const Shape5& s : shapes) {
    for (const bool with_bias : {true, false}) {
      // Chunks of 16 voxels: 315 voxels of a 5x7x9 plane give 20 chunks, the last one short.
      for (const index_t chunk : {index_t{16}, kernels::kDepthwiseWeightChunk}) {
        check_depthwise<TestType>(s, with_bias, chunk, rng);
      }
    }
  }
}

}  // namespace
