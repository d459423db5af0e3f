// ReLU, ReLU6 and LeakyReLU: fast path against the reference, PyTorch's values at the kinks
// and for NaN, gradcheck away from the kinks, and misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_activations (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/activations.hpp"
#include "revox/ops/cpu/activations.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::test::random_tensor;

namespace {

enum class Kind { relu, relu6, leaky_relu };
constexpr Kind kKinds[] = {Kind::relu, Kind::relu6, Kind::leaky_relu};
constexpr double kSlope = 0.2;

const char* name(Kind kind) {
  switch (kind) {
    case Kind::relu: return "ReLU";
    case Kind::relu6: return "ReLU6";
    case Kind::leaky_relu: return "LeakyReLU";
  }
  return "?";
}

template <class T>
void fast_forward(Kind kind, revox::TensorView<const T> x, revox::TensorView<T> y) {
  switch (kind) {
    case Kind::relu: revox::ops::ActivationKernels<revox::Cpu>::relu(revox::Cpu{}, x, y); break;
    case Kind::relu6: revox::ops::ActivationKernels<revox::Cpu>::relu6(revox::Cpu{}, x, y); break;
    case Kind::leaky_relu: revox::ops::ActivationKernels<revox::Cpu>::leaky_relu(revox::Cpu{}, x, y, static_cast<T>(kSlope)); break;
  }
}
template <class T>
void reference_forward(Kind kind, revox::TensorView<const T> x, revox::TensorView<T> y) {
  switch (kind) {
    case Kind::relu: revox::cpu::reference::relu(x, y); break;
    case Kind::relu6: revox::cpu::reference::relu6(x, y); break;
    case Kind::leaky_relu: revox::cpu::reference::leaky_relu(x, y, static_cast<T>(kSlope)); break;
  }
}
template <class T>
void fast_backward(Kind kind, revox::TensorView<const T> x, revox::TensorView<const T> dy,
                   revox::TensorView<T> dx) {
  switch (kind) {
    case Kind::relu: revox::ops::ActivationKernels<revox::Cpu>::relu_backward(revox::Cpu{}, x, dy, dx); break;
    case Kind::relu6: revox::ops::ActivationKernels<revox::Cpu>::relu6_backward(revox::Cpu{}, x, dy, dx); break;
    case Kind::leaky_relu: revox::ops::ActivationKernels<revox::Cpu>::leaky_relu_backward(revox::Cpu{}, x, dy, dx, static_cast<T>(kSlope)); break;
  }
}
template <class T>
void reference_backward(Kind kind, revox::TensorView<const T> x, revox::TensorView<const T> dy,
                        revox::TensorView<T> dx) {
  switch (kind) {
    case Kind::relu: revox::cpu::reference::relu_backward(x, dy, dx); break;
    case Kind::relu6: revox::cpu::reference::relu6_backward(x, dy, dx); break;
    case Kind::leaky_relu:
      revox::cpu::reference::leaky_relu_backward(x, dy, dx, static_cast<T>(kSlope));
      break;
  }
}

template <class T>
void fill_with(Tensor<T>& t, T value) {
  for (index_t i = 0; i < t.numel(); ++i) t[i] = value;
}

// Element-wise activations are exact: the fast path must agree bit for bit (NaN == NaN).
template <class T>
void require_identical(const Tensor<T>& actual, const Tensor<T>& expected, const std::string& what) {
  REQUIRE(actual.shape() == expected.shape());
  index_t bad = 0;
  index_t first = -1;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const bool same = (std::isnan(actual[i]) && std::isnan(expected[i])) || actual[i] == expected[i];
    if (!same) {
      if (bad++ == 0) first = i;
    }
  }
  INFO(what << ": " << bad << " mismatches; first at " << first << ": "
            << (first >= 0 ? actual[first] : T(0)) << " vs "
            << (first >= 0 ? expected[first] : T(0)));
  REQUIRE(bad == 0);
}

// Random values in [-8, 8) with the special points mixed in.
template <class T>
Tensor<T> activation_input(Shape5 shape, revox::Rng& rng, bool with_nan) {
  Tensor<T> x = random_tensor<T>(shape, rng, -8.0, 8.0);
  const T specials[] = {T(0), -T(0), T(6), T(-6), std::numeric_limits<T>::denorm_min(),
                        std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                        std::nextafter(T(6), T(7)), std::nextafter(T(6), T(5))};
  index_t k = 0;
  for (T v : specials) {
    if (k < x.numel()) x[k] = v;
    k += 3;
  }
  if (with_nan && x.numel() > 1) x[x.numel() - 1] = std::numeric_limits<T>::quiet_NaN();
  return x;
}

const Shape5 kShapes[] = {{1, 1, 1, 1, 1}, {1, 3, 5, 6, 7}, {2, 2, 2, 3, 2},
                          {1, 4, 3, 3, 3}, {2, 1, 3, 2, 5},
                          {1, 2, 33, 34, 35}};  // the last one is large enough to run parallel

// Moves inputs off the kinks at 0 and 6 so that central differences see one linear piece.
Tensor<double> input_away_from_kinks(Shape5 shape, std::uint64_t seed) {
  revox::Rng rng(seed);
  Tensor<double> x = random_tensor<double>(shape, rng, -8.0, 8.0);
  for (index_t i = 0; i < x.numel(); ++i) {
    while (std::abs(x[i]) <= 0.01 || std::abs(x[i] - 6.0) <= 0.01) x[i] += 0.05;
  }
  return x;
}

template <class Layer>
void gradcheck_layer(Layer& layer) {
  revox::Parameters<double> params(layer);
  const Shape5 shapes[] = {{1, 1, 1, 1, 1}, {1, 3, 5, 6, 7}, {2, 2, 2, 3, 3}, {2, 3, 3, 2, 1}};
  std::uint64_t seed = 7;
  for (const Shape5& shape : shapes) {
    const Tensor<double> x = input_away_from_kinks(shape, seed++);
    const auto result = revox::testing::gradcheck(layer, params, x);
    INFO("shape " << shape << "\n" << result.report);
    REQUIRE(result.passed);
    REQUIRE(result.checked == shape.numel());
  }
}

}  // namespace

TEMPLATE_TEST_CASE("activations: fast path matches the reference", "[layer][activations]",
                   float, double) {
  using T = TestType;
  revox::Rng rng(2024);
  const T poisons[] = {std::numeric_limits<T>::quiet_NaN(), T(-7.77e7)};
  for (Kind kind : kKinds) {
    for (const Shape5& shape : kShapes) {
      for (bool with_nan : {false, true}) {
        INFO(name(kind) << " at " << shape << (with_nan ? " with NaN" : ""));
        const Tensor<T> x = activation_input<T>(shape, rng, with_nan);
        const Tensor<T> dy = random_tensor<T>(shape, rng, -1.0, 1.0);
        Tensor<T> y_ref(shape);
        Tensor<T> dx_ref(shape);
        fill_with(y_ref, T(123));
        fill_with(dx_ref, T(123));
        reference_forward(kind, x.cview(), y_ref.view());
        reference_backward(kind, x.cview(), dy.cview(), dx_ref.view());
        for (T poison : poisons) {
          Tensor<T> y(shape);
          Tensor<T> dx(shape);
          fill_with(y, poison);
          fill_with(dx, poison);
          fast_forward(kind, x.cview(), y.view());
          fast_backward(kind, x.cview(), dy.cview(), dx.view());
          require_identical(y, y_ref, "forward");
          require_identical(dx, dx_ref, "backward");
        }
        // In place: y may be x itself.
        Tensor<T> in_place = x.clone();
        fast_forward(kind, in_place.cview(), in_place.view());
        require_identical(in_place, y_ref, "in-place forward");
      }
    }
  }
}

TEMPLATE_TEST_CASE("activations: PyTorch's values at the kinks and for NaN",
                   "[layer][activations]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> xs = {T(-2), T(0), -T(0), T(3), T(6), T(7), nan, -inf, inf};
  const T slope = static_cast<T>(kSlope);
  const T g = T(1.5);
  // Expected (y, dx) for dy = 1.5, from PyTorch's kernels.
  struct Row { T y[3]; T dx[3]; };  // indexed by Kind
  const Row rows[] = {
      {{T(0), T(0), slope * T(-2)}, {T(0), T(0), slope * g}},     // -2
      {{T(0), T(0), T(0)}, {T(0), T(0), slope * g}},              // 0: the kink
      {{T(0), T(0), T(0)}, {T(0), T(0), slope * g}},              // -0
      {{T(3), T(3), T(3)}, {g, g, g}},                            // 3
      {{T(6), T(6), T(6)}, {g, T(0), g}},                         // 6: ReLU6's kink
      {{T(7), T(6), T(7)}, {g, T(0), g}},                         // 7
      {{nan, nan, nan}, {g, g, slope * g}},                       // NaN
      {{T(0), T(0), -inf}, {T(0), T(0), slope * g}},              // -inf
      {{inf, T(6), inf}, {g, T(0), g}},                           // inf
  };
  const Shape5 shape{1, 1, 1, 1, static_cast<index_t>(xs.size())};
  Tensor<T> x(shape);
  for (index_t i = 0; i < shape.w; ++i) x[i] = xs[static_cast<std::size_t>(i)];
  const Tensor<T> dy = Tensor<T>::full(shape, g);
  for (Kind kind : kKinds) {
    const auto k = static_cast<std::size_t>(kind);
    Tensor<T> y_expected(shape);
    Tensor<T> dx_expected(shape);
    for (index_t i = 0; i < shape.w; ++i) {
      y_expected[i] = rows[i].y[k];
      dx_expected[i] = rows[i].dx[k];
    }
    INFO(name(kind));
    for (bool fast : {true, false}) {
      INFO((fast ? "fast path" : "reference"));
      Tensor<T> y = Tensor<T>::full(shape, T(-99));
      Tensor<T> dx = Tensor<T>::full(shape, T(-99));
      if (fast) {
        fast_forward(kind, x.cview(), y.view());
        fast_backward(kind, x.cview(), dy.cview(), dx.view());
      } else {
        reference_forward(kind, x.cview(), y.view());
        reference_backward(kind, x.cview(), dy.cview(), dx.view());
      }
      require_identical(y, y_expected, "forward");
      require_identical(dx, dx_expected, "backward");
    }
  }
  // The layers give the same, through the dispatchers.
  revox::LeakyReLU<T> leaky(kSlope);
  typename revox::LeakyReLU<T>::template Saved<revox::Cpu> saved;
  Tensor<T> y(shape);
  Tensor<T> dx(shape);
  leaky.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  leaky.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  CHECK(y[0] == slope * T(-2));
  CHECK(std::isnan(y[6]));
  CHECK(dx[1] == slope * g);
  CHECK(dx[3] == g);
}

TEST_CASE("activations: the default LeakyReLU slope is PyTorch's 0.01", "[layer][activations]") {
  revox::LeakyReLU<double> leaky;
  CHECK(leaky.negative_slope() == 0.01);
  const Tensor<double> x = Tensor<double>::full(Shape5{1, 1, 1, 1, 2}, -3.0);
  Tensor<double> y(x.shape());
  leaky.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
  CHECK(y[0] == Approx(-0.03).epsilon(1e-15));
}

TEST_CASE("activations: gradcheck ReLU", "[layer][activations][gradcheck]") {
  revox::ReLU<double> layer;
  gradcheck_layer(layer);
}

TEST_CASE("activations: gradcheck ReLU6", "[layer][activations][gradcheck]") {
  revox::ReLU6<double> layer;
  gradcheck_layer(layer);
}

TEST_CASE("activations: gradcheck LeakyReLU", "[layer][activations][gradcheck]") {
  revox::LeakyReLU<double> default_slope;
  gradcheck_layer(default_slope);
  revox::LeakyReLU<double> steep(1.7);
  gradcheck_layer(steep);
}

TEST_CASE("activations: layers satisfy the contract and have no parameters",
          "[layer][activations]") {
  STATIC_REQUIRE(revox::check_layer_contract<revox::ReLU<float>>());
  STATIC_REQUIRE(revox::is_layer_v<revox::ReLU6<double>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::LeakyReLU<float>>);
  revox::ReLU<double> relu;
  revox::ReLU6<double> relu6;
  revox::LeakyReLU<double> leaky;
  int visited = 0;
  auto count = [&](const std::string&, revox::Param<double>&) { ++visited; };
  relu.visit_params(count);
  relu6.visit_params(count);
  leaky.visit_params(count);
  CHECK(visited == 0);
  revox::Rng rng(1);
  relu.reset_parameters(rng);
  CHECK(relu.output_shape(Shape5{2, 3, 4, 5, 6}) == Shape5{2, 3, 4, 5, 6});
}

TEST_CASE("activations: misuse throws readable errors", "[layer][activations]") {
  using Catch::Contains;
  const revox::Cpu cpu;
  revox::ReLU<float> relu;
  revox::ReLU6<float> relu6;
  revox::LeakyReLU<float> leaky;
  const Shape5 shape{1, 2, 3, 4, 5};
  const Tensor<float> x = Tensor<float>::full(shape, 1.0f);
  Tensor<float> wrong(Shape5{1, 2, 3, 4, 4});
  Tensor<float> y(shape);

  CHECK_THROWS_WITH(relu.output_shape(Shape5{1, 0, 3, 4, 5}),
                    Contains("ReLU: input shape") && Contains("must have all extents positive"));
  CHECK_THROWS_WITH(relu6.output_shape(Shape5{1, 2, 3, -4, 5}), Contains("ReLU6: input shape"));
  CHECK_THROWS_WITH(relu.forward(cpu, x.cview(), wrong.view(), nullptr),
                    Contains("ReLU: output shape") && Contains("W=4") && Contains("W=5"));
  CHECK_THROWS_WITH(relu6.forward(cpu, x.cview(), wrong.view(), nullptr),
                    Contains("ReLU6: output shape"));
  CHECK_THROWS_WITH(leaky.forward(cpu, x.cview(), wrong.view(), nullptr),
                    Contains("LeakyReLU: output shape"));
  CHECK_THROWS_WITH(revox::LeakyReLU<float>(std::nan("")),
                    Contains("LeakyReLU: negative_slope must be finite"));

  revox::ReLU<float>::Saved<revox::Cpu> never_filled;
  CHECK_THROWS_WITH(relu.backward(cpu, never_filled, y.cview(), y.view()),
                    Contains("ReLU::backward: nothing was saved"));

  revox::ReLU6<float>::Saved<revox::Cpu> saved;
  relu6.forward(cpu, x.cview(), y.view(), &saved);
  Tensor<float> dx(shape);
  CHECK_THROWS_WITH(relu6.backward(cpu, saved, y.cview(), wrong.view()),
                    Contains("ReLU6::backward: dx shape") && Contains("input shape"));
  CHECK_THROWS_WITH(relu6.backward(cpu, saved, wrong.cview(), dx.view()),
                    Contains("ReLU6::backward: dy shape"));
  // An empty dx means "not wanted": nothing is computed, nothing thrown.
  CHECK_NOTHROW(relu6.backward(cpu, saved, y.cview(), revox::TensorView<float>{}));

  revox::LeakyReLU<float>::Saved<revox::Cpu> leaky_saved;
  leaky.forward(cpu, x.cview(), y.view(), &leaky_saved);
  CHECK_THROWS_WITH(leaky.backward(cpu, leaky_saved, wrong.cview(), dx.view()),
                    Contains("LeakyReLU::backward: dy shape"));
}

#else  // REVOX_GPU_TESTS

// GPU parity of the activations (ops and the LeakyReLU layer): each runs through its dispatcher
// on Cuda and on Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh).
// Exits 77 (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_activations.cpp.
//
// Tolerance: exact; one IEEE operation or a comparison per element.
#include <limits>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/activations.hpp"
#include "revox/ops/cuda/activations.cuh"

namespace {

template <class T>
void test_activations(const Cuda& dev) {
  revox::Rng rng(201);
  const Shape5 shape = kOddShape;
  Tensor<T> x = random_tensor<T>(shape, rng, -8.0, 8.0);
  x[0] = T(0);
  x[1] = T(6);
  x[2] = nan<T>();
  x[3] = std::numeric_limits<T>::infinity();
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const auto x_dev = revox::to_device(x);
  const auto dy_dev = revox::to_device(dy);
  const std::string prefix = std::string("activations<") + type_name<T>() + ">: ";
  const double slope = 0.02;

  auto forward = [&](const char* name, auto op) {
    Tensor<T> expected = nan_tensor<T>(shape);
    op(Cpu{}, x.cview(), expected.view());
    auto got = device_prefilled<T>(dev, shape);
    op(dev, x_dev.cview(), got.view());
    check_close(prefix + name, revox::to_host(got), expected, 0.0);
    auto inplace = x_dev.clone();  // y is the very view x
    op(dev, inplace.cview(), inplace.view());
    check_close(prefix + name + " in place", revox::to_host(inplace), expected, 0.0);
  };
  forward("relu", [](const auto& d, auto in, auto out) { revox::ops::relu(d, in, out); });
  forward("relu6", [](const auto& d, auto in, auto out) { revox::ops::relu6(d, in, out); });
  forward("leaky_relu", [&](const auto& d, auto in, auto out) {
    revox::ops::leaky_relu(d, in, out, slope);
  });

  auto backward = [&](const char* name, auto op) {
    Tensor<T> expected = nan_tensor<T>(shape);
    op(Cpu{}, x.cview(), dy.cview(), expected.view());
    auto got = device_prefilled<T>(dev, shape);
    op(dev, x_dev.cview(), dy_dev.cview(), got.view());
    check_close(prefix + name, revox::to_host(got), expected, 0.0);
  };
  backward("relu_backward", [](const auto& d, auto in, auto g, auto out) {
    revox::ops::relu_backward(d, in, g, out);
  });
  backward("relu6_backward", [](const auto& d, auto in, auto g, auto out) {
    revox::ops::relu6_backward(d, in, g, out);
  });
  backward("leaky_relu_backward", [&](const auto& d, auto in, auto g, auto out) {
    revox::ops::leaky_relu_backward(d, in, g, out, slope);
  });

  // The layers, saved input on the device.
  revox::LeakyReLU<T> layer(slope);
  typename revox::LeakyReLU<T>::template Saved<Cuda> saved_dev;
  typename revox::LeakyReLU<T>::template Saved<Cpu> saved_cpu;
  Tensor<T> y_cpu = nan_tensor<T>(shape);
  Tensor<T> dx_cpu = nan_tensor<T>(shape);
  layer.forward(Cpu{}, x.cview(), y_cpu.view(), &saved_cpu);
  layer.backward(Cpu{}, saved_cpu, dy.cview(), dx_cpu.view());
  auto y_dev = device_prefilled<T>(dev, shape);
  auto dx_dev = device_prefilled<T>(dev, shape);
  layer.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
  layer.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
  check_close(prefix + "LeakyReLU layer y", revox::to_host(y_dev), y_cpu, 0.0);
  check_close(prefix + "LeakyReLU layer dx", revox::to_host(dx_dev), dx_cpu, 0.0);
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_activations", [](const Cuda& dev, auto t) {
    test_activations<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
