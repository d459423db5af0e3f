// Tests for revox/core/profile.hpp: the op profile that benchmarks/train_step prints.
#include <catch2/catch.hpp>

#include <string>

#include "revox/core/profile.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/ops/activations.hpp"
#include "revox/ops/add.hpp"

using revox::Shape5;
using revox::Tensor;

namespace {

const revox::OpProfile::Op* find_op(const std::vector<revox::OpProfile::Op>& ops,
                                    const std::string& name) {
  for (const auto& op : ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("op profile: counts every CPU op a layer dispatches, outermost only",
          "[profile]") {
  const revox::Cpu dev;
  revox::ConvBlock<float> block(4, 6, 2);
  revox::Parameters<float> params(block);
  revox::Rng rng(3);
  block.reset_parameters(rng);
  Tensor<float> x(Shape5{1, 4, 6, 6, 6});
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> y(block.output_shape(x.shape()));
  Tensor<float> dy(y.shape());
  revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
  Tensor<float> dx(x.shape());

  // Nothing is recorded without a profile.
  block.forward(dev, x.cview(), y.view(), nullptr);

  revox::OpProfile profile;
  CHECK(profile.ops().empty());
  {
    revox::saved_t<revox::ConvBlock<float>, revox::Cpu> saved;
    block.forward(dev, x.cview(), y.view(), &saved);
    block.backward(dev, saved, dy.cview(), dx.view());
  }
  const auto ops = profile.ops();
  // conv -> GroupNorm -> ReLU forward, and their three backward ops (conv: data and weight).
  for (const char* name : {"ops::conv3d_forward", "ops::group_norm_forward", "ops::relu",
                           "ops::relu_backward", "ops::group_norm_backward",
                           "ops::conv3d_backward_data", "ops::conv3d_backward_weight"}) {
    INFO(name);
    const auto* op = find_op(ops, name);
    REQUIRE(op != nullptr);
    CHECK(op->calls == 1);
    CHECK(op->seconds >= 0.0);
  }
  double sum = 0.0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    sum += ops[i].seconds;
    if (i > 0) CHECK(ops[i - 1].seconds >= ops[i].seconds);  // most time first
  }
  CHECK(profile.total_seconds() == Approx(sum));

  // Each call counts once; clear() starts over.
  revox::ops::relu(dev, y.cview(), y.view());
  revox::ops::relu(dev, y.cview(), y.view());
  CHECK(find_op(profile.ops(), "ops::relu")->calls == 3);
  profile.clear();
  CHECK(profile.ops().empty());
  revox::ops::add_inplace(dev, y.view(), y.cview());
  REQUIRE(profile.ops().size() == 1);
  CHECK(profile.ops()[0].name == "ops::add_inplace");

  // One profile at a time.
  CHECK_THROWS_WITH(revox::OpProfile(), Catch::Contains("another OpProfile is already collecting"));
}

TEST_CASE("op profile: an op inside an op is counted once, in the outer op", "[profile]") {
  revox::OpProfile profile;
  {
    revox::detail::OpTimer outer("outer");
    revox::detail::OpTimer inner("inner");
  }
  const auto ops = profile.ops();
  REQUIRE(ops.size() == 1);
  CHECK(ops[0].name == "outer");
  CHECK(ops[0].calls == 1);
}
