// GroupNorm: the fast CPU kernels against the plain references (including float inputs with
// a large offset against a double reference), the statistics of the output, independence
// from the thread count, gradcheck of the layer, misuse errors and the parameter layout.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_group_norm (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/ops/cpu/group_norm.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::random_tensor;
using revox::test::max_error;
using revox::test::fast_path_tolerance;
using revox::test::nan;

namespace {

Shape5 stats_shape(const Shape5& x, index_t groups) { return Shape5{x.n, groups, 1, 1, 1}; }

struct Case {
  Shape5 shape;
  std::vector<index_t> groups;
};

const Case kCases[] = {
    {{1, 1, 1, 1, 1}, {1}},          {{1, 6, 5, 6, 7}, {1, 2, 3, 6}},
    {{2, 4, 2, 3, 4}, {1, 2, 4}},    {{1, 3, 1, 1, 9}, {1, 3}},
    {{2, 8, 1, 2, 3}, {1, 4, 8}},    {{1, 2, 3, 1, 1}, {1, 2}},
    {{3, 5, 2, 2, 2}, {1, 5}},
};

}  // namespace

TEMPLATE_TEST_CASE("group_norm fast path matches the reference", "[ops][group_norm]", float,
                   double) {
  using T = TestType;
  revox::Rng rng(31);
  for (const Case& test : kCases) {
    for (const index_t groups : test.groups) {
      const Shape5 shape = test.shape;
      INFO("shape " << shape << ", num_groups " << groups);
      const Tensor<T> x = random_tensor<T>(shape, rng, -1.5, 2.5);
      const Tensor<T> dy = random_tensor<T>(shape, rng);
      const Tensor<T> gamma = random_tensor<T>(revox::flat_shape(shape.c), rng, -1.5, 1.5);
      const Tensor<T> beta = random_tensor<T>(revox::flat_shape(shape.c), rng, -1.5, 1.5);
      const Shape5 sshape = stats_shape(shape, groups);

      Tensor<T> y_fast = Tensor<T>::full(shape, nan<T>());
      Tensor<T> y_ref = Tensor<T>::full(shape, T(-777));
      Tensor<double> mean_fast = Tensor<double>::full(sshape, nan<double>());
      Tensor<double> rstd_fast = Tensor<double>::full(sshape, nan<double>());
      Tensor<double> mean_ref = Tensor<double>::full(sshape, -777.0);
      Tensor<double> rstd_ref = Tensor<double>::full(sshape, -777.0);
      revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), groups, 1e-5, gamma.data(), beta.data(),
                                     y_fast.view(), mean_fast.data(), rstd_fast.data());
      revox::cpu::reference::group_norm_forward(x.cview(), groups, 1e-5, gamma.data(),
                                                beta.data(), y_ref.view(), mean_ref.data(),
                                                rstd_ref.data());
      CHECK(max_error(y_fast, y_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(mean_fast, mean_ref) <= 1e-12);
      CHECK(max_error(rstd_fast, rstd_ref) <= 1e-12);

      // Without mean and rstd outputs the forward gives the same y.
      Tensor<T> y_plain = Tensor<T>::full(shape, nan<T>());
      revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), groups, 1e-5, gamma.data(), beta.data(),
                                     y_plain.view(), nullptr, nullptr);
      CHECK(std::memcmp(y_plain.data(), y_fast.data(), y_fast.bytes()) == 0);

      const Tensor<T> prior_gamma = random_tensor<T>(revox::flat_shape(shape.c), rng);
      const Tensor<T> prior_beta = random_tensor<T>(revox::flat_shape(shape.c), rng);
      Tensor<T> dx_fast = Tensor<T>::full(shape, nan<T>());
      Tensor<T> dx_ref = Tensor<T>::full(shape, T(-777));
      Tensor<T> dgamma_fast = prior_gamma.clone();
      Tensor<T> dgamma_ref = prior_gamma.clone();
      Tensor<T> dbeta_fast = prior_beta.clone();
      Tensor<T> dbeta_ref = prior_beta.clone();
      revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_fast.data(),
                                      rstd_fast.data(), gamma.data(), dx_fast.view(),
                                      dgamma_fast.data(), dbeta_fast.data());
      revox::cpu::reference::group_norm_backward(x.cview(), dy.cview(), groups, mean_ref.data(),
                                                 rstd_ref.data(), gamma.data(), dx_ref.view(),
                                                 dgamma_ref.data(), dbeta_ref.data());
      CHECK(max_error(dx_fast, dx_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(dgamma_fast, dgamma_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(dbeta_fast, dbeta_ref) <= fast_path_tolerance<T>());

      // An empty dx skips the input gradient and still accumulates the parameter gradients.
      Tensor<T> dgamma_only = prior_gamma.clone();
      Tensor<T> dbeta_only = prior_beta.clone();
      revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_fast.data(),
                                      rstd_fast.data(), gamma.data(), revox::TensorView<T>{},
                                      dgamma_only.data(), dbeta_only.data());
      CHECK(std::memcmp(dgamma_only.data(), dgamma_fast.data(), dgamma_fast.bytes()) == 0);
      CHECK(std::memcmp(dbeta_only.data(), dbeta_fast.data(), dbeta_fast.bytes()) == 0);
    }
  }
}

TEST_CASE("group_norm in float keeps precision for inputs with a large offset",
          "[ops][group_norm]") {
  // Values 1000 +- 0.01: a float kernel that subtracted a float mean, or formed
  // E[x^2] - E[x]^2 in float, would be off by 1e-3 to 1 here.
  const Shape5 shape{2, 6, 5, 6, 7};
  const index_t groups = 3;
  revox::Rng rng(5);
  Tensor<float> x(shape);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(1000.0 + rng.uniform(-0.01, 0.01));
  const Tensor<float> dy = random_tensor<float>(shape, rng);
  const Tensor<float> gamma = random_tensor<float>(revox::flat_shape(6), rng, -1.5, 1.5);
  const Tensor<float> beta = random_tensor<float>(revox::flat_shape(6), rng, -1.5, 1.5);
  // The double reference sees exactly the same (float-rounded) values.
  auto to_double = [](const Tensor<float>& t) {
    Tensor<double> out(t.shape());
    for (index_t i = 0; i < t.numel(); ++i) out[i] = static_cast<double>(t[i]);
    return out;
  };
  const Tensor<double> x_d = to_double(x), dy_d = to_double(dy), gamma_d = to_double(gamma),
                       beta_d = to_double(beta);

  Tensor<float> y = Tensor<float>::full(shape, nan<float>());
  Tensor<double> mean(stats_shape(shape, groups)), rstd(stats_shape(shape, groups));
  revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), groups, 1e-5, gamma.data(), beta.data(), y.view(),
                                 mean.data(), rstd.data());
  Tensor<double> y_d(shape), mean_d(stats_shape(shape, groups)), rstd_d(stats_shape(shape, groups));
  revox::cpu::reference::group_norm_forward(x_d.cview(), groups, 1e-5, gamma_d.data(),
                                            beta_d.data(), y_d.view(), mean_d.data(),
                                            rstd_d.data());
  CHECK(max_error(y, y_d) <= 1e-6);
  CHECK(max_error(mean, mean_d) <= 1e-12);
  CHECK(max_error(rstd, rstd_d) <= 1e-9);
  // The groups really are that narrow: rstd ~ 1 / (0.01 / sqrt(3)).
  CHECK(rstd_d[0] > 100.0);

  Tensor<float> dx = Tensor<float>::full(shape, nan<float>());
  Tensor<float> dgamma = Tensor<float>::zeros(revox::flat_shape(6));
  Tensor<float> dbeta = Tensor<float>::zeros(revox::flat_shape(6));
  revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward(revox::Cpu{}, x.cview(), dy.cview(), groups, mean.data(), rstd.data(),
                                  gamma.data(), dx.view(), dgamma.data(), dbeta.data());
  Tensor<double> dx_d(shape);
  Tensor<double> dgamma_d = Tensor<double>::zeros(revox::flat_shape(6));
  Tensor<double> dbeta_d = Tensor<double>::zeros(revox::flat_shape(6));
  revox::cpu::reference::group_norm_backward(x_d.cview(), dy_d.cview(), groups, mean_d.data(),
                                             rstd_d.data(), gamma_d.data(), dx_d.view(),
                                             dgamma_d.data(), dbeta_d.data());
  CHECK(max_error(dx, dx_d) <= 1e-6);
  CHECK(max_error(dgamma, dgamma_d) <= 1e-6);
  CHECK(max_error(dbeta, dbeta_d) <= 1e-6);
}

TEMPLATE_TEST_CASE("GroupNorm output has per-group mean beta and std |gamma|",
                   "[layer][group_norm]", float, double) {
  using T = TestType;
  const Shape5 shape{2, 6, 4, 5, 6};
  revox::GroupNorm<T> layer(3, 6);
  revox::Parameters<T> params(layer);
  revox::Rng rng(11);
  layer.reset_parameters(rng);
  Tensor<T> x = random_tensor<T>(shape, rng, 2.0, 8.0);  // mean 5, variance 3
  const index_t group_size = 2 * shape.spatial();
  auto check_groups = [&](const double* expected_mean, const double* expected_std) {
    Tensor<T> y = Tensor<T>::full(shape, nan<T>());
    layer.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
    for (index_t n = 0; n < shape.n; ++n) {
      for (index_t g = 0; g < 3; ++g) {
        INFO("n " << n << ", group " << g);
        const T* values = y.cview().channel(n, 2 * g);
        double sum = 0.0, sq = 0.0;
        for (index_t i = 0; i < group_size; ++i) sum += static_cast<double>(values[i]);
        const double mean = sum / static_cast<double>(group_size);
        for (index_t i = 0; i < group_size; ++i) {
          sq += (static_cast<double>(values[i]) - mean) * (static_cast<double>(values[i]) - mean);
        }
        const double std_dev = std::sqrt(sq / static_cast<double>(group_size));
        CHECK(mean == Approx(expected_mean[g]).margin(1e-5));
        // sqrt(var / (var + eps)) with var = 3 is 1 - 1.7e-6.
        CHECK(std_dev == Approx(expected_std[g]).epsilon(1e-5));
      }
    }
  };
  const double zero[3] = {0.0, 0.0, 0.0};
  const double one[3] = {1.0, 1.0, 1.0};
  check_groups(zero, one);

  // gamma and beta constant within each group: mean beta, std |gamma|.
  const T gamma[6] = {-2, -2, T(0.5), T(0.5), 3, 3};
  const T beta[6] = {T(0.25), T(0.25), -1, -1, 4, 4};
  std::copy(gamma, gamma + 6, layer.weight().value);
  std::copy(beta, beta + 6, layer.bias().value);
  const double expected_mean[3] = {0.25, -1.0, 4.0};
  const double expected_std[3] = {2.0, 0.5, 3.0};
  check_groups(expected_mean, expected_std);
}

TEMPLATE_TEST_CASE("group_norm results do not depend on the number of threads",
                   "[ops][group_norm]", float, double) {
  using T = TestType;
  const Shape5 shape{1, 8, 16, 16, 17};
  REQUIRE(shape.numel() >= revox::cpu::detail::kGroupNormParallelMin);
  revox::Rng rng(12);
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const Tensor<T> gamma = random_tensor<T>(revox::flat_shape(8), rng);
  const Tensor<T> beta = random_tensor<T>(revox::flat_shape(8), rng);
  struct Outputs {
    Tensor<T> y, dx, dgamma, dbeta;
  };
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Outputs out{Tensor<T>(shape), Tensor<T>(shape),
                Tensor<T>::zeros(revox::flat_shape(8)), Tensor<T>::zeros(revox::flat_shape(8))};
    Tensor<double> mean(stats_shape(shape, 2)), rstd(stats_shape(shape, 2));
    revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), 2, 1e-5, gamma.data(), beta.data(), out.y.view(),
                                   mean.data(), rstd.data());
    revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward(revox::Cpu{}, x.cview(), dy.cview(), 2, mean.data(), rstd.data(),
                                    gamma.data(), out.dx.view(), out.dgamma.data(),
                                    out.dbeta.data());
    omp_set_num_threads(before);
    return out;
  };
  const Outputs one = run(1);
  for (const int threads : {2, 3}) {
    INFO(threads << " threads");
    const Outputs many = run(threads);
    CHECK(std::memcmp(one.y.data(), many.y.data(), one.y.bytes()) == 0);
    CHECK(std::memcmp(one.dx.data(), many.dx.data(), one.dx.bytes()) == 0);
    CHECK(std::memcmp(one.dgamma.data(), many.dgamma.data(), one.dgamma.bytes()) == 0);
    CHECK(std::memcmp(one.dbeta.data(), many.dbeta.data(), one.dbeta.bytes()) == 0);
  }
}

TEST_CASE("GroupNorm passes gradcheck with 1, 2 and C groups", "[layer][group_norm][gradcheck]") {
  const Shape5 shapes[] = {{1, 4, 3, 2, 3}, {2, 4, 2, 3, 1}, {2, 6, 1, 2, 3}, {1, 2, 1, 1, 5}};
  for (const Shape5& shape : shapes) {
    for (const index_t groups : {index_t{1}, index_t{2}, shape.c}) {
      INFO("shape " << shape << ", num_groups " << groups);
      revox::GroupNorm<double> layer(groups, shape.c);
      revox::Parameters<double> params(layer);
      const auto result = revox::testing::gradcheck(layer, params, shape);
      INFO(result.report);
      REQUIRE(result.passed);
    }
  }
}

TEST_CASE("DepthwiseConv3d followed by GroupNorm composes in a Sequential",
          "[layer][group_norm][depthwise_conv3d][gradcheck]") {
  using Block = revox::Sequential<revox::DepthwiseConv3d<double>, revox::GroupNorm<double>>;
  Block block(revox::DepthwiseConv3d<double>(4), revox::GroupNorm<double>(2, 4));
  revox::Parameters<double> params(block);
  std::vector<std::string> names;
  for (const auto& entry : params.entries()) names.push_back(entry.name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  const auto result = revox::testing::gradcheck(block, params, Shape5{2, 4, 3, 2, 3});
  INFO(result.report);
  REQUIRE(result.passed);
}

TEST_CASE("GroupNorm rejects misuse with readable errors", "[layer][group_norm]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(revox::GroupNorm<float>(8, 30),
                    "GroupNorm: channels (30) must be divisible by num_groups (8)");
  CHECK_THROWS_WITH(revox::GroupNorm<float>(0, 4), "GroupNorm: num_groups must be positive, got 0");
  CHECK_THROWS_WITH(revox::GroupNorm<float>(-2, 4), Contains("num_groups must be positive"));
  CHECK_THROWS_WITH(revox::GroupNorm<float>(2, 0), "GroupNorm: num_channels must be positive, got 0");
  CHECK_THROWS_WITH(revox::GroupNorm<float>(2, 4, -1e-5), Contains("eps must be finite and >= 0"));
  CHECK_THROWS_WITH(revox::GroupNorm<float>(2, 4, std::nan("")), Contains("eps"));

  revox::GroupNorm<float> layer(2, 4);
  const Shape5 shape{1, 4, 2, 3, 3};
  revox::Rng rng(1);
  Tensor<float> x = random_tensor<float>(shape, rng);
  Tensor<float> y(shape);
  CHECK_THROWS_WITH(layer.forward(revox::Cpu{}, x.cview(), y.view(), nullptr),
                    Contains("parameters are not bound"));

  revox::Parameters<float> params(layer);
  layer.reset_parameters(rng);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 6, 2, 3, 3}),
                    "GroupNorm: input channels: expected 4, got 6");
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 2, 0, 3}),
                    Contains("GroupNorm: input extents must be positive"));

  Tensor<float> y_wrong(Shape5{2, 4, 2, 3, 3});
  CHECK_THROWS_WITH(layer.forward(revox::Cpu{}, x.cview(), y_wrong.view(), nullptr),
                    Contains("GroupNorm: output shape"));

  revox::GroupNorm<float>::Saved<revox::Cpu> saved;
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y.cview(), x.view()),
                    Contains("nothing saved"));
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  CHECK(saved.mean.shape() == Shape5{1, 2, 1, 1, 1});
  Tensor<float> dx_wrong(Shape5{1, 4, 2, 3, 2});
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y.cview(), dx_wrong.view()),
                    Contains("GroupNorm::backward (dx): output shape"));
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y_wrong.cview(), x.view()),
                    Contains("GroupNorm::backward: dy shape"));
  // Backward releases what it was given: a second one without a new forward is an error.
  Tensor<float> dx(shape);
  layer.backward(revox::Cpu{}, saved, y.cview(), dx.view());
  CHECK(saved.mean.empty());
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y.cview(), dx.view()),
                    Contains("nothing saved"));

  // The kernels check their own arguments too.
  double mean[2], rstd[2];
  const float* g = layer.weight().value;
  const float* b = layer.bias().value;
  CHECK_THROWS_WITH(revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), 3, 1e-5, g, b, y.view(), mean, rstd),
                    "group_norm_forward: channels (4) must be divisible by num_groups (3)");
  CHECK_THROWS_WITH(revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), 0, 1e-5, g, b, y.view(), mean, rstd),
                    Contains("num_groups must be positive"));
  CHECK_THROWS_WITH(
      revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward(revox::Cpu{}, x.cview(), 2, 1e-5, g, b, y_wrong.view(), mean, rstd),
      Contains("group_norm_forward: y shape"));
  CHECK_THROWS_WITH(revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward(revox::Cpu{}, x.cview(), y.cview(), 2, mean, rstd, g,
                                                    dx_wrong.view(), layer.weight().grad,
                                                    layer.bias().grad),
                    Contains("group_norm_backward: dx shape"));
}

TEST_CASE("GroupNorm parameters follow PyTorch", "[layer][group_norm]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::GroupNorm<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::GroupNorm<double>>);
  revox::GroupNorm<float> layer(4, 12);
  CHECK(layer.num_groups() == 4);
  CHECK(layer.num_channels() == 12);
  CHECK(layer.eps() == 1e-5);
  std::vector<std::string> names;
  std::vector<revox::ParamShape> shapes;
  layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
    names.push_back(name);
    shapes.push_back(p.shape);
  });
  REQUIRE(names == std::vector<std::string>{"weight", "bias"});
  CHECK(shapes[0] == revox::ParamShape{12});
  CHECK(shapes[1] == revox::ParamShape{12});
  CHECK(layer.output_shape(Shape5{2, 12, 5, 6, 7}) == Shape5{2, 12, 5, 6, 7});

  revox::Parameters<float> params(layer);
  revox::Rng rng(2);
  revox::fill_uniform(params.values(), rng, -3.0, 3.0);
  layer.reset_parameters(rng);
  for (index_t c = 0; c < 12; ++c) {
    CHECK(layer.weight().value[c] == 1.0f);
    CHECK(layer.bias().value[c] == 0.0f);
  }
}

#else  // REVOX_GPU_TESTS

// GPU parity of GroupNorm (op and layer): each runs through its dispatcher on Cuda and on Cpu
// from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77 (skipped)
// without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_group_norm.cpp.
//
// Tolerances: mean and rstd 1e-10 (double sums in another order and with FMA); y, dx float
// 1e-5, double 1e-10; dgamma, dbeta the same, relative to the largest |value|.
#include <string>
#include <type_traits>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/ops/cuda/group_norm.cuh"

namespace {

template <class T>
void test_group_norm(const Cuda& dev) {
  revox::Rng rng(205);
  const std::string prefix = std::string("group_norm<") + type_name<T>() + ">: ";
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  struct Case {
    Shape5 shape;
    index_t groups;
    double offset;
  };
  // The last case has 4 chunks per plane; the offset case checks the shifted statistics.
  for (const Case test : {Case{{2, 6, 5, 7, 9}, 3, 0.0}, Case{{2, 3, 5, 7, 9}, 1, 0.0},
                          Case{{2, 6, 5, 7, 9}, 2, 1000.0}, Case{{2, 6, 20, 24, 28}, 3, 0.0}}) {
    const Shape5 shape = test.shape;
    const double spread = test.offset == 0.0 ? 1.0 : 0.01;
    const Tensor<T> x = random_tensor<T>(shape, rng, test.offset - spread, test.offset + spread);
    const Tensor<T> dy = random_tensor<T>(shape, rng);
    revox::GroupNorm<T> layer_cpu(test.groups, shape.c);
    revox::GroupNorm<T> layer_dev(test.groups, shape.c);
    revox::Parameters<T> params_cpu(layer_cpu);
    revox::Parameters<T, Cuda> params_dev(layer_dev);
    revox::fill_uniform(layer_cpu.weight().value, shape.c, rng, 0.5, 1.5);
    revox::fill_uniform(layer_cpu.bias().value, shape.c, rng, -0.5, 0.5);
    revox::fill_uniform(layer_cpu.weight().grad, shape.c, rng, -0.5, 0.5);  // ACCUMULATED onto
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.values().data, params_cpu.values().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.grads().data, params_cpu.grads().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));

    typename revox::GroupNorm<T>::template Saved<Cpu> saved_cpu;
    Tensor<T> y = nan_tensor<T>(shape);
    Tensor<T> dx = nan_tensor<T>(shape);
    layer_cpu.forward(Cpu{}, x.cview(), y.view(), &saved_cpu);
    const Tensor<double> mean = saved_cpu.mean.clone();
    const Tensor<double> rstd = saved_cpu.rstd.clone();
    layer_cpu.backward(Cpu{}, saved_cpu, dy.cview(), dx.view());

    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    typename revox::GroupNorm<T>::template Saved<Cuda> saved_dev;
    auto y_dev = device_prefilled<T>(dev, shape);
    auto dx_dev = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
    check_close(prefix + "mean", revox::to_host(saved_dev.mean), mean, 1e-10);
    check_close(prefix + "rstd", scaled_error(revox::to_host(saved_dev.rstd), rstd), 1e-10);
    layer_dev.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tol);
    check_close(prefix + "dx", scaled_error(revox::to_host(dx_dev), dx), tol);
    Tensor<T> grads(revox::flat_shape(params_cpu.size()));
    REVOX_CUDA_CHECK(cudaMemcpy(grads.data(), params_dev.grads().data, grads.bytes(),
                                cudaMemcpyDeviceToHost));
    check_close(
        prefix + "dweight, dbias",
        max_error_same_nonfinite(grads.data(), params_cpu.grads().data, grads.numel()), tol);

    // Inference: no saved statistics (they go to scratch).
    auto y_infer = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_infer.view(), nullptr);
    check_close(prefix + "y without saved", revox::to_host(y_infer), y, tol);
  }
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_group_norm", [](const Cuda& dev, auto t) {
    test_group_norm<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
