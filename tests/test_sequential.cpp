#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "revox/layers/sequential.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/test_layers.hpp"

using revox::Shape5;
using revox_test::ChannelAffine;
using revox_test::FirstChannels;
using revox_test::Square;

namespace {
template <class T>
using Inner = revox::Sequential<ChannelAffine<T>, FirstChannels<T>>;
template <class T>
using Nested = revox::Sequential<ChannelAffine<T>, Square<T>, Inner<T>, ChannelAffine<T>>;

template <class T>
Nested<T> make_nested() {
  return Nested<T>(ChannelAffine<T>(5), Square<T>(), Inner<T>(ChannelAffine<T>(5), FirstChannels<T>(3)),
                   ChannelAffine<T>(3));
}
}  // namespace

TEST_CASE("Sequential composes shapes and nests parameter names", "[layer][sequential]") {
  auto model = make_nested<float>();
  CHECK(model.output_shape(Shape5{2, 5, 3, 4, 5}) == Shape5{2, 3, 3, 4, 5});
  std::vector<std::string> names;
  model.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"0.scale", "0.shift", "2.0.scale", "2.0.shift",
                                          "3.scale", "3.shift"});
  CHECK_THROWS_WITH(model.output_shape(Shape5{1, 4, 3, 3, 3}),
                    "ChannelAffine: input channels: expected 5, got 4");
  revox::Parameters<float> params(model);
  revox::Tensor<float> x = revox::Tensor<float>::zeros(Shape5{1, 5, 2, 2, 2});
  revox::Tensor<float> wrong(Shape5{1, 5, 2, 2, 2});
  CHECK_THROWS_WITH(model.forward(revox::Cpu{}, x.cview(), wrong.view(), nullptr),
                    Catch::Contains("Sequential: output shape") && Catch::Contains("C=3"));
}

TEST_CASE("Sequential gradients pass gradcheck, nested, batch 1 and 2", "[layer][sequential]") {
  for (const Shape5 shape : {Shape5{1, 5, 5, 6, 7}, Shape5{2, 5, 2, 3, 2}}) {
    auto model = make_nested<double>();
    revox::Parameters<double> params(model);
    const auto result = revox::testing::gradcheck(model, params, shape);
    INFO("input " << shape << "\n" << result.report);
    REQUIRE(result.passed);
  }
}

TEST_CASE("Sequential keeps two intermediates without saved and releases saved ones in backward",
          "[layer][sequential][memory]") {
  using Chain = revox::Sequential<Square<float>, Square<float>, Square<float>, Square<float>,
                                  Square<float>>;
  Chain chain;
  const Shape5 shape{1, 2, 8, 8, 8};
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(shape.numel());
  revox::Tensor<float> x = revox::Tensor<float>::full(shape, 1.0f);
  revox::Tensor<float> y(shape);
  auto& allocator = revox::cpu_allocator();
  const std::size_t base = allocator.current_bytes();

  allocator.reset_peak();
  chain.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
  CHECK(allocator.peak_bytes() - base == 2 * bytes);
  CHECK(allocator.current_bytes() == base);

  allocator.reset_peak();
  revox::saved_t<Chain, revox::Cpu> saved;
  chain.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  CHECK(allocator.current_bytes() - base == 4 * bytes);  // 4 activations between 5 layers

  revox::Tensor<float> dy = revox::Tensor<float>::full(shape, 1.0f);
  revox::Tensor<float> dx(shape);
  const std::size_t with_dx = allocator.current_bytes();
  allocator.reset_peak();
  chain.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  // At most the saved activations plus two gradients are alive at any time.
  CHECK(allocator.peak_bytes() - with_dx <= bytes);
  CHECK(allocator.current_bytes() == with_dx - 4 * bytes);  // all activations released
  // d/dx of x^(2^5) at x = 1 is 32.
  for (revox::index_t i = 0; i < dx.numel(); ++i) REQUIRE(dx[i] == 32.0f);
  CHECK_THROWS_WITH(chain.backward(revox::Cpu{}, saved, dy.cview(), dx.view()),
                    Catch::Contains("run forward with `saved` before each backward"));
}
