// PointwiseConv3d and its CPU kernels: the Eigen fast path against the plain reference,
// gradients against finite differences, misuse errors, parameters, and memory.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/testing/gradcheck.hpp"

namespace {

using revox::index_t;
using revox::Shape5;
using revox::Tensor;

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// The weight gradient sums over every voxel of the batch in T (Eigen's GEMM), so its
// rounding error relative to the result grows like sqrt(voxels).
template <class T>
double weight_grad_tolerance(index_t voxels) {
  return tolerance<T>() * std::max(1.0, std::sqrt(static_cast<double>(voxels) / 64.0));
}

template <class T>
Tensor<T> random_tensor(Shape5 shape, revox::Rng& rng) {
  Tensor<T> t(shape);
  revox::fill_uniform(t.view(), rng, -1.0, 1.0);
  return t;
}

template <class T>
Tensor<T> filled(Shape5 shape, T value) {
  return Tensor<T>::full(shape, value);
}

// max over elements of |actual - expected| / (1 + |expected|); infinity for a non-finite
// actual value (an element the kernel never wrote still holds its NaN poison).
template <class T>
double max_error(const Tensor<T>& actual, const Tensor<T>& expected) {
  REQUIRE(actual.shape() == expected.shape());
  double worst = 0.0;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (!std::isfinite(a) || !std::isfinite(e)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(a - e) / (1.0 + std::abs(e)));
  }
  return worst;
}

struct Case {
  index_t n, cin, cout, d, h, w;
};

// Sizes 1 to 7 per axis (odd ones included), channel counts 1 to 7, and one wider case.
const Case kCases[] = {
    {1, 1, 1, 1, 1, 1}, {2, 3, 5, 5, 6, 7}, {1, 7, 4, 2, 3, 4}, {2, 2, 7, 3, 2, 3},
    {1, 4, 6, 1, 1, 1}, {2, 5, 1, 2, 3, 2}, {1, 20, 19, 3, 4, 5},
};

}  // namespace

TEMPLATE_TEST_CASE("cpu::pointwise_conv3d fast path matches the reference",
                   "[op][pointwise_conv3d]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  revox::Rng rng(42);
  for (const Case& c : kCases) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(c.n, c.cin, c.cout, c.d, c.h, c.w, with_bias);
      const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
      const Shape5 ys = xs.with_channels(c.cout);
      const Shape5 ws = revox::flat_shape(c.cout * c.cin);
      const Shape5 bs = revox::flat_shape(c.cout);
      const auto x = random_tensor<T>(xs, rng);
      const auto weight = random_tensor<T>(ws, rng);
      const auto bias = random_tensor<T>(bs, rng);
      const T* bias_ptr = with_bias ? bias.data() : nullptr;

      auto y_fast = filled<T>(ys, nan);
      auto y_ref = filled<T>(ys, T(12345));
      revox::cpu::pointwise_conv3d_forward(x.cview(), weight.data(), bias_ptr, y_fast.view());
      revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight.data(), bias_ptr,
                                                      y_ref.view());
      CHECK(max_error(y_fast, y_ref) <= tolerance<T>());

      const auto dy = random_tensor<T>(ys, rng);
      auto dx_fast = filled<T>(xs, nan);
      auto dx_ref = filled<T>(xs, T(-777));
      revox::cpu::pointwise_conv3d_backward_data(dy.cview(), weight.data(), dx_fast.view());
      revox::cpu::reference::pointwise_conv3d_backward_data(dy.cview(), weight.data(),
                                                            dx_ref.view());
      CHECK(max_error(dx_fast, dx_ref) <= tolerance<T>());

      // Parameter gradients accumulate: both start from the same random prior.
      const auto dw_prior = random_tensor<T>(ws, rng);
      const auto db_prior = random_tensor<T>(bs, rng);
      auto dw_fast = dw_prior.clone();
      auto dw_ref = dw_prior.clone();
      auto db_fast = db_prior.clone();
      auto db_ref = db_prior.clone();
      revox::cpu::pointwise_conv3d_backward_weight(x.cview(), dy.cview(), dw_fast.data(),
                                                   with_bias ? db_fast.data() : nullptr);
      revox::cpu::reference::pointwise_conv3d_backward_weight(
          x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
      CHECK(max_error(dw_fast, dw_ref) <= weight_grad_tolerance<T>(c.n * c.d * c.h * c.w));
      CHECK(max_error(db_fast, db_ref) <= tolerance<T>());
      if (!with_bias) CHECK(max_error(db_fast, db_prior) == 0.0);
      // The prior is really added to (guards against an accidental assign in both paths).
      CHECK(max_error(dw_ref, dw_prior) > 0.0);
    }
  }
}

TEMPLATE_TEST_CASE("cpu::pointwise_conv3d matches the reference where its OpenMP loops run in "
                   "parallel", "[op][pointwise_conv3d]", float, double) {
  // Large enough to pass the size thresholds of the bias fill and the bias gradient sums.
  using T = TestType;
  revox::Rng rng(17);
  const Shape5 xs{2, 3, 16, 16, 32};
  const Shape5 ys = xs.with_channels(9);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(27), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(9), rng);
  auto y_fast = filled<T>(ys, std::numeric_limits<T>::quiet_NaN());
  auto y_ref = filled<T>(ys, T(12345));
  revox::cpu::pointwise_conv3d_forward(x.cview(), weight.data(), bias.data(), y_fast.view());
  revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight.data(), bias.data(),
                                                  y_ref.view());
  CHECK(max_error(y_fast, y_ref) <= tolerance<T>());
  const auto dy = random_tensor<T>(ys, rng);
  auto dw_fast = Tensor<T>::zeros(revox::flat_shape(27));
  auto dw_ref = Tensor<T>::zeros(revox::flat_shape(27));
  auto db_fast = Tensor<T>::zeros(revox::flat_shape(9));
  auto db_ref = Tensor<T>::zeros(revox::flat_shape(9));
  revox::cpu::pointwise_conv3d_backward_weight(x.cview(), dy.cview(), dw_fast.data(),
                                               db_fast.data());
  revox::cpu::reference::pointwise_conv3d_backward_weight(x.cview(), dy.cview(), dw_ref.data(),
                                                          db_ref.data());
  CHECK(max_error(dw_fast, dw_ref) <= weight_grad_tolerance<T>(xs.n * xs.spatial()));
  CHECK(max_error(db_fast, db_ref) <= tolerance<T>());
}

TEST_CASE("cpu::pointwise_conv3d reference computes W x + b on a hand-checked example",
          "[op][pointwise_conv3d]") {
  // x: 2 channels, 2 voxels; W = [[1, 2], [3, 4], [5, 6]]; b = [10, 20, 30].
  Tensor<double> x(Shape5{1, 2, 1, 1, 2});
  x[0] = 1;
  x[1] = -1;  // channel 0
  x[2] = 2;
  x[3] = 0.5;  // channel 1
  const double weight[] = {1, 2, 3, 4, 5, 6};
  const double bias[] = {10, 20, 30};
  const double expected[] = {15, 10, 31, 19, 47, 28};
  Tensor<double> y_fast(Shape5{1, 3, 1, 1, 2});
  Tensor<double> y_ref(Shape5{1, 3, 1, 1, 2});
  revox::cpu::pointwise_conv3d_forward(x.cview(), weight, bias, y_fast.view());
  revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight, bias, y_ref.view());
  for (index_t i = 0; i < 6; ++i) {
    CHECK(y_fast[i] == expected[i]);
    CHECK(y_ref[i] == expected[i]);
  }
}

TEST_CASE("PointwiseConv3d passes gradcheck", "[layer][pointwise_conv3d][gradcheck]") {
  struct GradCase {
    index_t cin, cout;
    Shape5 input;
  };
  const GradCase cases[] = {
      {1, 1, Shape5{1, 1, 2, 3, 4}},
      {3, 5, Shape5{2, 3, 3, 2, 3}},
      {4, 2, Shape5{1, 4, 5, 6, 7}},
      {2, 3, Shape5{2, 2, 1, 1, 1}},
  };
  for (const auto& c : cases) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(c.cin, c.cout, c.input, with_bias);
      revox::PointwiseConv3d<double> layer(c.cin, c.cout, with_bias);
      revox::Parameters<double> params(layer);
      const auto result = revox::testing::gradcheck(layer, params, c.input);
      INFO(result.report);
      REQUIRE(result.passed);
      CHECK(result.checked == c.input.numel() + revox::param_count(layer));
    }
  }
}

TEST_CASE("PointwiseConv3d rejects misuse with readable errors",
          "[layer][pointwise_conv3d][errors]") {
  using Catch::Contains;
  using Layer = revox::PointwiseConv3d<float>;
  CHECK_THROWS_AS(Layer(0, 4), revox::Error);
  CHECK_THROWS_WITH(Layer(0, 4), Contains("PointwiseConv3d: in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(4, 0),
                    Contains("PointwiseConv3d: out_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(-3, 2), Contains("in_channels must be positive, got -3"));

  Layer layer(4, 6);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 3, 2, 2, 2}),
                    Contains("PointwiseConv3d: input channels: expected 4, got 3"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 0, 2, 2}),
                    Contains("PointwiseConv3d: input extents must be positive"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{0, 4, 2, 2, 2}),
                    Contains("PointwiseConv3d: input extents must be positive"));
  CHECK(layer.output_shape(Shape5{2, 4, 3, 5, 7}) == Shape5{2, 6, 3, 5, 7});

  const revox::Cpu dev;
  auto x = Tensor<float>::zeros(Shape5{1, 4, 2, 3, 4});
  auto y = Tensor<float>::zeros(Shape5{1, 6, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y.view(), nullptr),
                    Contains("PointwiseConv3d::forward: parameters are not bound"));

  revox::Parameters<float> params(layer);
  auto y_wrong = Tensor<float>::zeros(Shape5{1, 5, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y_wrong.view(), nullptr),
                    Contains("PointwiseConv3d: output shape (N=1, C=5, D=2, H=3, W=4) does not "
                             "match the expected (N=1, C=6, D=2, H=3, W=4)"));
  auto x_wrong = Tensor<float>::zeros(Shape5{1, 3, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x_wrong.cview(), y.view(), nullptr),
                    Contains("PointwiseConv3d: input channels: expected 4, got 3"));

  revox::PointwiseConv3d<float>::Saved<revox::Cpu> empty_saved;
  auto dx = Tensor<float>::zeros(x.shape());
  CHECK_THROWS_WITH(layer.backward(dev, empty_saved, y.cview(), dx.view()),
                    Contains("PointwiseConv3d::backward: nothing saved"));

  revox::PointwiseConv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(dev, x.cview(), y.view(), &saved);
  auto dx_wrong = Tensor<float>::zeros(Shape5{1, 4, 2, 3, 5});
  CHECK_THROWS_WITH(layer.backward(dev, saved, y.cview(), dx_wrong.view()),
                    Contains("PointwiseConv3d::backward: dx shape (N=1, C=4, D=2, H=3, W=5) does "
                             "not match the input shape (N=1, C=4, D=2, H=3, W=4)"));
  CHECK_THROWS_WITH(layer.backward(dev, saved, y_wrong.cview(), dx.view()),
                    Contains("PointwiseConv3d::backward: dy shape (N=1, C=5, D=2, H=3, W=4) does "
                             "not match the output shape (N=1, C=6, D=2, H=3, W=4)"));

  // The kernels themselves refuse mismatched batch or spatial extents.
  auto y_other_size = Tensor<float>::zeros(Shape5{1, 6, 2, 3, 5});
  CHECK_THROWS_WITH(revox::cpu::pointwise_conv3d_forward(x.cview(), params.values().data,
                                                          nullptr, y_other_size.view()),
                    Contains("must have the same batch and spatial extents"));
}

TEST_CASE("PointwiseConv3d parameters have PyTorch's names, shapes and initialisation",
          "[layer][pointwise_conv3d][params]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::PointwiseConv3d<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::PointwiseConv3d<double>>);

  for (const bool with_bias : {true, false}) {
    revox::PointwiseConv3d<float> layer(12, 5, with_bias);
    std::vector<std::string> names;
    std::vector<revox::ParamShape> shapes;
    layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
      names.push_back(name);
      shapes.push_back(p.shape);
    });
    if (with_bias) {
      REQUIRE(names == std::vector<std::string>{"weight", "bias"});
      CHECK(shapes[1] == revox::ParamShape{5});
    } else {
      REQUIRE(names == std::vector<std::string>{"weight"});
    }
    CHECK(shapes[0] == revox::ParamShape{5, 12, 1, 1, 1});
    CHECK(revox::param_count(layer) == 60 + (with_bias ? 5 : 0));
  }

  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = Cin for weight and bias.
  revox::PointwiseConv3d<double> layer(16, 64);
  revox::Parameters<double> params(layer);
  revox::Rng rng(7);
  layer.reset_parameters(rng);
  const double bound = 1.0 / std::sqrt(16.0);
  const auto& w = layer.weight();
  const auto [w_min, w_max] = std::minmax_element(w.value, w.value + w.numel());
  CHECK(*w_max <= bound);
  CHECK(*w_min >= -bound);
  CHECK(*w_max > 0.9 * bound);
  CHECK(*w_min < -0.9 * bound);
  const auto& b = layer.bias();
  const auto [b_min, b_max] = std::minmax_element(b.value, b.value + b.numel());
  CHECK(*b_max <= bound);
  CHECK(*b_min >= -bound);
  CHECK(*b_max > 0.5 * bound);
  CHECK(*b_min < -0.5 * bound);
}

TEST_CASE("PointwiseConv3d allocates no tracked memory in forward and backward",
          "[layer][pointwise_conv3d][memory]") {
  revox::PointwiseConv3d<float> layer(5, 3);
  revox::Parameters<float> params(layer);
  revox::Rng rng(3);
  layer.reset_parameters(rng);
  const auto x = random_tensor<float>(Shape5{2, 5, 3, 4, 5}, rng);
  const auto dy = random_tensor<float>(Shape5{2, 3, 3, 4, 5}, rng);
  Tensor<float> y(dy.shape());
  Tensor<float> dx(x.shape());
  auto& allocator = revox::cpu_allocator();
  const auto before = allocator.stats();
  revox::PointwiseConv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  layer.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  const auto after = allocator.stats();
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.total_allocations == before.total_allocations);
}

TEST_CASE("PointwiseConv3d backward skips dx when it is empty",
          "[layer][pointwise_conv3d]") {
  revox::PointwiseConv3d<double> layer(3, 2);
  revox::Parameters<double> params(layer);
  revox::Rng rng(11);
  layer.reset_parameters(rng);
  const auto x = random_tensor<double>(Shape5{1, 3, 2, 2, 3}, rng);
  const auto dy = random_tensor<double>(Shape5{1, 2, 2, 2, 3}, rng);
  Tensor<double> y(dy.shape());
  revox::PointwiseConv3d<double>::Saved<revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  layer.backward(revox::Cpu{}, saved, dy.cview(), revox::TensorView<double>{});

  // The parameter gradients are the same as with dx requested.
  revox::PointwiseConv3d<double> twin(3, 2);
  revox::Parameters<double> twin_params(twin);
  std::copy(params.values().data, params.values().data + params.size(),
            twin_params.values().data);
  Tensor<double> dx(x.shape());
  revox::PointwiseConv3d<double>::Saved<revox::Cpu> twin_saved;
  twin.forward(revox::Cpu{}, x.cview(), y.view(), &twin_saved);
  twin.backward(revox::Cpu{}, twin_saved, dy.cview(), dx.view());
  for (index_t i = 0; i < params.size(); ++i) {
    CHECK(params.grads()[i] == twin_params.grads()[i]);
  }
}
