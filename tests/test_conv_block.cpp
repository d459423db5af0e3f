#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/conv_block.hpp"
#include "revox/ops/cpu/activations.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/ops/cpu/group_norm.hpp"
#include "revox/testing/gradcheck.hpp"

using revox::ConvBlock;
using revox::Shape5;

static_assert(revox::is_layer_v<ConvBlock<float>> && revox::is_layer_v<ConvBlock<double>>);

TEST_CASE("ConvBlock parameters carry PyTorch names and shapes", "[layer][conv_block]") {
  ConvBlock<float> block(4, 6, 3);
  std::vector<std::string> names;
  std::vector<revox::ParamShape> shapes;
  block.visit_params([&](const std::string& name, revox::Param<float>& p) {
    names.push_back(name);
    shapes.push_back(p.shape);
  });
  CHECK(names == std::vector<std::string>{"conv.weight", "norm.weight", "norm.bias"});
  REQUIRE(shapes.size() == 3);
  CHECK(shapes[0] == revox::ParamShape{6, 4, 3, 3, 3});
  CHECK(shapes[1] == revox::ParamShape{6});
  CHECK(shapes[2] == revox::ParamShape{6});
  CHECK(block.output_shape(Shape5{2, 4, 5, 6, 7}) == Shape5{2, 6, 5, 6, 7});
}

TEST_CASE("ConvBlock rejects bad configurations with readable errors", "[layer][conv_block]") {
  CHECK_THROWS_WITH(ConvBlock<float>(4, 6, 4),
                    "ConvBlock: out_channels (6) must be divisible by num_groups (4)");
  CHECK_THROWS_WITH(ConvBlock<float>(0, 4, 2), Catch::Contains("in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(ConvBlock<float>(4, 0, 2), Catch::Contains("out_channels must be positive, got 0"));
  CHECK_THROWS_WITH(ConvBlock<float>(4, 4, 0), Catch::Contains("num_groups must be positive, got 0"));
  ConvBlock<float> block(4, 4, 2);
  revox::Parameters<float> params(block);
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 5, 3, 3, 3}),
                    "ConvBlock: input channels: expected 4, got 5");
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 4, 0, 3, 3}),
                    Catch::Contains("ConvBlock: input extents must be positive"));
  revox::Tensor<float> x = revox::Tensor<float>::zeros(Shape5{1, 4, 3, 3, 3});
  revox::Tensor<float> y(Shape5{1, 4, 3, 3, 2});
  CHECK_THROWS_WITH(block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr),
                    Catch::Contains("ConvBlock: output shape"));
}

// The block equals the plain reference kernels chained by hand (conv without bias ->
// GroupNorm -> ReLU), in float and double.
template <class T>
void check_against_reference(double tolerance) {
  struct Case {
    revox::index_t in, out, groups;
    Shape5 shape;
  };
  const Case cases[] = {{3, 4, 2, Shape5{1, 3, 5, 6, 7}},
                        {2, 6, 3, Shape5{2, 2, 2, 3, 2}},
                        {1, 2, 1, Shape5{1, 1, 1, 1, 1}}};
  for (const Case& c : cases) {
    ConvBlock<T> block(c.in, c.out, c.groups);
    revox::Parameters<T> params(block);
    revox::Rng rng(77);
    revox::fill_uniform(params.values(), rng, -1.0, 1.0);
    revox::Tensor<T> x(c.shape);
    revox::fill_uniform(x.view(), rng, -1.0, 1.0);
    const Shape5 out_shape = block.output_shape(c.shape);
    revox::Tensor<T> y = revox::Tensor<T>::full(out_shape, std::numeric_limits<T>::quiet_NaN());
    block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);

    const T* weight = params.values().data;  // conv.weight is the first entry
    const T* gamma = params.values().data + params.entries()[1].offset;
    const T* beta = params.values().data + params.entries()[2].offset;
    revox::Tensor<T> conv = revox::Tensor<T>::full(out_shape, T(-7));
    revox::Tensor<T> norm = revox::Tensor<T>::full(out_shape, T(-7));
    revox::Tensor<T> expected = revox::Tensor<T>::full(out_shape, T(-7));
    revox::cpu::reference::conv3d_forward<T>(x.cview(), weight, nullptr, conv.view(), 3);
    revox::cpu::reference::group_norm_forward<T>(conv.cview(), c.groups, 1e-5, gamma, beta,
                                                 norm.view(), nullptr, nullptr);
    revox::cpu::reference::relu<T>(norm.cview(), expected.view());
    double worst = 0.0;
    for (revox::index_t i = 0; i < y.numel(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(y[i]) - static_cast<double>(expected[i])) /
                                  (1.0 + std::abs(static_cast<double>(expected[i]))));
    }
    INFO("ConvBlock(" << c.in << " -> " << c.out << ", groups " << c.groups << ") at " << c.shape);
    CHECK(worst < tolerance);
  }
}

TEST_CASE("ConvBlock forward equals the reference kernels chained by hand",
          "[layer][conv_block]") {
  check_against_reference<float>(1e-5);
  check_against_reference<double>(1e-12);
}

TEST_CASE("ConvBlock gradients pass gradcheck", "[layer][conv_block][gradcheck]") {
  struct Case {
    revox::index_t in, out, groups;
    Shape5 shape;
  };
  const Case cases[] = {{2, 4, 2, Shape5{1, 2, 3, 4, 5}},
                        {3, 3, 3, Shape5{2, 3, 2, 3, 2}},
                        {1, 2, 1, Shape5{1, 1, 2, 2, 3}}};
  for (const Case& c : cases) {
    ConvBlock<double> block(c.in, c.out, c.groups);
    revox::Parameters<double> params(block);
    revox::testing::GradcheckOptions options;
    options.max_checks_per_tensor = 60;
    // GroupNorm's weight away from 0 keeps the normalised signal from being degenerate.
    options.param_low = 0.2;
    options.param_high = 1.2;
    const auto result = revox::testing::gradcheck(block, params, c.shape, options);
    INFO("ConvBlock(" << c.in << " -> " << c.out << ", groups " << c.groups << ") at "
                      << c.shape << "\n" << result.report);
    REQUIRE(result.passed);
  }
}
