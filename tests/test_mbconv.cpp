#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "revox/layers/conv3d.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/testing/gradcheck.hpp"

using revox::MBConv;
using revox::Shape5;

TEST_CASE("MBConv parameters carry PyTorch names and shapes", "[layer][mbconv]") {
  MBConv<float> block(4, 6, 2, 2);
  CHECK(block.hidden_channels() == 8);
  std::vector<std::string> names;
  std::vector<revox::ParamShape> shapes;
  block.visit_params([&](const std::string& name, revox::Param<float>& p) {
    names.push_back(name);
    shapes.push_back(p.shape);
  });
  CHECK(names == std::vector<std::string>{"expand.weight", "expand_norm.weight", "expand_norm.bias",
                                          "depthwise.weight", "depthwise_norm.weight",
                                          "depthwise_norm.bias", "project.weight",
                                          "project_norm.weight", "project_norm.bias"});
  CHECK(shapes[0] == revox::ParamShape{8, 4, 1, 1, 1});
  CHECK(shapes[3] == revox::ParamShape{8, 1, 3, 3, 3});
  CHECK(shapes[6] == revox::ParamShape{6, 8, 1, 1, 1});
  CHECK(shapes[8] == revox::ParamShape{6});

  MBConv<float> plain(4, 4, 1, 4);
  names.clear();
  plain.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"depthwise.weight", "depthwise_norm.weight",
                                          "depthwise_norm.bias", "project.weight",
                                          "project_norm.weight", "project_norm.bias"});
  CHECK(block.output_shape(Shape5{1, 4, 5, 6, 7}) == Shape5{1, 6, 5, 6, 7});
}

TEST_CASE("MBConv rejects bad configurations with readable errors", "[layer][mbconv]") {
  CHECK_THROWS_WITH(MBConv<float>(15, 15, 2, 8),
                    "MBConv: expanded channels (30 = 15 x expand_ratio 2) must be divisible by "
                    "num_groups (8)");
  CHECK_THROWS_WITH(MBConv<float>(16, 12, 2, 8),
                    "MBConv: out_channels (12) must be divisible by num_groups (8)");
  CHECK_THROWS_WITH(MBConv<float>(4, 4, 0, 2), Catch::Contains("expand_ratio must be at least 1, got 0"));
  CHECK_THROWS_WITH(MBConv<float>(0, 4, 2, 2), Catch::Contains("in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(MBConv<float>(4, 4, 2, 0), Catch::Contains("num_groups must be positive, got 0"));
  MBConv<float> block(4, 4, 2, 2);
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 5, 3, 3, 3}),
                    "MBConv: input channels: expected 4, got 5");
}

TEST_CASE("MBConv gradients pass gradcheck", "[layer][mbconv][gradcheck]") {
  struct Case {
    revox::index_t in, out, expand, groups;
    Shape5 shape;
  };
  const Case cases[] = {
      {4, 4, 2, 2, Shape5{1, 4, 5, 6, 7}},
      {4, 6, 2, 2, Shape5{2, 4, 3, 4, 5}},
      {3, 3, 1, 3, Shape5{1, 3, 4, 3, 5}},
      {2, 4, 4, 1, Shape5{1, 2, 3, 3, 3}},
  };
  for (const Case& c : cases) {
    MBConv<double> block(c.in, c.out, c.expand, c.groups);
    revox::Parameters<double> params(block);
    revox::testing::GradcheckOptions options;
    options.max_checks_per_tensor = 60;
    // GroupNorm's weight is kept away from 0 so the normalised signal is not degenerate.
    options.param_low = 0.2;
    options.param_high = 1.2;
    // ReLU6 is not differentiable at 0 and 6: inputs in a range where GroupNorm outputs
    // rarely land within the finite-difference step of a kink.
    const auto result = revox::testing::gradcheck(block, params, c.shape, options);
    INFO("MBConv(" << c.in << " -> " << c.out << ", e=" << c.expand << ", groups=" << c.groups
                   << ") at " << c.shape << "\n" << result.report);
    REQUIRE(result.passed);
  }
}

TEST_CASE("Nested Sequential of library layers passes gradcheck", "[layer][sequential][gradcheck]") {
  using Inner = revox::Sequential<revox::PointwiseConv3d<double>, revox::GroupNorm<double>>;
  using Model = revox::Sequential<revox::Conv3d<double>, Inner, revox::LeakyReLU<double>,
                                  revox::MaxPool3d<double>, revox::UpsampleTrilinear<double>,
                                  revox::MBConv<double>>;
  Model model(revox::Conv3d<double>(2, 4, 3),
              Inner(revox::PointwiseConv3d<double>(4, 4), revox::GroupNorm<double>(2, 4)),
              revox::LeakyReLU<double>(0.1), revox::MaxPool3d<double>(),
              revox::UpsampleTrilinear<double>(), revox::MBConv<double>(4, 2, 2, 2));
  revox::Parameters<double> params(model);
  CHECK(params.entries()[2].name == "1.0.weight");
  CHECK(model.output_shape(Shape5{1, 2, 5, 6, 7}) == Shape5{1, 2, 4, 6, 6});
  revox::testing::GradcheckOptions options;
  options.max_checks_per_tensor = 40;
  options.param_low = 0.2;
  options.param_high = 1.2;
  for (const Shape5 shape : {Shape5{1, 2, 5, 6, 7}, Shape5{2, 2, 4, 4, 5}}) {
    const auto result = revox::testing::gradcheck(model, params, shape, options);
    INFO("input " << shape << "\n" << result.report);
    REQUIRE(result.passed);
  }
}

TEST_CASE("MBConv without saved keeps at most two expanded intermediates",
          "[layer][mbconv][memory]") {
  MBConv<float> block(8, 8, 4, 4);
  revox::Parameters<float> params(block);
  revox::Rng rng(5);
  block.reset_parameters(rng);
  const Shape5 shape{1, 8, 8, 8, 8};
  revox::Tensor<float> x(shape);
  revox::fill_uniform(x.view(), rng, -1, 1);
  revox::Tensor<float> y(shape);
  auto& allocator = revox::cpu_allocator();
  const std::size_t base = allocator.current_bytes();
  const std::size_t expanded_bytes = sizeof(float) * static_cast<std::size_t>(shape.numel()) * 4;
  allocator.reset_peak();
  block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
  CHECK(allocator.current_bytes() == base);
  // Two expanded tensors plus small scratch (GroupNorm statistics).
  CHECK(allocator.peak_bytes() - base <= 2 * expanded_bytes + 4096);

  allocator.reset_peak();
  revox::saved_t<MBConv<float>, revox::Cpu> saved;
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  const std::size_t kept = allocator.current_bytes() - base;
  CHECK(kept >= 6 * expanded_bytes);
  revox::Tensor<float> dx(shape);
  const std::size_t before_backward = allocator.current_bytes();
  block.backward(revox::Cpu{}, saved, y.cview(), dx.view());
  CHECK(allocator.current_bytes() <= before_backward - 6 * expanded_bytes);
}
