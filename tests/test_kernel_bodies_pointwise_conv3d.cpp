// The CUDA pointwise 1x1x1 convolution run on the CPU: the same launch sequence the GPU runs
// (include/revox/ops/kernel_bodies/pointwise_conv3d.hpp), with its kernel bodies through
// emulate_for_each and its GEMM descriptors through emulate_gemm, the CPU emulation of cuBLAS's
// column-major GEMM. It is compared with the plain CPU reference (ops/cpu) on odd shapes,
// outputs pre-filled with NaN, with the reductions and the im2col buffer forced into several
// chunks.
#include <catch2/catch.hpp>

#include "revox/core/random.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/ops/kernel_bodies/pointwise_conv3d.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::convolution::tolerance;

namespace {

// ---- pointwise 1x1x1 ------------------------------------------------------------------------

template <class T>
void check_pointwise(const Shape5& xs, index_t cout, bool with_bias, index_t chunk,
                     revox::Rng& rng) {
  CAPTURE(xs, cout, with_bias, chunk);
  const Shape5 ys = xs.with_channels(cout);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(cout * xs.c), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(cout), rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;
  CountingExecutor exec;

  auto y = nan_tensor<T>(ys);
  auto y_ref = Tensor<T>::full(ys, T(5));
  kernels::pointwise_conv3d_forward<CountingExecutor, T>(exec, x.cview(), weight.data(),
                                                         bias_ptr, y.view());
  CHECK(exec.gemms == 1);  // one strided-batched GEMM for the whole batch
  revox::cpu::reference::pointwise_conv3d_forward<T>(x.cview(), weight.data(), bias_ptr,
                                                     y_ref.view());
  CHECK(max_mixed_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(ys, rng);
  auto dx = nan_tensor<T>(xs);
  auto dx_ref = Tensor<T>::full(xs, T(-2));
  kernels::pointwise_conv3d_backward_data<CountingExecutor, T>(exec, dy.cview(), weight.data(),
                                                               dx.view());
  revox::cpu::reference::pointwise_conv3d_backward_data<T>(dy.cview(), weight.data(),
                                                           dx_ref.view());
  CHECK(max_mixed_error(dx, dx_ref) <= tolerance<T>());

  const auto dw_prior = random_tensor<T>(weight.shape(), rng);
  const auto db_prior = random_tensor<T>(bias.shape(), rng);
  auto dw = dw_prior.clone();
  auto db = db_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_ref = db_prior.clone();
  kernels::pointwise_conv3d_backward_weight<CountingExecutor, T>(
      exec, x.cview(), dy.cview(), dw.data(), with_bias ? db.data() : nullptr, chunk);
  revox::cpu::reference::pointwise_conv3d_backward_weight<T>(
      x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
  CHECK(max_mixed_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_mixed_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_mixed_error(db, db_prior) == 0.0);
}

TEMPLATE_TEST_CASE("CUDA pointwise_conv3d GEMMs and bodies match the CPU reference (emulated)",
                   "[cuda][emulated][pointwise]", float, double) {
  revox::Rng rng(12);
  for (const bool with_bias : {true, false}) {
    for (const index_t chunk : {index_t{32}, kernels::kChannelSumChunk}) {
      check_pointwise<TestType>(Shape5{2, 3, 5, 7, 9}, 5, with_bias, chunk, rng);
      check_pointwise<TestType>(Shape5{3, 6, 2, 1, 3}, 2, with_bias, chunk, rng);
      check_pointwise<TestType>(Shape5{1, 1, 1, 1, 1}, 1, with_bias, chunk, rng);
    }
  }
}

}  // namespace
