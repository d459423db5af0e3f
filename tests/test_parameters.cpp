#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/layers/sequential.hpp"
#include "support/test_layers.hpp"

using revox_test::ChannelAffine;
using revox_test::Square;

TEST_CASE("Parameters lays every parameter out in one flat buffer", "[core][parameters]") {
  revox::Sequential<ChannelAffine<float>, Square<float>, ChannelAffine<float>> model(
      ChannelAffine<float>(3), Square<float>(), ChannelAffine<float>(20));
  CHECK(revox::param_count(model) == 2 * 3 + 2 * 20);
  revox::Parameters<float> params(model);
  const std::vector<revox::ParamEntry> entries = params.entries();
  REQUIRE(entries.size() == 4);
  CHECK(entries[0].name == "0.scale");
  CHECK(entries[1].name == "0.shift");
  CHECK(entries[2].name == "2.scale");
  CHECK(entries[3].name == "2.shift");
  CHECK(entries[2].shape == revox::ParamShape{20});
  // Offsets start on 16-element boundaries: 0, 16, 32, 64 (20 elements need 2 blocks).
  CHECK(entries[0].offset == 0);
  CHECK(entries[1].offset == 16);
  CHECK(entries[2].offset == 32);
  CHECK(entries[3].offset == 64);
  CHECK(params.size() == 84);
  CHECK(params.count() == 46);

  // Values and gradients start at zero, and each Param points into the buffers.
  for (revox::index_t i = 0; i < params.size(); ++i) {
    REQUIRE(params.values()[i] == 0.0f);
    REQUIRE(params.grads()[i] == 0.0f);
  }
  std::vector<float*> values, grads;
  model.visit_params([&](const std::string&, revox::Param<float>& p) {
    values.push_back(p.value);
    grads.push_back(p.grad);
  });
  for (std::size_t i = 0; i < entries.size(); ++i) {
    CHECK(values[i] == params.values().data + entries[i].offset);
    CHECK(grads[i] == params.grads().data + entries[i].offset);
  }

  // Moving the buffers keeps the layers' pointers valid.
  revox::Parameters<float> moved = std::move(params);
  CHECK(moved.values().data + entries[3].offset == values[3]);
  revox::Rng rng(1);
  model.reset_parameters(rng);
  for (revox::index_t i = 0; i < 3; ++i) CHECK(moved.values()[i] >= 0.5f);
  moved.grads()[5] = 1.0f;
  moved.zero_grad();
  CHECK(moved.grads()[5] == 0.0f);
}

TEST_CASE("ParamShape counts elements and prints PyTorch-style", "[core][parameters]") {
  revox::ParamShape conv{16, 8, 3, 3, 3};
  CHECK(conv.rank == 5);
  CHECK(conv.numel() == 16 * 8 * 27);
  CHECK(revox::detail::concat(conv) == "[16, 8, 3, 3, 3]");
  CHECK(revox::ParamShape{} .numel() == 0);
  CHECK_THROWS_WITH((revox::ParamShape{1, 2, 3, 4, 5, 6}), Catch::Contains("rank must be 1 to 5, got 6"));
}
