// MaxPool3d: fast path against the reference, PyTorch's tie-breaking and NaN rules,
// flooring of odd extents, gradcheck, and misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_max_pool3d (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/max_pool3d.hpp"
#include "revox/ops/cpu/max_pool3d.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::test::random_tensor;

namespace {

using Argmax = Tensor<std::uint8_t>;

template <class T>
void fill_with(Tensor<T>& t, T value) {
  for (index_t i = 0; i < t.numel(); ++i) t[i] = value;
}

Shape5 pooled(Shape5 in) { return Shape5{in.n, in.c, in.d / 2, in.h / 2, in.w / 2}; }

// Max pooling only selects and routes values, so results must agree bit for bit.
template <class T>
void require_identical(const Tensor<T>& actual, const Tensor<T>& expected, const std::string& what) {
  REQUIRE(actual.shape() == expected.shape());
  index_t bad = 0;
  index_t first = -1;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const bool same = (std::isnan(static_cast<double>(actual[i])) &&
                       std::isnan(static_cast<double>(expected[i]))) ||
                      actual[i] == expected[i];
    if (!same && bad++ == 0) first = i;
  }
  INFO(what << ": " << bad << " mismatches; first at " << first << ": "
            << (first >= 0 ? +actual[first] : 0) << " vs " << (first >= 0 ? +expected[first] : 0));
  REQUIRE(bad == 0);
}

const Shape5 kShapes[] = {{1, 2, 5, 6, 7}, {2, 3, 2, 2, 2}, {1, 1, 3, 3, 3},
                          {1, 4, 4, 5, 2}, {2, 1, 7, 2, 3}, {1, 2, 2, 3, 40},
                          {1, 2, 33, 34, 35}};  // the last one is large enough to run parallel

}  // namespace

TEMPLATE_TEST_CASE("max_pool3d: fast path matches the reference", "[layer][max_pool3d]", float,
                   double) {
  using T = TestType;
  revox::Rng rng(99);
  const T poisons[] = {std::numeric_limits<T>::quiet_NaN(), T(-7.77e7)};
  for (const Shape5& in : kShapes) {
    INFO("input " << in);
    const Shape5 out = pooled(in);
    const Tensor<T> x = random_tensor<T>(in, rng, -1.0, 1.0);
    const Tensor<T> dy = random_tensor<T>(out, rng, -1.0, 1.0);

    Tensor<T> y_ref = Tensor<T>::full(out, T(123));
    Argmax argmax_ref = Argmax::full(out, 0xEE);
    revox::cpu::reference::max_pool3d(x.cview(), y_ref.view(), argmax_ref.view());
    Tensor<T> dx_ref = Tensor<T>::full(in, T(123));
    revox::cpu::reference::max_pool3d_backward(dy.cview(), argmax_ref.cview(), dx_ref.view());
    for (index_t i = 0; i < argmax_ref.numel(); ++i) REQUIRE(argmax_ref[i] < 8);

    for (T poison : poisons) {
      Tensor<T> y = Tensor<T>::full(out, poison);
      Argmax argmax = Argmax::full(out, 0xFF);
      revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y.view(), argmax.view());
      require_identical(y, y_ref, "forward y");
      require_identical(argmax, argmax_ref, "forward argmax");

      Tensor<T> y_inference = Tensor<T>::full(out, poison);
      revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y_inference.view(), revox::TensorView<std::uint8_t>{});
      require_identical(y_inference, y_ref, "forward y without argmax");

      Tensor<T> dx = Tensor<T>::full(in, poison);
      revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward(revox::Cpu{}, dy.cview(), argmax.cview(), dx.view());
      require_identical(dx, dx_ref, "backward dx");
    }
  }
}

TEMPLATE_TEST_CASE("max_pool3d: ties and NaN follow PyTorch's CPU kernel",
                   "[layer][max_pool3d]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const T inf = std::numeric_limits<T>::infinity();
  struct Case {
    const char* what;
    T window[8];  // in (kd, kh, kw) order
    int argmax;
  };
  const Case cases[] = {
      {"all equal: the first wins", {1, 1, 1, 1, 1, 1, 1, 1}, 0},
      {"equal maxima: the first wins", {0, 3, 1, 3, 2, 3, 0, 0}, 1},
      {"all -inf: the first", {-inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf}, 0},
      {"-inf then a finite value", {-inf, -inf, -5, -inf, -6, -inf, -inf, -inf}, 2},
      {"the last position", {0, 1, 2, 3, 4, 5, 6, 7}, 7},
      {"+inf", {0, 1, inf, 3, inf, 5, 6, 7}, 2},
      {"one NaN beats larger values after it", {0, 1, nan, 5, 6, 7, 8, 9}, 2},
      {"two NaNs: the last wins", {0, 1, nan, 5, 6, 7, nan, 9}, 6},
      {"NaN first", {nan, 1, 2, 3, 4, 5, 6, 7}, 0},
      {"NaN last", {9, 1, 2, 3, 4, 5, 6, nan}, 7},
  };
  constexpr index_t kCases = sizeof(cases) / sizeof(cases[0]);
  // One case per channel, repeated along W so the vectorised loop runs full and partial
  // vectors.
  constexpr index_t kRepeats = 19;
  const Shape5 in{1, kCases, 2, 2, 2 * kRepeats};
  const Shape5 out = pooled(in);
  Tensor<T> x(in);
  for (index_t c = 0; c < kCases; ++c)
    for (int k = 0; k < 8; ++k)
      for (index_t r = 0; r < kRepeats; ++r) {
        x.view().at(0, c, k / 4, (k / 2) % 2, 2 * r + k % 2) = cases[c].window[k];
      }
  Tensor<T> dy(out);
  for (index_t i = 0; i < dy.numel(); ++i) dy[i] = T(1) + static_cast<T>(i);

  for (bool fast : {true, false}) {
    INFO((fast ? "fast path" : "reference"));
    Tensor<T> y = Tensor<T>::full(out, T(-99));
    Argmax argmax = Argmax::full(out, 0xFF);
    Tensor<T> dx = Tensor<T>::full(in, nan);
    if (fast) {
      revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y.view(), argmax.view());
      revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward(revox::Cpu{}, dy.cview(), argmax.cview(), dx.view());
    } else {
      revox::cpu::reference::max_pool3d(x.cview(), y.view(), argmax.view());
      revox::cpu::reference::max_pool3d_backward(dy.cview(), argmax.cview(), dx.view());
    }
    for (index_t c = 0; c < kCases; ++c) {
      INFO(cases[c].what);
      const T expected_y = cases[c].window[cases[c].argmax];
      for (index_t r = 0; r < kRepeats; ++r) {
        REQUIRE(int{argmax.view().at(0, c, 0, 0, r)} == cases[c].argmax);
        const T value = y.view().at(0, c, 0, 0, r);
        if (std::isnan(expected_y)) {
          REQUIRE(std::isnan(value));
        } else {
          REQUIRE(value == expected_y);
        }
        const T g = dy.view().at(0, c, 0, 0, r);
        for (int k = 0; k < 8; ++k) {
          const T routed = dx.view().at(0, c, k / 4, (k / 2) % 2, 2 * r + k % 2);
          REQUIRE(routed == (k == cases[c].argmax ? g : T(0)));
        }
      }
    }
  }
}

TEST_CASE("max_pool3d: odd extents are floored and their trailing voxels get zero gradient",
          "[layer][max_pool3d]") {
  const revox::Cpu cpu;
  revox::MaxPool3d<double> pool;
  const Shape5 in{1, 2, 5, 6, 7};
  CHECK(pool.output_shape(in) == Shape5{1, 2, 2, 3, 3});
  CHECK(pool.output_shape(Shape5{1, 1, 2, 2, 2}) == Shape5{1, 1, 1, 1, 1});
  CHECK(pool.output_shape(Shape5{2, 3, 3, 3, 3}) == Shape5{2, 3, 1, 1, 1});
  // The floored-away voxels hold the largest values: they must not be read.
  Tensor<double> x = Tensor<double>::full(in, 1000.0);
  revox::Rng rng(5);
  for (index_t c = 0; c < 2; ++c)
    for (index_t d = 0; d < 4; ++d)
      for (index_t h = 0; h < 6; ++h)
        for (index_t w = 0; w < 6; ++w) x.view().at(0, c, d, h, w) = rng.uniform(-1.0, 1.0);
  const Shape5 out = pool.output_shape(in);
  Tensor<double> y(out);
  revox::MaxPool3d<double>::Saved<revox::Cpu> saved;
  pool.forward(cpu, x.cview(), y.view(), &saved);
  for (index_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] < 1.0);
  CHECK(saved.input_shape == in);
  CHECK(saved.argmax.shape() == out);
  CHECK(saved.argmax.bytes() == static_cast<std::size_t>(out.numel()));  // one byte each

  const Tensor<double> dy = Tensor<double>::full(out, 2.0);
  Tensor<double> dx = Tensor<double>::full(in, std::nan(""));
  pool.backward(cpu, saved, dy.cview(), dx.view());
  double total = 0.0;
  for (index_t c = 0; c < 2; ++c)
    for (index_t d = 0; d < 5; ++d)
      for (index_t h = 0; h < 6; ++h)
        for (index_t w = 0; w < 7; ++w) {
          const double g = dx.view().at(0, c, d, h, w);
          REQUIRE(!std::isnan(g));
          if (d == 4 || w == 6) REQUIRE(g == 0.0);
          total += g;
        }
  CHECK(total == 2.0 * static_cast<double>(out.numel()));
}

TEST_CASE("max_pool3d: gradcheck", "[layer][max_pool3d][gradcheck]") {
  revox::MaxPool3d<double> pool;
  revox::Parameters<double> params(pool);
  const Shape5 shapes[] = {{1, 1, 2, 2, 2}, {1, 2, 5, 6, 7}, {2, 3, 3, 3, 3}, {2, 1, 4, 5, 3}};
  for (const Shape5& shape : shapes) {
    const auto result = revox::testing::gradcheck(pool, params, shape);
    INFO("shape " << shape << "\n" << result.report);
    REQUIRE(result.passed);
    REQUIRE(result.checked == shape.numel());
  }
}

TEST_CASE("max_pool3d: contract and no parameters", "[layer][max_pool3d]") {
  STATIC_REQUIRE(revox::check_layer_contract<revox::MaxPool3d<float>>());
  STATIC_REQUIRE(revox::is_layer_v<revox::MaxPool3d<double>>);
  revox::MaxPool3d<double> pool;
  CHECK(revox::param_count(pool) == 0);
  revox::Rng rng(1);
  pool.reset_parameters(rng);
}

TEST_CASE("max_pool3d: misuse throws readable errors", "[layer][max_pool3d]") {
  using Catch::Contains;
  const revox::Cpu cpu;
  revox::MaxPool3d<float> pool;
  CHECK_THROWS_WITH(pool.output_shape(Shape5{1, 2, 1, 4, 4}),
                    Contains("MaxPool3d: input D (1) must be at least 2"));
  CHECK_THROWS_WITH(pool.output_shape(Shape5{1, 2, 4, 1, 4}),
                    Contains("MaxPool3d: input H (1) must be at least 2"));
  CHECK_THROWS_WITH(pool.output_shape(Shape5{1, 2, 4, 4, 1}),
                    Contains("MaxPool3d: input W (1) must be at least 2"));
  CHECK_THROWS_WITH(pool.output_shape(Shape5{1, 0, 4, 4, 4}),
                    Contains("MaxPool3d: input shape") && Contains("positive"));
  CHECK_THROWS_WITH(pool.output_shape(Shape5{0, 2, 4, 4, 4}), Contains("MaxPool3d: input shape"));

  const Shape5 in{1, 2, 4, 5, 6};
  const Tensor<float> x = Tensor<float>::full(in, 1.0f);
  Tensor<float> wrong_y(Shape5{1, 2, 2, 3, 3});
  CHECK_THROWS_WITH(pool.forward(cpu, x.cview(), wrong_y.view(), nullptr),
                    Contains("MaxPool3d: output shape") && Contains("H=3") && Contains("H=2"));

  const Tensor<float> too_thin = Tensor<float>::full(Shape5{1, 1, 2, 2, 1}, 1.0f);
  Tensor<float> y_thin(Shape5{1, 1, 1, 1, 1});
  CHECK_THROWS_WITH(pool.forward(cpu, too_thin.cview(), y_thin.view(), nullptr),
                    Contains("MaxPool3d: input W (1) must be at least 2"));

  revox::MaxPool3d<float>::Saved<revox::Cpu> saved;
  Tensor<float> y(pool.output_shape(in));
  Tensor<float> dx(in);
  CHECK_THROWS_WITH(pool.backward(cpu, saved, y.cview(), dx.view()),
                    Contains("MaxPool3d::backward: nothing was saved"));
  pool.forward(cpu, x.cview(), y.view(), &saved);
  Tensor<float> wrong_dx(Shape5{1, 2, 4, 5, 5});
  CHECK_THROWS_WITH(pool.backward(cpu, saved, y.cview(), wrong_dx.view()),
                    Contains("MaxPool3d::backward: dx shape") && Contains("input shape"));
  CHECK_THROWS_WITH(pool.backward(cpu, saved, wrong_y.cview(), dx.view()),
                    Contains("MaxPool3d::backward: dy shape"));
  // backward releases the argmax: a second backward without a new forward is refused.
  pool.backward(cpu, saved, y.cview(), dx.view());
  CHECK(saved.argmax.empty());
  CHECK_THROWS_WITH(pool.backward(cpu, saved, y.cview(), dx.view()),
                    Contains("nothing was saved"));
}

namespace {

// The forward and the backward at vector width N against the reference, bit for bit, on
// random values with ties (values rounded to a few levels) and NaNs.
template <class T, int N>
void check_max_pool_width(const Shape5& in, revox::Rng& rng) {
  INFO("N " << N << ", input " << in);
  const Shape5 out = pooled(in);
  Tensor<T> x = random_tensor<T>(in, rng, -2.0, 2.0);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = std::round(x[i]);
  for (index_t i = 5; i < x.numel(); i += 13) x[i] = std::numeric_limits<T>::quiet_NaN();
  Tensor<T> y_ref(out);
  Argmax argmax_ref(out);
  revox::cpu::reference::max_pool3d(x.cview(), y_ref.view(), argmax_ref.view());
  Tensor<T> y = Tensor<T>::full(out, T(-7.77e7));
  Argmax argmax = Argmax::full(out, 0xFF);
  revox::cpu::detail::max_pool3d_impl<T, N>(x.cview(), y.view(), argmax.view());
  require_identical(y, y_ref, "forward y");
  require_identical(argmax, argmax_ref, "forward argmax");
  // The backward at the same width routes dy by the reference's argmax.
  const Tensor<T> dy = random_tensor<T>(out, rng, -1.0, 1.0);
  Tensor<T> dx_ref(in);
  revox::cpu::reference::max_pool3d_backward(dy.cview(), argmax_ref.cview(), dx_ref.view());
  Tensor<T> dx = Tensor<T>::full(in, T(-7.77e7));
  revox::cpu::detail::max_pool3d_backward_impl<T, N>(dy.cview(), argmax_ref.cview(), dx.view());
  require_identical(dx, dx_ref, "backward dx");
}

}  // namespace

TEMPLATE_TEST_CASE("max_pool3d: fast path matches the reference at every vector width",
                   "[layer][max_pool3d]", float, double) {
  using T = TestType;
  revox::Rng rng(5);
  // W = 96 and 97: whole vector blocks and leftovers in every output row of the backward.
  const Shape5 shapes[] = {{1, 3, 5, 7, 9},  {1, 2, 2, 2, 2},  {1, 1, 4, 3, 33},
                           {2, 2, 3, 2, 64}, {1, 2, 2, 3, 96}, {1, 1, 3, 2, 97}};
  for (const Shape5& in : shapes) {
    check_max_pool_width<T, 2>(in, rng);
    check_max_pool_width<T, 4>(in, rng);
    check_max_pool_width<T, 8>(in, rng);
    check_max_pool_width<T, 16>(in, rng);
  }
}

TEST_CASE("max_pool3d: fast path matches the reference on a benchmark shape",
          "[layer][max_pool3d][slow]") {
  // revox_bench's (C, D) = (32, 64): threads and, for dx, streaming stores.
  revox::Rng rng(21);
  const Shape5 in{1, 32, 64, 64, 64};
  const Tensor<float> x = random_tensor<float>(in, rng, -1.0, 1.0);
  const Tensor<float> dy = random_tensor<float>(pooled(in), rng, -1.0, 1.0);
  Tensor<float> y(pooled(in)), y_ref(pooled(in));
  Argmax argmax(pooled(in)), argmax_ref(pooled(in));
  revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y.view(), argmax.view());
  revox::cpu::reference::max_pool3d(x.cview(), y_ref.view(), argmax_ref.view());
  require_identical(y, y_ref, "forward y");
  require_identical(argmax, argmax_ref, "forward argmax");
  Tensor<float> dx(in), dx_ref(in);
  revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward(revox::Cpu{}, dy.cview(), argmax.cview(), dx.view());
  revox::cpu::reference::max_pool3d_backward(dy.cview(), argmax_ref.cview(), dx_ref.view());
  require_identical(dx, dx_ref, "backward dx");
}

#else  // REVOX_GPU_TESTS

// GPU parity of MaxPool3d (op and layer): each runs through its dispatcher on Cuda and on Cpu
// from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77 (skipped)
// without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_max_pool3d.cpp.
//
// Tolerance: exact (y, argmax, dx); a comparison per element.
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/ops/cuda/max_pool3d.cuh"

namespace {

template <class T>
void test_max_pool3d(const Cuda& dev) {
  revox::Rng rng(203);
  const std::string prefix = std::string("max_pool3d<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 4, 6, 8}, Shape5{2, 4, 33, 34, 35}}) {
    Tensor<T> x = random_tensor<T>(in, rng);
    for (index_t i = 0; i < x.numel(); i += 3) x[i] = std::round(x[i] * T(2)) / T(2);  // ties
    for (index_t i = 5; i < x.numel(); i += 41) x[i] = nan<T>();
    const Shape5 out{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};
    const auto x_dev = revox::to_device(x);

    Tensor<T> y = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax = Tensor<std::uint8_t>::full(out, 255);
    revox::ops::max_pool3d(Cpu{}, x.cview(), y.view(), argmax.view());
    auto y_dev = device_prefilled<T>(dev, out);
    Tensor<std::uint8_t, Cuda> argmax_dev(out);
    revox::ops::fill(dev, argmax_dev.view(), std::uint8_t{77});
    revox::ops::max_pool3d(dev, x_dev.cview(), y_dev.view(), argmax_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, 0.0);
    check_close(prefix + "argmax", revox::to_host(argmax_dev), argmax, 0.0);
    auto y_only = device_prefilled<T>(dev, out);
    revox::ops::max_pool3d(dev, x_dev.cview(), y_only.view(), TensorView<std::uint8_t>{});
    check_close(prefix + "y without argmax", revox::to_host(y_only), y, 0.0);

    const Tensor<T> dy = random_tensor<T>(out, rng);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> dx = nan_tensor<T>(in);
    revox::ops::max_pool3d_backward(Cpu{}, dy.cview(), argmax.cview(), dx.view());
    auto dx_dev = device_prefilled<T>(dev, in);
    revox::ops::max_pool3d_backward(dev, dy_dev.cview(), argmax_dev.cview(), dx_dev.view());
    check_close(prefix + "dx", revox::to_host(dx_dev), dx, 0.0);

    // The layer keeps its argmax on the device.
    revox::MaxPool3d<T> layer;
    typename revox::MaxPool3d<T>::template Saved<Cuda> saved;
    auto y_layer = device_prefilled<T>(dev, out);
    auto dx_layer = device_prefilled<T>(dev, in);
    layer.forward(dev, x_dev.cview(), y_layer.view(), &saved);
    layer.backward(dev, saved, dy_dev.cview(), dx_layer.view());
    check_close(prefix + "MaxPool3d layer y", revox::to_host(y_layer), y, 0.0);
    check_close(prefix + "MaxPool3d layer dx", revox::to_host(dx_layer), dx, 0.0);
  }
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_max_pool3d", [](const Cuda& dev, auto t) {
    test_max_pool3d<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
