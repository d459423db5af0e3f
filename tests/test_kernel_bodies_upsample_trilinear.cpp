// The CUDA kernel bodies of UpsampleTrilinear (include/revox/ops/kernel_bodies/), run on the CPU
// with kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/ops/cpu/upsample_trilinear.hpp). Outputs are pre-filled with NaN so an element a
// body never writes fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The
// GPU runs the same bodies through cuda::for_each (the GPU part of
// tests/test_upsample_trilinear.cpp checks it on a GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "revox/ops/cpu/upsample_trilinear.hpp"
#include "revox/ops/kernel_bodies/upsample_trilinear.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::elementwise::tolerance;

TEMPLATE_TEST_CASE("emulated kernels: UpsampleTrilinear forward and gather backward match the "
                   "CPU",
                   "[cuda][emulated][upsample_trilinear]", float, double) {
  using T = TestType;
  revox::Rng rng(104);
  const Shape5 shapes[] = {kOddShape, {1, 2, 1, 1, 1}, {1, 1, 2, 1, 3}, {2, 1, 3, 2, 1}};
  for (const Shape5& in : shapes) {
    INFO("input " << in);
    const Shape5 out{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
    const Tensor<T> x = random_tensor<T>(in, rng);
    Tensor<T> y_cpu = nan_tensor<T>(out);
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y_cpu.view());
    Tensor<T> y = nan_tensor<T>(out);
    kernels::emulate_for_each(out.numel(), kernels::UpsampleTrilinearForward<T>{x.data(), in,
                                                                                y.data(), out});
    CHECK(max_error_same_nonfinite(y, y_cpu) <= tolerance<T>());

    Tensor<T> dy = random_tensor<T>(out, rng);
    Tensor<T> dx_cpu = nan_tensor<T>(in);
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx_cpu.view());
    Tensor<T> dx = nan_tensor<T>(in);
    kernels::emulate_for_each(in.numel(), kernels::UpsampleTrilinearBackward<T>{dy.data(), out,
                                                                                dx.data(), in});
    CHECK(max_error_same_nonfinite(dx, dx_cpu) <= tolerance<T>());

    // An inf in dy reaches the same inputs, zero-weight taps included (0 * inf = NaN).
    for (index_t spot : {index_t{0}, out.numel() / 2, out.numel() - 1}) {
      Tensor<T> dy_inf = dy.clone();
      dy_inf[spot] = std::numeric_limits<T>::infinity();
      revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy_inf.cview(), dx_cpu.view());
      kernels::emulate_for_each(in.numel(), kernels::UpsampleTrilinearBackward<T>{
                                                dy_inf.data(), out, dx.data(), in});
      index_t pattern_mismatches = 0;
      for (index_t i = 0; i < in.numel(); ++i) {
        pattern_mismatches += std::isnan(dx[i]) != std::isnan(dx_cpu[i]);
        pattern_mismatches += std::isinf(dx[i]) != std::isinf(dx_cpu[i]);
      }
      CHECK(pattern_mismatches == 0);
    }
  }
}

TEST_CASE("emulated kernels: upsample adjoint taps are the transpose of the forward taps",
          "[cuda][emulated][upsample_trilinear]") {
  for (index_t n = 1; n <= 9; ++n) {
    // Brute force: every (output, weight) pair naming input i, in output order.
    for (index_t i = 0; i < n; ++i) {
      std::vector<index_t> outputs;
      std::vector<double> weights;
      for (index_t o = 0; o < 2 * n; ++o) {
        const auto tap = kernels::upsample_tap<double>(o, n);
        if (tap.i0 == i) {
          outputs.push_back(o);
          weights.push_back(tap.l0);
        }
        if (tap.i1 == i) {
          outputs.push_back(o);
          weights.push_back(tap.l1);
        }
      }
      const auto taps = kernels::upsample_adjoint_taps<double>(i, n);
      INFO("n " << n << ", input " << i);
      REQUIRE(taps.count == static_cast<int>(outputs.size()));
      CHECK(taps.count <= 5);
      for (int k = 0; k < taps.count; ++k) {
        CHECK(taps.output[k] == outputs[static_cast<std::size_t>(k)]);
        CHECK(taps.weight[k] == weights[static_cast<std::size_t>(k)]);
      }
    }
  }
}
