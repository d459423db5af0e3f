// InstanceNorm3d and ops::instance_norm_*: the CPU fast path against the plain reference
// (float and double, odd extents, batch 2, with and without the affine parameters, in place,
// float inputs with a large offset), independence from the thread count, the CUDA kernel
// bodies (GroupNorm's, one group per channel, as ops/cuda/instance_norm.cuh runs them) run on
// the CPU against the reference, gradcheck of the layer, PyTorch (fixtures made
// by tests/fixtures/make_instance_norm_fixtures.py, and GroupNorm with one channel per group
// on the same data), the Plan device (planned peak == measured peak), misuse errors and the
// parameter layout.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_instance_norm (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "revox/core/plan.hpp"
#include "revox/core/profile.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/instance_norm3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/ops/instance_norm.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/ops/kernel_bodies/group_norm.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"
#include "support/torch_fixture.hpp"

using revox::Cpu;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using revox::test::max_error;
using revox::test::random_tensor;
using revox::test::fast_path_tolerance;
using revox::test::nan;

namespace {

Shape5 stats_shape(const Shape5& x) { return Shape5{x.n, x.c, 1, 1, 1}; }

template <class T>
bool same_bytes(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

// Odd extents, batch 1 to 3, a single spatial element, one channel; the last is large enough
// for the CPU kernels to run in parallel.
const Shape5 kShapes[] = {{1, 1, 1, 1, 1}, {2, 3, 5, 6, 7}, {1, 4, 1, 1, 9}, {2, 2, 3, 1, 1},
                          {3, 5, 2, 2, 2}, {1, 1, 7, 3, 5}, {2, 8, 16, 16, 17}};

// weight and bias, or nullptr for both.
template <class T>
struct Affine {
  Tensor<T> weight, bias;
  const T* w() const { return weight.empty() ? nullptr : weight.data(); }
  const T* b() const { return bias.empty() ? nullptr : bias.data(); }
};

template <class T>
Affine<T> make_affine(bool affine, index_t channels, revox::Rng& rng) {
  Affine<T> a;
  if (affine) {
    a.weight = random_tensor<T>(revox::flat_shape(channels), rng, -1.5, 1.5);
    a.bias = random_tensor<T>(revox::flat_shape(channels), rng, -1.5, 1.5);
  }
  return a;
}

}  // namespace

TEMPLATE_TEST_CASE("instance_norm fast path matches the reference", "[ops][instance_norm]", float,
                   double) {
  using T = TestType;
  const Cpu cpu;
  revox::Rng rng(41);
  for (const Shape5 shape : kShapes) {
    for (const bool affine : {true, false}) {
      INFO("shape " << shape << ", affine " << affine);
      const Tensor<T> x = random_tensor<T>(shape, rng, -1.5, 2.5);
      const Tensor<T> dy = random_tensor<T>(shape, rng);
      const Affine<T> p = make_affine<T>(affine, shape.c, rng);
      const Shape5 sshape = stats_shape(shape);

      Tensor<T> y_fast = Tensor<T>::full(shape, nan<T>());
      Tensor<T> y_ref = Tensor<T>::full(shape, T(-777));
      Tensor<double> mean_fast = Tensor<double>::full(sshape, nan<double>());
      Tensor<double> rstd_fast = Tensor<double>::full(sshape, nan<double>());
      Tensor<double> mean_ref = Tensor<double>::full(sshape, -777.0);
      Tensor<double> rstd_ref = Tensor<double>::full(sshape, -777.0);
      revox::ops::instance_norm_forward(cpu, x.cview(), p.w(), p.b(), 1e-5, y_fast.view(),
                                        mean_fast.data(), rstd_fast.data());
      revox::cpu::reference::instance_norm_forward(x.cview(), p.w(), p.b(), 1e-5, y_ref.view(),
                                                   mean_ref.data(), rstd_ref.data());
      CHECK(max_error(y_fast, y_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(mean_fast, mean_ref) <= 1e-12);
      CHECK(max_error(rstd_fast, rstd_ref) <= 1e-12);

      // Without mean and rstd, and in place (y the very memory of x): the same y.
      Tensor<T> y_plain = Tensor<T>::full(shape, nan<T>());
      revox::ops::instance_norm_forward(cpu, x.cview(), p.w(), p.b(), 1e-5, y_plain.view(),
                                        nullptr, nullptr);
      CHECK(same_bytes(y_plain, y_fast));
      Tensor<T> in_place = x.clone();
      revox::ops::instance_norm_forward(cpu, in_place.cview(), p.w(), p.b(), 1e-5,
                                        in_place.view(), nullptr, nullptr);
      CHECK(same_bytes(in_place, y_fast));

      // Parameter gradients ACCUMULATE onto what is there.
      const Tensor<T> prior_w = random_tensor<T>(revox::flat_shape(shape.c), rng);
      const Tensor<T> prior_b = random_tensor<T>(revox::flat_shape(shape.c), rng);
      Tensor<T> dx_fast = Tensor<T>::full(shape, nan<T>());
      Tensor<T> dx_ref = Tensor<T>::full(shape, T(-777));
      Tensor<T> dw_fast = prior_w.clone(), dw_ref = prior_w.clone();
      Tensor<T> db_fast = prior_b.clone(), db_ref = prior_b.clone();
      revox::ops::instance_norm_backward(cpu, x.cview(), dy.cview(), p.w(), mean_fast.data(),
                                         rstd_fast.data(), dx_fast.view(), dw_fast.data(),
                                         db_fast.data());
      revox::cpu::reference::instance_norm_backward(x.cview(), dy.cview(), p.w(), mean_ref.data(),
                                                    rstd_ref.data(), dx_ref.view(),
                                                    dw_ref.data(), db_ref.data());
      CHECK(max_error(dx_fast, dx_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(dw_fast, dw_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(db_fast, db_ref) <= fast_path_tolerance<T>());

      // An empty dx skips the input gradient and still accumulates the parameter gradients;
      // no parameter gradients gives the same dx; dx in place on dy gives the same dx.
      Tensor<T> dw_only = prior_w.clone(), db_only = prior_b.clone();
      revox::ops::instance_norm_backward(cpu, x.cview(), dy.cview(), p.w(), mean_fast.data(),
                                         rstd_fast.data(), TensorView<T>{}, dw_only.data(),
                                         db_only.data());
      CHECK(same_bytes(dw_only, dw_fast));
      CHECK(same_bytes(db_only, db_fast));
      Tensor<T> dx_only = Tensor<T>::full(shape, nan<T>());
      revox::ops::instance_norm_backward(cpu, x.cview(), dy.cview(), p.w(), mean_fast.data(),
                                         rstd_fast.data(), dx_only.view(), nullptr, nullptr);
      CHECK(same_bytes(dx_only, dx_fast));
      Tensor<T> dx_in_place = dy.clone();
      revox::ops::instance_norm_backward(cpu, x.cview(), dx_in_place.cview(), p.w(),
                                         mean_fast.data(), rstd_fast.data(), dx_in_place.view(),
                                         nullptr, nullptr);
      CHECK(same_bytes(dx_in_place, dx_fast));
      // Only one of the two parameter gradients.
      Tensor<T> db_alone = prior_b.clone();
      revox::ops::instance_norm_backward(cpu, x.cview(), dy.cview(), p.w(), mean_fast.data(),
                                         rstd_fast.data(), TensorView<T>{}, nullptr,
                                         db_alone.data());
      CHECK(same_bytes(db_alone, db_fast));
    }
  }
}

TEST_CASE("instance_norm in float keeps precision for inputs with a large offset",
          "[ops][instance_norm]") {
  // Values 1000 +- 0.01: a float kernel that subtracted a float mean, or formed
  // E[x^2] - E[x]^2 in float, would be off by 1e-3 to 1 here.
  const Shape5 shape{2, 3, 5, 6, 7};
  revox::Rng rng(6);
  Tensor<float> x(shape);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(1000.0 + rng.uniform(-0.01, 0.01));
  const Tensor<float> dy = random_tensor<float>(shape, rng);
  const Tensor<float> w = random_tensor<float>(revox::flat_shape(3), rng, -1.5, 1.5);
  const Tensor<float> b = random_tensor<float>(revox::flat_shape(3), rng, -1.5, 1.5);
  auto to_double = [](const Tensor<float>& t) {
    Tensor<double> out(t.shape());
    for (index_t i = 0; i < t.numel(); ++i) out[i] = static_cast<double>(t[i]);
    return out;
  };
  const Tensor<double> x_d = to_double(x), dy_d = to_double(dy), w_d = to_double(w),
                       b_d = to_double(b);

  Tensor<float> y = Tensor<float>::full(shape, nan<float>());
  Tensor<double> mean(stats_shape(shape)), rstd(stats_shape(shape));
  revox::ops::instance_norm_forward(Cpu{}, x.cview(), w.data(), b.data(), 1e-5, y.view(),
                                    mean.data(), rstd.data());
  Tensor<double> y_d(shape), mean_d(stats_shape(shape)), rstd_d(stats_shape(shape));
  revox::cpu::reference::instance_norm_forward(x_d.cview(), w_d.data(), b_d.data(), 1e-5,
                                               y_d.view(), mean_d.data(), rstd_d.data());
  CHECK(max_error(y, y_d) <= 1e-6);
  CHECK(max_error(mean, mean_d) <= 1e-12);
  CHECK(max_error(rstd, rstd_d) <= 1e-9);
  CHECK(rstd_d[0] > 100.0);  // the planes really are that narrow

  Tensor<float> dx = Tensor<float>::full(shape, nan<float>());
  Tensor<float> dw = Tensor<float>::zeros(revox::flat_shape(3));
  Tensor<float> db = Tensor<float>::zeros(revox::flat_shape(3));
  revox::ops::instance_norm_backward(Cpu{}, x.cview(), dy.cview(), w.data(), mean.data(),
                                     rstd.data(), dx.view(), dw.data(), db.data());
  Tensor<double> dx_d(shape);
  Tensor<double> dw_d = Tensor<double>::zeros(revox::flat_shape(3));
  Tensor<double> db_d = Tensor<double>::zeros(revox::flat_shape(3));
  revox::cpu::reference::instance_norm_backward(x_d.cview(), dy_d.cview(), w_d.data(),
                                                mean_d.data(), rstd_d.data(), dx_d.view(),
                                                dw_d.data(), db_d.data());
  // dx is a difference of terms of size rstd * |dy| ~ 200: relative to that scale.
  CHECK(max_error(dx, dx_d) <= 1e-6 * 200);
  CHECK(max_error(dw, dw_d) <= 1e-6);
  CHECK(max_error(db, db_d) <= 1e-6);
}

TEMPLATE_TEST_CASE("instance_norm results do not depend on the number of threads",
                   "[ops][instance_norm]", float, double) {
  using T = TestType;
  const Shape5 shape{2, 4, 16, 16, 17};
  REQUIRE(shape.numel() >= revox::ops::InstanceNormKernels<Cpu>::kParallelMin);
  revox::Rng rng(13);
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const Tensor<T> w = random_tensor<T>(revox::flat_shape(4), rng);
  const Tensor<T> b = random_tensor<T>(revox::flat_shape(4), rng);
  struct Outputs {
    Tensor<T> y, dx, dw, db;
  };
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Outputs out{Tensor<T>(shape), Tensor<T>(shape), Tensor<T>::zeros(revox::flat_shape(4)),
                Tensor<T>::zeros(revox::flat_shape(4))};
    Tensor<double> mean(stats_shape(shape)), rstd(stats_shape(shape));
    revox::ops::instance_norm_forward(Cpu{}, x.cview(), w.data(), b.data(), 1e-5, out.y.view(),
                                      mean.data(), rstd.data());
    revox::ops::instance_norm_backward(Cpu{}, x.cview(), dy.cview(), w.data(), mean.data(),
                                       rstd.data(), out.dx.view(), out.dw.data(), out.db.data());
    omp_set_num_threads(before);
    return out;
  };
  const Outputs one = run(1);
  for (const int threads : {2, 3}) {
    INFO(threads << " threads");
    const Outputs many = run(threads);
    CHECK(same_bytes(one.y, many.y));
    CHECK(same_bytes(one.dx, many.dx));
    CHECK(same_bytes(one.dw, many.dw));
    CHECK(same_bytes(one.db, many.db));
  }
}

TEMPLATE_TEST_CASE("emulated kernels: InstanceNorm forward and backward match the reference",
                   "[cuda][emulated][instance_norm]", float, double) {
  namespace kernels = revox::kernels;
  using T = TestType;
  const auto run = [](index_t count, const auto& body) { kernels::emulate_for_each(count, body); };
  revox::Rng rng(106);
  const double eps = 1e-5;
  const Shape5 shapes[] = {{2, 3, 5, 7, 9}, {1, 4, 1, 1, 1}, {3, 2, 1, 2, 3}, {2, 1, 9, 1, 11}};
  for (const Shape5 shape : shapes) {
    for (const index_t chunk : {index_t{7}, index_t{64}, kernels::kGroupNormChunk}) {
      for (const double offset : {0.0, 1000.0}) {
        for (const bool affine : {true, false}) {
          INFO("shape " << shape << ", chunk " << chunk << ", offset " << offset << ", affine "
                        << affine);
          const double spread = offset == 0.0 ? 1.0 : 0.01;
          const Tensor<T> x = random_tensor<T>(shape, rng, offset - spread, offset + spread);
          const Tensor<T> dy = random_tensor<T>(shape, rng);
          const Affine<T> p = make_affine<T>(affine, shape.c, rng);
          const Shape5 stats = stats_shape(shape);

          // The reference in double on the same (rounded) values.
          Tensor<double> x_d(shape), dy_d(shape);
          for (index_t i = 0; i < x.numel(); ++i) x_d[i] = static_cast<double>(x[i]);
          for (index_t i = 0; i < dy.numel(); ++i) dy_d[i] = static_cast<double>(dy[i]);
          Tensor<double> w_d, b_d;
          if (affine) {
            w_d = Tensor<double>(p.weight.shape());
            b_d = Tensor<double>(p.bias.shape());
            for (index_t c = 0; c < shape.c; ++c) {
              w_d[c] = static_cast<double>(p.weight[c]);
              b_d[c] = static_cast<double>(p.bias[c]);
            }
          }
          const double* wd = affine ? w_d.data() : nullptr;
          const double* bd = affine ? b_d.data() : nullptr;
          Tensor<double> y_ref(shape), mean_ref(stats), rstd_ref(stats);
          revox::cpu::reference::instance_norm_forward(x_d.cview(), wd, bd, eps, y_ref.view(),
                                                       mean_ref.data(), rstd_ref.data());

          // As InstanceNormKernels<Cuda>: GroupNorm's bodies with one group per channel.
          const auto dims = kernels::group_norm_dims(shape, shape.c, chunk);
          CHECK(dims.slots() == shape.n * shape.c * ((shape.spatial() + chunk - 1) / chunk));
          Tensor<double> scratch = Tensor<double>::full(
              revox::flat_shape(kernels::group_norm_forward_scratch(dims)), nan<double>());
          Tensor<T> y = Tensor<T>::full(shape, nan<T>());
          Tensor<double> mean = Tensor<double>::full(stats, nan<double>());
          Tensor<double> rstd = Tensor<double>::full(stats, nan<double>());
          kernels::group_norm_forward_stages(run, x.data(), dims, eps, p.w(), p.b(), y.data(),
                                             mean.data(), rstd.data(), scratch.data());
          // At offset 1000 the problem itself is ill-conditioned: one ulp of the mean (1.1e-13
          // in double) moves x - mean by as much, times rstd ~ 170 in y and more in dx, and the
          // bodies' shifted one-pass mean and the reference's two-pass mean differ by ulps.
          const bool is_float = std::is_same_v<T, float>;
          const double base = fast_path_tolerance<T>() * 4;
          const double y_tol = offset == 0.0 ? base : (is_float ? 4e-5 : 1e-9);
          const double dx_tol = offset == 0.0 ? base : (is_float ? 8e-3 : 1e-8);
          CHECK(max_error(mean, mean_ref) <= 1e-13);
          CHECK(max_error(rstd, rstd_ref) <= 1e-9);
          CHECK(max_error(y, y_ref) <= y_tol);

          Tensor<double> dx_ref(shape);
          Tensor<double> dw_ref = Tensor<double>::zeros(revox::flat_shape(shape.c));
          Tensor<double> db_ref = Tensor<double>::zeros(revox::flat_shape(shape.c));
          revox::cpu::reference::instance_norm_backward(x_d.cview(), dy_d.cview(), wd,
                                                        mean_ref.data(), rstd_ref.data(),
                                                        dx_ref.view(), dw_ref.data(),
                                                        db_ref.data());
          Tensor<double> grad_scratch = Tensor<double>::full(
              revox::flat_shape(kernels::group_norm_backward_scratch(dims)), nan<double>());
          Tensor<T> dx = Tensor<T>::full(shape, nan<T>());
          Tensor<T> dw = Tensor<T>::zeros(revox::flat_shape(shape.c));
          Tensor<T> db = Tensor<T>::zeros(revox::flat_shape(shape.c));
          kernels::group_norm_backward_stages(run, x.data(), dy.data(), dims, mean.data(),
                                              rstd.data(), p.w(), dx.data(), dw.data(), db.data(),
                                              grad_scratch.data());
          CHECK(max_error(dx, dx_ref) <= dx_tol);
          CHECK(max_error(dw, dw_ref) <= dx_tol);
          CHECK(max_error(db, db_ref) <= fast_path_tolerance<T>() * 4);

          // Without dx and parameter gradients but one: dx untouched, dbias the same.
          Tensor<T> db_only = Tensor<T>::zeros(revox::flat_shape(shape.c));
          Tensor<T> untouched = Tensor<T>::full(shape, nan<T>());
          kernels::group_norm_backward_stages(run, x.data(), dy.data(), dims, mean.data(),
                                              rstd.data(), p.w(), static_cast<T*>(nullptr),
                                              static_cast<T*>(nullptr), db_only.data(),
                                              grad_scratch.data());
          CHECK(same_bytes(db_only, db));
          index_t written = 0;
          for (index_t i = 0; i < untouched.numel(); ++i) written += !std::isnan(untouched[i]);
          CHECK(written == 0);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("InstanceNorm3d output has per-plane mean bias and std |weight|",
                   "[layer][instance_norm]", float, double) {
  using T = TestType;
  const Shape5 shape{2, 3, 4, 5, 6};
  revox::InstanceNorm3d<T> layer(3, true);
  revox::Parameters<T> params(layer);
  revox::Rng rng(11);
  layer.reset_parameters(rng);
  const Tensor<T> x = random_tensor<T>(shape, rng, 2.0, 8.0);  // mean 5, variance 3
  const index_t S = shape.spatial();
  auto check_planes = [&](const revox::InstanceNorm3d<T>& norm, const double* expected_mean,
                          const double* expected_std) {
    Tensor<T> y = Tensor<T>::full(shape, nan<T>());
    norm.forward(Cpu{}, x.cview(), y.view(), nullptr);
    for (index_t n = 0; n < shape.n; ++n) {
      for (index_t c = 0; c < shape.c; ++c) {
        INFO("n " << n << ", c " << c);
        const T* values = y.cview().channel(n, c);
        double sum = 0.0, sq = 0.0;
        for (index_t i = 0; i < S; ++i) sum += static_cast<double>(values[i]);
        const double mean = sum / static_cast<double>(S);
        for (index_t i = 0; i < S; ++i) {
          sq += (static_cast<double>(values[i]) - mean) * (static_cast<double>(values[i]) - mean);
        }
        CHECK(mean == Approx(expected_mean[c]).margin(1e-5));
        CHECK(std::sqrt(sq / static_cast<double>(S)) == Approx(expected_std[c]).epsilon(1e-5));
      }
    }
  };
  const double zero[3] = {0.0, 0.0, 0.0};
  const double one[3] = {1.0, 1.0, 1.0};
  check_planes(layer, zero, one);
  check_planes(revox::InstanceNorm3d<T>(3), zero, one);  // not affine: no parameters at all

  const T weight[3] = {-2, T(0.5), 3};
  const T bias[3] = {T(0.25), -1, 4};
  std::copy(weight, weight + 3, layer.weight().value);
  std::copy(bias, bias + 3, layer.bias().value);
  const double expected_mean[3] = {0.25, -1.0, 4.0};
  const double expected_std[3] = {2.0, 0.5, 3.0};
  check_planes(layer, expected_mean, expected_std);
}

TEST_CASE("InstanceNorm3d passes gradcheck, affine or not", "[layer][instance_norm][gradcheck]") {
  const Shape5 shapes[] = {{1, 3, 3, 2, 3}, {2, 2, 2, 3, 1}, {2, 4, 1, 2, 3}, {1, 1, 1, 1, 5}};
  for (const Shape5& shape : shapes) {
    for (const bool affine : {true, false}) {
      INFO("shape " << shape << ", affine " << affine);
      revox::InstanceNorm3d<double> layer(shape.c, affine);
      revox::Parameters<double> params(layer);
      const auto result = revox::testing::gradcheck(layer, params, shape);
      INFO(result.report);
      REQUIRE(result.passed);
    }
  }
}

TEST_CASE("InstanceNorm3d matches PyTorch's nn.InstanceNorm3d", "[torch][layer][instance_norm]") {
  struct Fixture {
    const char* name;
    index_t channels;
    bool affine;
  };
  for (const Fixture f : {Fixture{"instance_norm/affine_batch2_3x4x5", 3, true},
                          Fixture{"instance_norm/plain_5x6x7", 2, false}}) {
    INFO("fixture " << revox_test::fixture_path(f.name).string());
    revox::InstanceNorm3d<double> layer(f.channels, f.affine, 1e-5);
    const auto run = revox_test::run_torch_fixture(f.name, "InstanceNorm3d", layer);
    CHECK(run.checks.size() == (f.affine ? 4u : 2u));
    for (const auto& check : run.checks) {
      INFO(check.detail);
      CHECK(check.passed);
    }
  }
}

TEST_CASE("InstanceNorm3d with affine equals GroupNorm with one channel per group",
          "[layer][instance_norm][group_norm]") {
  // PyTorch documents InstanceNorm as GroupNorm with num_groups = num_channels; both revox
  // layers, run on the same data and parameters, agree to rounding.
  const Shape5 shape{2, 4, 3, 5, 7};
  revox::Rng rng(17);
  revox::InstanceNorm3d<double> inorm(4, true);
  revox::GroupNorm<double> gnorm(4, 4);
  revox::Parameters<double> ip(inorm), gp(gnorm);
  revox::fill_uniform(ip.values(), rng, -1.5, 1.5);
  std::copy(ip.values().data, ip.values().data + ip.size(), gp.values().data);
  const Tensor<double> x = random_tensor<double>(shape, rng, -2.0, 3.0);
  const Tensor<double> dy = random_tensor<double>(shape, rng);
  Tensor<double> yi(shape), yg(shape), dxi(shape), dxg(shape);
  revox::InstanceNorm3d<double>::Saved<Cpu> si;
  revox::GroupNorm<double>::Saved<Cpu> sg;
  inorm.forward(Cpu{}, x.cview(), yi.view(), &si);
  gnorm.forward(Cpu{}, x.cview(), yg.view(), &sg);
  CHECK(max_error(yi, yg) <= 1e-13);
  CHECK(max_error(si.mean, sg.mean) <= 1e-14);
  CHECK(max_error(si.rstd, sg.rstd) <= 1e-13);
  inorm.backward(Cpu{}, si, dy.cview(), dxi.view());
  gnorm.backward(Cpu{}, sg, dy.cview(), dxg.view());
  CHECK(max_error(dxi, dxg) <= 1e-13);
  CHECK(max_error(ip.grads().data, gp.grads().data, ip.size()) <= 1e-13);
}

namespace {

// Plans and measures one training step of `layer`; they must agree to the byte.
template <class L>
revox::MemoryPlan check_plan(const std::string& name, const L& layer, Shape5 input,
                             const revox::MemoryPlanOptions& options = {}) {
  const revox::MemoryPlan plan = revox::plan_layer_memory(layer, input, options);
  const std::size_t measured = revox::measure_layer_memory(layer, input, options);
  INFO(name << ": predicted " << plan.peak_bytes << " bytes (peak at " << plan.peak_at
            << "), measured " << measured);
  CHECK(measured == plan.peak_bytes);
  CHECK(plan.peak_bytes == plan.resident_bytes + plan.activation_peak_bytes);
  return plan;
}

}  // namespace

TEST_CASE("InstanceNorm3d on the Plan device: planned peak equals the measured peak",
          "[layer][instance_norm][memory_planner][plan]") {
  revox::MemoryPlanOptions with_dx;
  with_dx.input_gradient = true;
  const Shape5 input{2, 4, 9, 10, 11};
  const revox::MemoryPlan affine =
      check_plan("InstanceNorm3d affine", revox::InstanceNorm3d<float>(4, true), input, with_dx);
  // What forward keeps: mean and rstd, (N, C) doubles each (x is the caller's).
  CHECK(affine.saved_bytes == 2 * 2 * 4 * sizeof(double));
  CHECK(affine.parameter_count == 8);
  check_plan("InstanceNorm3d", revox::InstanceNorm3d<float>(4), input, with_dx);
  check_plan("InstanceNorm3d affine without dx", revox::InstanceNorm3d<double>(4, true), input);

  using Seq = revox::Sequential<revox::Conv3d<float>, revox::InstanceNorm3d<float>,
                                revox::ReLU<float>>;
  const Seq net(revox::Conv3d<float>(4, 8, 3), revox::InstanceNorm3d<float>(8, true),
                revox::ReLU<float>());
  check_plan("Sequential<Conv3d, InstanceNorm3d, ReLU>", net, input, with_dx);

  // The backward's tracked scratch (the per-plane sums) is counted on Plan as on the CPU.
  const std::size_t expected_scratch =
      sizeof(double) * static_cast<std::size_t>(
                           revox::ops::instance_norm_backward_scratch_elements(input, true));
  CHECK(expected_scratch == 2 * 2 * 4 * sizeof(double));
  CHECK(revox::ops::instance_norm_backward_scratch_elements(input, false) == 0);
  revox::Tensor<float, revox::Plan> x(input), dy(input), dx(input), dw(revox::flat_shape(4)),
      db(revox::flat_shape(4));
  revox::Tensor<double, revox::Plan> mean(stats_shape(input)), rstd(stats_shape(input));
  revox::TrackingAllocator& plan_allocator = revox::DeviceTraits<revox::Plan>::allocator();
  plan_allocator.reset_peak();
  const std::size_t before = plan_allocator.current_bytes();
  revox::ops::instance_norm_backward(revox::Plan{}, x.cview(), dy.cview(), nullptr, mean.data(),
                                     rstd.data(), dx.view(), dw.data(), db.data());
  CHECK(plan_allocator.peak_bytes() - before == expected_scratch);
  CHECK(plan_allocator.current_bytes() == before);
  revox::ops::instance_norm_forward(revox::Plan{}, x.cview(), nullptr, nullptr, 1e-5, dx.view(),
                                    mean.data(), rstd.data());
  CHECK(plan_allocator.peak_bytes() - before == expected_scratch);  // forward allocates nothing
}

TEST_CASE("instance_norm ops show in the op profile", "[ops][instance_norm]") {
  const Shape5 shape{1, 2, 3, 4, 5};
  revox::Rng rng(3);
  const Tensor<float> x = random_tensor<float>(shape, rng);
  Tensor<float> y(shape), dx(shape);
  Tensor<double> mean(stats_shape(shape)), rstd(stats_shape(shape));
  revox::OpProfile profile;
  revox::ops::instance_norm_forward(Cpu{}, x.cview(), nullptr, nullptr, 1e-5, y.view(),
                                    mean.data(), rstd.data());
  revox::ops::instance_norm_backward(Cpu{}, x.cview(), y.cview(), nullptr, mean.data(),
                                     rstd.data(), dx.view(), nullptr, nullptr);
  std::vector<std::string> names;
  for (const auto& op : profile.ops()) names.push_back(op.name);
  CHECK(std::count(names.begin(), names.end(), "ops::instance_norm_forward") == 1);
  CHECK(std::count(names.begin(), names.end(), "ops::instance_norm_backward") == 1);
}

TEST_CASE("InstanceNorm3d rejects misuse with readable errors", "[layer][instance_norm]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(revox::InstanceNorm3d<float>(0),
                    "InstanceNorm3d: channels must be positive, got 0");
  CHECK_THROWS_WITH(revox::InstanceNorm3d<float>(4, true, -1e-5),
                    Contains("eps must be finite and >= 0"));
  CHECK_THROWS_WITH(revox::InstanceNorm3d<float>(4, false, std::nan("")), Contains("eps"));

  revox::InstanceNorm3d<float> layer(4, true);
  const Shape5 shape{1, 4, 2, 3, 3};
  revox::Rng rng(1);
  const Tensor<float> x = random_tensor<float>(shape, rng);
  Tensor<float> y(shape);
  CHECK_THROWS_WITH(layer.forward(Cpu{}, x.cview(), y.view(), nullptr),
                    Contains("parameters are not bound"));

  revox::Parameters<float> params(layer);
  layer.reset_parameters(rng);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 6, 2, 3, 3}),
                    "InstanceNorm3d: input channels: expected 4, got 6");
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 2, 0, 3}),
                    Contains("InstanceNorm3d: input extents must be positive"));
  Tensor<float> y_wrong(Shape5{2, 4, 2, 3, 3});
  CHECK_THROWS_WITH(layer.forward(Cpu{}, x.cview(), y_wrong.view(), nullptr),
                    Contains("InstanceNorm3d: output shape"));

  revox::InstanceNorm3d<float>::Saved<Cpu> saved;
  Tensor<float> dx(shape);
  CHECK_THROWS_WITH(layer.backward(Cpu{}, saved, y.cview(), dx.view()), Contains("nothing saved"));
  layer.forward(Cpu{}, x.cview(), y.view(), &saved);
  CHECK(saved.mean.shape() == Shape5{1, 4, 1, 1, 1});
  Tensor<float> dx_wrong(Shape5{1, 4, 2, 3, 2});
  CHECK_THROWS_WITH(layer.backward(Cpu{}, saved, y.cview(), dx_wrong.view()),
                    Contains("InstanceNorm3d::backward (dx): output shape"));
  CHECK_THROWS_WITH(layer.backward(Cpu{}, saved, y_wrong.cview(), dx.view()),
                    Contains("InstanceNorm3d::backward: dy shape"));
  // Backward releases what it was given: a second one without a new forward is an error.
  layer.backward(Cpu{}, saved, y.cview(), dx.view());
  CHECK(saved.mean.empty());
  CHECK_THROWS_WITH(layer.backward(Cpu{}, saved, y.cview(), dx.view()), Contains("nothing saved"));

  // The dispatchers check their arguments once, for every device.
  double mean[4], rstd[4];
  CHECK_THROWS_WITH(revox::ops::instance_norm_forward(Cpu{}, x.cview(), nullptr, nullptr, 1e-5,
                                                      y_wrong.view(), mean, rstd),
                    Contains("ops::instance_norm_forward: y shape"));
  CHECK_THROWS_WITH(revox::ops::instance_norm_forward(Cpu{}, x.cview(), nullptr, nullptr, -1.0,
                                                      y.view(), mean, rstd),
                    Contains("ops::instance_norm_forward: eps must be finite"));
  CHECK_THROWS_WITH(revox::ops::instance_norm_backward(Cpu{}, x.cview(), y.cview(), nullptr,
                                                       mean, rstd, dx_wrong.view(), nullptr,
                                                       nullptr),
                    Contains("ops::instance_norm_backward: dx shape"));
  CHECK_THROWS_WITH(revox::ops::instance_norm_backward(Cpu{}, x.cview(), y_wrong.cview(),
                                                       nullptr, mean, rstd, dx.view(), nullptr,
                                                       nullptr),
                    Contains("ops::instance_norm_backward: dy shape"));
  CHECK_THROWS_WITH(revox::ops::instance_norm_backward(Cpu{}, x.cview(), y.cview(), nullptr,
                                                       nullptr, rstd, dx.view(), nullptr,
                                                       nullptr),
                    Contains("mean and rstd must not be null"));
  CHECK_THROWS_WITH(revox::ops::instance_norm_backward(revox::Plan{}, x.cview(), y.cview(),
                                                       nullptr, mean, rstd, dx_wrong.view(),
                                                       nullptr, nullptr),
                    Contains("ops::instance_norm_backward: dx shape"));
}

TEST_CASE("InstanceNorm3d parameters follow PyTorch", "[layer][instance_norm]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::InstanceNorm3d<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::InstanceNorm3d<double>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::InstanceNorm3d<float>, revox::Plan>);
  revox::InstanceNorm3d<float> plain(5);
  CHECK(plain.channels() == 5);
  CHECK_FALSE(plain.affine());
  CHECK(plain.eps() == 1e-5);
  index_t visited = 0;
  plain.visit_params([&](const std::string&, revox::Param<float>&) { ++visited; });
  CHECK(visited == 0);
  CHECK(plain.output_shape(Shape5{2, 5, 3, 4, 5}) == Shape5{2, 5, 3, 4, 5});

  revox::InstanceNorm3d<float> layer(12, true, 1e-3);
  CHECK(layer.affine());
  CHECK(layer.eps() == 1e-3);
  std::vector<std::string> names;
  std::vector<revox::ParamShape> shapes;
  layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
    names.push_back(name);
    shapes.push_back(p.shape);
  });
  REQUIRE(names == std::vector<std::string>{"weight", "bias"});
  CHECK(shapes[0] == revox::ParamShape{12});
  CHECK(shapes[1] == revox::ParamShape{12});
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

// GPU parity of InstanceNorm3d (layer and ops): forward and backward on Cuda and on Cpu from
// the same inputs and parameters, affine or not, batch 2 with odd extents, a case with several
// chunks per plane and one with a large offset; outputs pre-filled (device 12345, host NaN) so
// an element one side never writes shows as a mismatch. Exits 77 (skipped) without a GPU.
// Tolerances (worst |gpu - cpu| / max(1, |cpu|); dx relative to the largest |dx|): mean and
// rstd 1e-10 (double sums in another order, FMA); y, dx, dweight, dbias float 1e-5, double
// 1e-10.
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>

#include "cuda/cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/instance_norm3d.hpp"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/cuda/instance_norm.cuh"
#include "support/tensors.hpp"

using revox::Cpu;
using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::max_error;
using revox::test::random_tensor;

namespace {

template <class T>
Tensor<T, Cuda> device_prefilled(const Cuda& dev, Shape5 shape) {
  Tensor<T, Cuda> t(shape);
  revox::ops::fill(dev, t.view(), static_cast<T>(12345.0));
  return t;
}

void check_close(const std::string& what, double error, double tolerance) {
  CUDA_TEST_CHECK(error <= tolerance);
  if (!(error <= tolerance)) {
    std::printf("  %s: error %.3e above tolerance %.3e\n", what.c_str(), error, tolerance);
  }
}

// Worst |a - b| relative to the largest |b|.
template <class T>
double scaled_error(const Tensor<T>& a, const Tensor<T>& b) {
  double largest = 1e-300;
  for (index_t i = 0; i < b.numel(); ++i) largest = std::fmax(largest, std::abs(double(b[i])));
  if (a.numel() != b.numel()) return INFINITY;
  return max_error(a.data(), b.data(), a.numel(), largest);
}

template <class T>
void test_instance_norm(const Cuda& dev) {
  revox::Rng rng(207);
  const std::string prefix =
      std::string("instance_norm<") + (std::is_same_v<T, float> ? "float" : "double") + ">: ";
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  struct Case {
    Shape5 shape;
    double offset;
  };
  // The last case has 4 chunks per plane; the offset case checks the shifted statistics.
  for (const Case test : {Case{{2, 3, 5, 7, 9}, 0.0}, Case{{2, 3, 5, 7, 9}, 1000.0},
                          Case{{1, 2, 20, 24, 28}, 0.0}}) {
    for (const bool affine : {true, false}) {
      const Shape5 shape = test.shape;
      const std::string name = prefix + (affine ? "affine " : "") + (test.offset > 0 ? "offset " : "");
      const double spread = test.offset == 0.0 ? 1.0 : 0.01;
      const Tensor<T> x = random_tensor<T>(shape, rng, test.offset - spread, test.offset + spread);
      const Tensor<T> dy = random_tensor<T>(shape, rng);
      revox::InstanceNorm3d<T> layer_cpu(shape.c, affine);
      revox::InstanceNorm3d<T> layer_dev(shape.c, affine);
      revox::Parameters<T> params_cpu(layer_cpu);
      revox::Parameters<T, Cuda> params_dev(layer_dev);
      if (affine) {
        revox::fill_uniform(params_cpu.values(), rng, 0.5, 1.5);
        revox::fill_uniform(params_cpu.grads(), rng, -0.5, 0.5);  // ACCUMULATED onto
        revox::copy_to_device(dev, params_dev.values().data, params_cpu.values().data,
                              params_cpu.size());
        revox::copy_to_device(dev, params_dev.grads().data, params_cpu.grads().data,
                              params_cpu.size());
      }

      typename revox::InstanceNorm3d<T>::template Saved<Cpu> saved_cpu;
      Tensor<T> y = Tensor<T>::full(shape, NAN);
      Tensor<T> dx = Tensor<T>::full(shape, NAN);
      layer_cpu.forward(Cpu{}, x.cview(), y.view(), &saved_cpu);
      const Tensor<double> mean = saved_cpu.mean.clone();
      const Tensor<double> rstd = saved_cpu.rstd.clone();
      layer_cpu.backward(Cpu{}, saved_cpu, dy.cview(), dx.view());

      const auto x_dev = revox::to_device(dev, x);
      const auto dy_dev = revox::to_device(dev, dy);
      typename revox::InstanceNorm3d<T>::template Saved<Cuda> saved_dev;
      auto y_dev = device_prefilled<T>(dev, shape);
      auto dx_dev = device_prefilled<T>(dev, shape);
      layer_dev.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
      check_close(name + "mean", max_error(revox::to_host(dev, saved_dev.mean), mean), 1e-10);
      check_close(name + "rstd", scaled_error(revox::to_host(dev, saved_dev.rstd), rstd), 1e-10);
      layer_dev.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
      check_close(name + "y", max_error(revox::to_host(dev, y_dev), y), tol);
      check_close(name + "dx", scaled_error(revox::to_host(dev, dx_dev), dx), tol);
      if (affine) {
        Tensor<T> grads(revox::flat_shape(params_cpu.size()));
        revox::copy_to_host(dev, grads.data(), params_dev.grads().data, grads.numel());
        check_close(name + "dweight, dbias",
                    max_error(grads.data(), params_cpu.grads().data, grads.numel()), tol);
      }

      // Inference: no saved statistics (they go to scratch).
      auto y_infer = device_prefilled<T>(dev, shape);
      layer_dev.forward(dev, x_dev.cview(), y_infer.view(), nullptr);
      check_close(name + "y without saved", max_error(revox::to_host(dev, y_infer), y), tol);
    }
  }
}

}  // namespace

int main() {
  revox_cuda_test::require_gpu("cuda.test_instance_norm");
  try {
    revox::CudaContext ctx(0);
    const Cuda dev = ctx.device();
    test_instance_norm<float>(dev);
    test_instance_norm<double>(dev);
    REVOX_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return revox_cuda_test::finish("cuda.test_instance_norm");
}

#endif  // REVOX_GPU_TESTS
