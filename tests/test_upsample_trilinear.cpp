// UpsampleTrilinear: hand-computed values and edge clamping, fast path against the 8-tap
// reference, determinism across thread counts, gradcheck, and misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_upsample_trilinear (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/upsample_trilinear.hpp"
#include "revox/ops/cpu/simd.hpp"
#include "revox/ops/cpu/upsample_trilinear.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::test::random_tensor;

namespace {

Shape5 doubled(Shape5 in) { return Shape5{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w}; }

template <class T>
struct Tolerance;
template <>
struct Tolerance<float> {
  static constexpr double rtol = 1e-5;
  static constexpr double atol = 1e-6;
};
template <>
struct Tolerance<double> {
  static constexpr double rtol = 1e-12;
  static constexpr double atol = 1e-14;
};

template <class T>
void require_close(const Tensor<T>& actual, const Tensor<T>& expected, const std::string& what) {
  REQUIRE(actual.shape() == expected.shape());
  index_t bad = 0;
  index_t first = -1;
  double worst = 0.0;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    const double error = std::abs(a - e);
    worst = std::max(worst, error);
    if (!(error <= Tolerance<T>::atol + Tolerance<T>::rtol * std::abs(e)) && bad++ == 0) first = i;
  }
  INFO(what << ": " << bad << " mismatches, max |diff| " << worst << "; first at " << first
            << ": " << (first >= 0 ? actual[first] : T(0)) << " vs "
            << (first >= 0 ? expected[first] : T(0)));
  REQUIRE(bad == 0);
}

// Runs the fast path or the reference on one input.
template <class T>
Tensor<T> upsample(const Tensor<T>& x, bool fast) {
  Tensor<T> y = Tensor<T>::full(doubled(x.shape()), std::numeric_limits<T>::quiet_NaN());
  if (fast) {
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y.view());
  } else {
    revox::cpu::reference::upsample_trilinear(x.cview(), y.view());
  }
  return y;
}

// A line of values along one axis (0 = D, 1 = H, 2 = W) of a 1-channel volume.
Shape5 line_shape(int axis, index_t length) {
  return Shape5{1, 1, axis == 0 ? length : 1, axis == 1 ? length : 1, axis == 2 ? length : 1};
}
index_t along(const Shape5& s, int axis, index_t i, index_t j, index_t k) {
  // (i, j, k) = position along the axis, then the two other axes.
  if (axis == 0) return s.offset(0, 0, i, j, k);
  if (axis == 1) return s.offset(0, 0, j, i, k);
  return s.offset(0, 0, j, k, i);
}

}  // namespace

TEMPLATE_TEST_CASE("upsample_trilinear: hand-computed values and clamping at the edges",
                   "[layer][upsample_trilinear]", float, double) {
  using T = TestType;
  // [a, b] -> [a, 0.75a + 0.25b, 0.25a + 0.75b, b]; with a = 2, b = 10 every value is exact.
  // [1, 5, 13] -> [1, 2, 4, 7, 11, 13]: the first and last outputs are clamped to the edges.
  struct Line {
    std::vector<T> in;
    std::vector<T> out;
  };
  const Line lines[] = {{{2, 10}, {2, 4, 8, 10}}, {{1, 5, 13}, {1, 2, 4, 7, 11, 13}}, {{3}, {3, 3}}};
  for (bool fast : {true, false}) {
    for (int axis = 0; axis < 3; ++axis) {
      for (const Line& line : lines) {
        INFO((fast ? "fast path" : "reference") << ", axis " << axis << ", length "
                                               << line.in.size());
        const auto length = static_cast<index_t>(line.in.size());
        const Shape5 in = line_shape(axis, length);
        Tensor<T> x(in);
        for (index_t i = 0; i < length; ++i) x[along(in, axis, i, 0, 0)] = line.in[i];
        const Tensor<T> y = upsample(x, fast);
        // The other two axes have size 1 -> 2, and just repeat the line.
        for (index_t i = 0; i < 2 * length; ++i)
          for (index_t j = 0; j < 2; ++j)
            for (index_t k = 0; k < 2; ++k) {
              REQUIRE(y[along(y.shape(), axis, i, j, k)] == line.out[i]);
            }
      }
    }
    // 1x1x1: all eight outputs are the input.
    const Tensor<T> one = Tensor<T>::full(Shape5{1, 1, 1, 1, 1}, T(-4.25));
    const Tensor<T> y = upsample(one, fast);
    for (index_t i = 0; i < 8; ++i) REQUIRE(y[i] == T(-4.25));
  }
}

TEMPLATE_TEST_CASE("upsample_trilinear: hand-computed backward", "[layer][upsample_trilinear]",
                   float, double) {
  using T = TestType;
  // Input [a, b] along W; every one of the four output rows gets dy = [1, 2, 3, 4]:
  //   dx[0] = 4 * (1 + 0.75 * 2 + 0.25 * 3) = 13,  dx[1] = 4 * (0.25 * 2 + 0.75 * 3 + 4) = 27.
  const Shape5 in{1, 1, 1, 1, 2};
  Tensor<T> dy(doubled(in));
  for (index_t r = 0; r < 4; ++r)
    for (index_t w = 0; w < 4; ++w) dy[r * 4 + w] = static_cast<T>(w + 1);
  for (bool fast : {true, false}) {
    INFO((fast ? "fast path" : "reference"));
    Tensor<T> dx = Tensor<T>::full(in, std::numeric_limits<T>::quiet_NaN());
    if (fast) {
      revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx.view());
    } else {
      revox::cpu::reference::upsample_trilinear_backward(dy.cview(), dx.view());
    }
    CHECK(dx[0] == T(13));
    CHECK(dx[1] == T(27));
  }
}

TEMPLATE_TEST_CASE("upsample_trilinear: fast path matches the reference",
                   "[layer][upsample_trilinear]", float, double) {
  using T = TestType;
  revox::Rng rng(31);
  const Shape5 shapes[] = {{1, 1, 1, 1, 1}, {1, 2, 2, 3, 4}, {2, 3, 5, 6, 7},
                           {1, 1, 3, 1, 2}, {1, 2, 1, 7, 1}, {1, 1, 2, 2, 33}};
  const T poisons[] = {std::numeric_limits<T>::quiet_NaN(), T(-7.77e7)};
  for (const Shape5& in : shapes) {
    INFO("input " << in);
    const Shape5 out = doubled(in);
    const Tensor<T> x = random_tensor<T>(in, rng, -1.0, 1.0);
    const Tensor<T> dy = random_tensor<T>(out, rng, -1.0, 1.0);
    Tensor<T> y_ref = Tensor<T>::full(out, T(123));
    revox::cpu::reference::upsample_trilinear(x.cview(), y_ref.view());
    Tensor<T> dx_ref = Tensor<T>::full(in, T(123));
    revox::cpu::reference::upsample_trilinear_backward(dy.cview(), dx_ref.view());
    for (T poison : poisons) {
      Tensor<T> y = Tensor<T>::full(out, poison);
      revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y.view());
      require_close(y, y_ref, "forward");
      Tensor<T> dx = Tensor<T>::full(in, poison);
      revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx.view());
      require_close(dx, dx_ref, "backward");
    }
    // Every output's weights sum to 1, so the gradient's total is dy's total.
    double dx_total = 0.0;
    double dy_total = 0.0;
    for (index_t i = 0; i < dx_ref.numel(); ++i) dx_total += dx_ref[i];
    for (index_t i = 0; i < dy.numel(); ++i) dy_total += dy[i];
    CHECK(dx_total == Approx(dy_total).epsilon(1e-5).margin(1e-5));
  }
}

TEST_CASE("upsample_trilinear: results do not depend on the thread count",
          "[layer][upsample_trilinear]") {
  revox::Rng rng(8);
  // Large enough (262144 outputs) for the kernels to run in parallel.
  const Shape5 in{1, 4, 16, 16, 16};
  const Tensor<float> x = random_tensor<float>(in, rng, -1.0, 1.0);
  const Tensor<float> dy = random_tensor<float>(doubled(in), rng, -1.0, 1.0);
  const int threads_before = omp_get_max_threads();
  Tensor<float> y_by_threads[2] = {Tensor<float>(doubled(in)), Tensor<float>(doubled(in))};
  Tensor<float> dx_by_threads[2] = {Tensor<float>(in), Tensor<float>(in)};
  const int counts[2] = {1, 3};
  for (int i = 0; i < 2; ++i) {
    omp_set_num_threads(counts[i]);
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y_by_threads[i].view());
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx_by_threads[i].view());
  }
  omp_set_num_threads(threads_before);
  CHECK(std::memcmp(y_by_threads[0].data(), y_by_threads[1].data(), y_by_threads[0].bytes()) == 0);
  CHECK(std::memcmp(dx_by_threads[0].data(), dx_by_threads[1].data(), dx_by_threads[0].bytes()) ==
        0);
}

TEST_CASE("upsample_trilinear: gradcheck", "[layer][upsample_trilinear][gradcheck]") {
  revox::UpsampleTrilinear<double> up;
  revox::Parameters<double> params(up);
  const Shape5 shapes[] = {{1, 1, 1, 1, 1}, {1, 2, 2, 3, 4}, {2, 1, 3, 2, 3}, {1, 1, 5, 6, 7},
                           {2, 3, 1, 2, 1}};
  for (const Shape5& shape : shapes) {
    const auto result = revox::testing::gradcheck(up, params, shape);
    INFO("shape " << shape << "\n" << result.report);
    REQUIRE(result.passed);
    REQUIRE(result.checked == shape.numel());
  }
}

TEST_CASE("upsample_trilinear: contract, saved shape and no parameters",
          "[layer][upsample_trilinear]") {
  STATIC_REQUIRE(revox::check_layer_contract<revox::UpsampleTrilinear<float>>());
  STATIC_REQUIRE(revox::is_layer_v<revox::UpsampleTrilinear<double>>);
  revox::UpsampleTrilinear<double> up;
  CHECK(revox::param_count(up) == 0);
  revox::Rng rng(1);
  up.reset_parameters(rng);
  CHECK(up.output_shape(Shape5{2, 3, 5, 6, 7}) == Shape5{2, 3, 10, 12, 14});
  const Tensor<double> x = Tensor<double>::full(Shape5{1, 2, 3, 1, 2}, 1.0);
  Tensor<double> y(up.output_shape(x.shape()));
  revox::UpsampleTrilinear<double>::Saved<revox::Cpu> saved;
  up.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  CHECK(saved.input_shape == x.shape());
}

TEST_CASE("upsample_trilinear: misuse throws readable errors", "[layer][upsample_trilinear]") {
  using Catch::Contains;
  const revox::Cpu cpu;
  revox::UpsampleTrilinear<float> up;
  CHECK_THROWS_WITH(up.output_shape(Shape5{1, 2, 0, 4, 4}),
                    Contains("UpsampleTrilinear: input shape") && Contains("positive"));
  CHECK_THROWS_WITH(up.output_shape(Shape5{1, -2, 3, 4, 4}),
                    Contains("UpsampleTrilinear: input shape"));

  const Shape5 in{1, 2, 3, 4, 5};
  const Tensor<float> x = Tensor<float>::full(in, 1.0f);
  Tensor<float> wrong_y(Shape5{1, 2, 6, 8, 9});
  CHECK_THROWS_WITH(up.forward(cpu, x.cview(), wrong_y.view(), nullptr),
                    Contains("UpsampleTrilinear: output shape") && Contains("W=9") &&
                        Contains("W=10"));

  revox::UpsampleTrilinear<float>::Saved<revox::Cpu> saved;
  Tensor<float> y(up.output_shape(in));
  Tensor<float> dx(in);
  CHECK_THROWS_WITH(up.backward(cpu, saved, y.cview(), dx.view()),
                    Contains("UpsampleTrilinear::backward: nothing was saved"));
  up.forward(cpu, x.cview(), y.view(), &saved);
  Tensor<float> wrong_dx(Shape5{1, 3, 3, 4, 5});
  CHECK_THROWS_WITH(up.backward(cpu, saved, y.cview(), wrong_dx.view()),
                    Contains("UpsampleTrilinear::backward: dx shape") && Contains("input shape"));
  CHECK_THROWS_WITH(up.backward(cpu, saved, wrong_y.cview(), dx.view()),
                    Contains("UpsampleTrilinear::backward: dy shape"));
  CHECK_NOTHROW(up.backward(cpu, saved, y.cview(), revox::TensorView<float>{}));
}

namespace {

// Equal where both are NaN, else within the tolerance (inf only equal to the same inf).
template <class T>
void require_close_or_both_nan(const Tensor<T>& actual, const Tensor<T>& expected,
                               const std::string& what) {
  REQUIRE(actual.shape() == expected.shape());
  index_t bad = 0;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    const bool same = (std::isnan(a) && std::isnan(e)) || a == e ||
                      std::abs(a - e) <= Tolerance<T>::atol + Tolerance<T>::rtol * std::abs(e);
    if (!same) ++bad;
  }
  INFO(what << ": " << bad << " mismatches");
  REQUIRE(bad == 0);
}

// The vector fast paths at width N: forward and backward against the reference, on random
// values and on values with infinities (whose zero-weight edge taps must give NaN as in
// PyTorch).
template <class T, int N>
void check_upsample_width(const Shape5& in, revox::Rng& rng) {
  INFO("N " << N << ", input " << in);
  const Shape5 out = doubled(in);
  for (const bool with_inf : {false, true}) {
    INFO("with infinities " << with_inf);
    Tensor<T> x = random_tensor<T>(in, rng, -1.0, 1.0);
    Tensor<T> dy = random_tensor<T>(out, rng, -1.0, 1.0);
    if (with_inf) {
      for (index_t i = 0; i < x.numel(); i += 7) x[i] = std::numeric_limits<T>::infinity();
      for (index_t i = 3; i < dy.numel(); i += 11) dy[i] = -std::numeric_limits<T>::infinity();
    }
    Tensor<T> y_ref = Tensor<T>::full(out, T(123));
    revox::cpu::reference::upsample_trilinear(x.cview(), y_ref.view());
    Tensor<T> dx_ref = Tensor<T>::full(in, T(123));
    revox::cpu::reference::upsample_trilinear_backward(dy.cview(), dx_ref.view());
    Tensor<T> y = Tensor<T>::full(out, std::numeric_limits<T>::quiet_NaN());
    revox::cpu::detail::upsample_trilinear_impl<T, N>(x.cview(), y.view());
    Tensor<T> dx = Tensor<T>::full(in, std::numeric_limits<T>::quiet_NaN());
    revox::cpu::detail::upsample_trilinear_backward_impl<T, N>(dy.cview(), dx.view());
    if (with_inf) {
      require_close_or_both_nan(y, y_ref, "forward");
      require_close_or_both_nan(dx, dx_ref, "backward");
    } else {
      require_close(y, y_ref, "forward");
      require_close(dx, dx_ref, "backward");
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("upsample_trilinear: fast paths match the reference at every vector width",
                   "[layer][upsample_trilinear]", float, double) {
  using T = TestType;
  revox::Rng rng(77);
  // W from 1 to 40: no whole vector, exactly one or two, and whole vectors plus leftovers.
  const Shape5 shapes[] = {{1, 3, 5, 7, 9}, {1, 1, 2, 3, 1},  {1, 2, 3, 2, 2},  {1, 1, 2, 2, 3},
                           {1, 2, 2, 3, 4}, {2, 1, 3, 2, 16}, {1, 1, 2, 3, 17}, {1, 2, 2, 2, 40}};
  for (const Shape5& in : shapes) {
    check_upsample_width<T, 2>(in, rng);
    check_upsample_width<T, 4>(in, rng);
    check_upsample_width<T, 8>(in, rng);
    check_upsample_width<T, 16>(in, rng);
  }
}

TEST_CASE("upsample_trilinear: fast path matches the reference on a benchmark shape",
          "[layer][upsample_trilinear][slow]") {
  // revox_bench's (C, D) = (32, 64) output: large enough for streaming stores and threads.
  revox::Rng rng(12);
  const Shape5 in{1, 32, 32, 32, 32};
  const Tensor<float> x = random_tensor<float>(in, rng, -1.0, 1.0);
  const Tensor<float> dy = random_tensor<float>(doubled(in), rng, -1.0, 1.0);
  Tensor<float> y(doubled(in)), y_ref(doubled(in));
  revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y.view());
  revox::cpu::reference::upsample_trilinear(x.cview(), y_ref.view());
  require_close(y, y_ref, "forward");
  Tensor<float> dx(in), dx_ref(in);
  revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx.view());
  revox::cpu::reference::upsample_trilinear_backward(dy.cview(), dx_ref.view());
  require_close(dx, dx_ref, "backward");
}

TEMPLATE_TEST_CASE("simd lane permutations equal their portable definitions",
                   "[layer][upsample_trilinear][simd]", float, double) {
  using T = TestType;
  namespace simd = revox::cpu::simd;
  constexpr int N = 8;
  using V = simd::Vec<T, N>;
  T lanes_a[N], lanes_b[N];
  for (int i = 0; i < N; ++i) {
    lanes_a[i] = static_cast<T>(i + 1);
    lanes_b[i] = static_cast<T>(-(i + 1) * 10);
  }
  V a{}, b{};
  simd::load<T, N>(a, lanes_a);
  simd::load<T, N>(b, lanes_b);
  auto same = [](const V& x, const V& y) { return std::memcmp(&x, &y, sizeof(V)) == 0; };
  V lo{}, hi{}, lo_p{}, hi_p{};
  simd::interleave<T, N>(a, b, lo, hi);
  simd::portable::interleave<T, N>(a, b, lo_p, hi_p);
  CHECK(same(lo, lo_p));
  CHECK(same(hi, hi_p));
  CHECK(lo[0] == T(1));
  CHECK(lo[1] == T(-10));
  CHECK(hi[N - 1] == T(-N * 10));
  V even{}, odd{}, even_p{}, odd_p{};
  simd::deinterleave<T, N>(lo, hi, even, odd);
  simd::portable::deinterleave<T, N>(lo, hi, even_p, odd_p);
  CHECK(same(even, a));
  CHECK(same(odd, b));
  CHECK(same(even_p, a));
  CHECK(same(odd_p, b));
  V left{}, right{}, left_p{}, right_p{};
  simd::shift_in<T, N>(b, a, left);
  simd::shift_out<T, N>(a, b, right);
  simd::portable::shift_in<T, N>(b, a, left_p);
  simd::portable::shift_out<T, N>(a, b, right_p);
  CHECK(same(left, left_p));
  CHECK(same(right, right_p));
  CHECK(left[0] == T(-N * 10));
  CHECK(left[1] == T(1));
  CHECK(right[N - 2] == T(N));
  CHECK(right[N - 1] == T(-10));
}

#else  // REVOX_GPU_TESTS

// GPU parity of UpsampleTrilinear (op and layer): each runs through its dispatcher on Cuda and
// on Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_upsample_trilinear.cpp.
//
// Tolerance (worst |gpu - cpu| / max(1, |cpu|)): float 1e-5, double 1e-12; nvcc contracts
// a * b + c into FMA, the CPU build does not, so sums of weighted taps differ in the last
// bits.
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/ops/cuda/upsample_trilinear.cuh"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
void test_upsample_trilinear(const Cuda& dev) {
  revox::Rng rng(204);
  const std::string prefix = std::string("upsample_trilinear<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 1, 1, 1}, Shape5{2, 4, 17, 18, 19}}) {
    const Shape5 out{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
    const Tensor<T> x = random_tensor<T>(in, rng);
    const Tensor<T> dy = random_tensor<T>(out, rng);
    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> y = nan_tensor<T>(out);
    Tensor<T> dx = nan_tensor<T>(in);
    revox::ops::upsample_trilinear(Cpu{}, x.cview(), y.view());
    revox::ops::upsample_trilinear_backward(Cpu{}, dy.cview(), dx.view());

    revox::UpsampleTrilinear<T> layer;
    typename revox::UpsampleTrilinear<T>::template Saved<Cuda> saved;
    auto y_dev = device_prefilled<T>(dev, out);
    auto dx_dev = device_prefilled<T>(dev, in);
    layer.forward(dev, x_dev.cview(), y_dev.view(), &saved);
    layer.backward(dev, saved, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tolerance<T>());
    check_close(prefix + "dx", revox::to_host(dx_dev), dx, tolerance<T>());
  }
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_upsample_trilinear", [](const Cuda& dev, auto t) {
    test_upsample_trilinear<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
