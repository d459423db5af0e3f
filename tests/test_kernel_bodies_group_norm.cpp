// The CUDA kernel bodies of GroupNorm (include/revox/ops/kernel_bodies/), run on the CPU with
// kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/ops/cpu/group_norm.hpp). Outputs are pre-filled with NaN so an element a body
// never writes fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU
// runs the same bodies through cuda::for_each (the GPU part of tests/test_group_norm.cpp checks it
// on a GPU). GroupNorm runs through kernels::group_norm_*_stages with emulate_for_each as the
// runner.
#include <catch2/catch.hpp>

#include <cmath>

#include "revox/ops/cpu/group_norm.hpp"
#include "revox/ops/kernel_bodies/group_norm.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::elementwise::tolerance;

namespace {

struct GroupNormCase {
  Shape5 shape;
  index_t groups;
};

const GroupNormCase kGroupNormCases[] = {
    {{2, 6, 5, 7, 9}, 3}, {{2, 3, 5, 7, 9}, 3}, {{2, 3, 5, 7, 9}, 1},
    {{1, 4, 1, 1, 1}, 2}, {{3, 2, 1, 2, 3}, 1},
};

}  // namespace

TEMPLATE_TEST_CASE("emulated kernels: GroupNorm forward and backward match the CPU",
                   "[cuda][emulated][group_norm]", float, double) {
  using T = TestType;
  revox::Rng rng(105);
  const double eps = 1e-5;
  for (const GroupNormCase& test : kGroupNormCases) {
    for (const index_t chunk : {index_t{7}, index_t{64}, kernels::kGroupNormChunk}) {
      for (const double offset : {0.0, 1000.0}) {
        const Shape5 shape = test.shape;
        const index_t groups = test.groups;
        INFO("shape " << shape << ", groups " << groups << ", chunk " << chunk << ", offset "
                      << offset);
        // A large offset with a small spread: the shifted statistics must keep precision.
        const double spread = offset == 0.0 ? 1.0 : 0.01;
        const Tensor<T> x = random_tensor<T>(shape, rng, offset - spread, offset + spread);
        const Tensor<T> gamma = random_tensor<T>(Shape5{1, 1, 1, 1, shape.c}, rng, 0.5, 1.5);
        const Tensor<T> beta = random_tensor<T>(Shape5{1, 1, 1, 1, shape.c}, rng);
        const Shape5 stats{shape.n, groups, 1, 1, 1};

        Tensor<T> y_cpu = nan_tensor<T>(shape);
        Tensor<double> mean_cpu = nan_tensor<double>(stats);
        Tensor<double> rstd_cpu = nan_tensor<double>(stats);
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward<T>(revox::Cpu{}, x.cview(), groups, eps, gamma.data(), beta.data(),
                                          y_cpu.view(), mean_cpu.data(), rstd_cpu.data());

        const auto dims = kernels::group_norm_dims(shape, groups, chunk);
        Tensor<double> scratch = nan_tensor<double>(
            revox::flat_shape(kernels::group_norm_forward_scratch(dims)));
        Tensor<T> y = nan_tensor<T>(shape);
        Tensor<double> mean = nan_tensor<double>(stats);
        Tensor<double> rstd = nan_tensor<double>(stats);
        kernels::group_norm_forward_stages(kEmulate, x.data(), dims, eps, gamma.data(),
                                           beta.data(), y.data(), mean.data(), rstd.data(),
                                           scratch.data());
        CHECK(max_error_same_nonfinite(mean, mean_cpu) <= 1e-13);
        CHECK(max_error_same_nonfinite(rstd, rstd_cpu) <= 1e-9);
        CHECK(max_error_same_nonfinite(y, y_cpu) <= tolerance<T>() * 4);

        const Tensor<T> dy = random_tensor<T>(shape, rng);
        Tensor<T> dx_cpu = nan_tensor<T>(shape);
        Tensor<T> dgamma_cpu = random_tensor<T>(gamma.shape(), rng);  // ACCUMULATED onto
        Tensor<T> dbeta_cpu = random_tensor<T>(gamma.shape(), rng);
        Tensor<T> dgamma = dgamma_cpu.clone();
        Tensor<T> dbeta = dbeta_cpu.clone();
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward<T>(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_cpu.data(),
                                           rstd_cpu.data(), gamma.data(), dx_cpu.view(),
                                           dgamma_cpu.data(), dbeta_cpu.data());
        Tensor<double> grad_scratch = nan_tensor<double>(
            revox::flat_shape(kernels::group_norm_backward_scratch(dims)));
        Tensor<T> dx = nan_tensor<T>(shape);
        kernels::group_norm_backward_stages(kEmulate, x.data(), dy.data(), dims,
                                            mean_cpu.data(), rstd_cpu.data(), gamma.data(),
                                            dx.data(), dgamma.data(), dbeta.data(),
                                            grad_scratch.data());
        // dx is the difference of terms of size rstd * |dy|: relative to that scale.
        const double scale = offset == 0.0 ? 1.0 : 100.0;
        CHECK(max_error_same_nonfinite(dx, dx_cpu) <= tolerance<T>() * 4 * scale);
        CHECK(max_error_same_nonfinite(dgamma, dgamma_cpu) <= tolerance<T>() * 4 * scale);
        CHECK(max_error_same_nonfinite(dbeta, dbeta_cpu) <= tolerance<T>() * 4);

        // Without dx: the parameter gradients only, dx untouched.
        Tensor<T> dgamma_only = dgamma.clone();
        Tensor<T> dbeta_only = dbeta.clone();
        Tensor<T> untouched = nan_tensor<T>(shape);
        kernels::group_norm_backward_stages(kEmulate, x.data(), dy.data(), dims, mean_cpu.data(),
                                            rstd_cpu.data(), gamma.data(),
                                            static_cast<T*>(nullptr), dgamma_only.data(),
                                            dbeta_only.data(), grad_scratch.data());
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward<T>(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_cpu.data(),
                                           rstd_cpu.data(), gamma.data(), TensorView<T>{},
                                           dgamma_cpu.data(), dbeta_cpu.data());
        CHECK(max_error_same_nonfinite(dgamma_only, dgamma_cpu) <= tolerance<T>() * 8 * scale);
        CHECK(max_error_same_nonfinite(dbeta_only, dbeta_cpu) <= tolerance<T>() * 8);
        index_t written = 0;
        for (index_t i = 0; i < untouched.numel(); ++i) written += !std::isnan(untouched[i]);
        CHECK(written == 0);
      }
    }
  }
}
