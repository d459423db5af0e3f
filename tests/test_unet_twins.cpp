// Tests for revox/models/unet.hpp: twins that must compute the same function: reversible
// and stored-activation blocks, lean and stored decoders, lean and stored MBConv blocks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/models/unet.hpp"
#include "support/unet_runs.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::UNet;
using revox::UNetConfig;
using revox_test::forward_backward;
using revox_test::max_rel_diff;
using revox_test::small_config;

TEST_CASE("unet: reversible and stored-activation twins agree", "[unet][model][reversible]") {
  SECTION("float, tiny preset, both block kinds") {
    for (const std::string block : {"mbconv", "standard"}) {
      UNetConfig c = revox::unet_preset("tiny");
      c.block = block;
      c.blocks_per_level = 2;
      UNet<float> net(c);
      revox::Parameters<float> params(net);
      revox::Rng rng(11);
      net.reset_parameters(rng);
      // 16^3 (the preset's size) for MBConv; the costlier 3x3x3 blocks at 8 x 16 x 8.
      Tensor<float> x(block == "mbconv" ? Shape5{1, 4, 16, 16, 16} : Shape5{1, 4, 8, 16, 8});
      revox::fill_uniform(x.view(), rng, -1.0, 1.0);
      Tensor<float> dy(net.output_shape(x.shape()));
      revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
      REQUIRE(net.reversible());
      const auto rev = forward_backward(net, params, x, dy);
      net.set_reversible(false);
      const auto stored = forward_backward(net, params, x, dy);
      INFO("block " << block);
      CHECK(max_rel_diff(rev.y.data(), stored.y.data(), rev.y.numel()) == 0.0);
      CHECK(max_rel_diff(stored.dx.data(), rev.dx.data(), rev.dx.numel()) < 1e-4);
      CHECK(max_rel_diff(stored.grads.data(), rev.grads.data(), params.size()) < 1e-4);
      // Per tensor as well, so a small tensor's error is not hidden by a large one's scale.
      for (const auto& entry : params.entries()) {
        INFO("parameter " << entry.name);
        CHECK(max_rel_diff(stored.grads.data() + entry.offset, rev.grads.data() + entry.offset,
                           entry.shape.numel()) < 1e-4);
      }
    }
  }
  SECTION("double, batch 2, three levels") {
    UNetConfig c = small_config("mbconv", {4, 8, 12}, 2, 3);
    UNet<double> net(c);
    revox::Parameters<double> params(net);
    revox::Rng rng(12);
    net.reset_parameters(rng);
    Tensor<double> x(Shape5{2, 4, 8, 8, 4});
    revox::fill_uniform(x.view(), rng, -1.0, 1.0);
    Tensor<double> dy(net.output_shape(x.shape()));
    revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
    const auto rev = forward_backward(net, params, x, dy);
    net.set_reversible(false);
    const auto stored = forward_backward(net, params, x, dy);
    CHECK(max_rel_diff(rev.y.data(), stored.y.data(), rev.y.numel()) == 0.0);
    CHECK(max_rel_diff(stored.dx.data(), rev.dx.data(), rev.dx.numel()) < 1e-10);
    for (const auto& entry : params.entries()) {
      INFO("parameter " << entry.name);
      CHECK(max_rel_diff(stored.grads.data() + entry.offset, rev.grads.data() + entry.offset,
                         entry.shape.numel()) < 1e-10);
    }
    // A twin built from the config with reversible = false is the same function.
    c.reversible = false;
    UNet<double> twin(c);
    revox::Parameters<double> twin_params(twin);
    std::copy(params.values().data, params.values().data + params.size(),
              twin_params.values().data);
    const auto from_config = forward_backward(twin, twin_params, x, dy);
    CHECK(max_rel_diff(from_config.y.data(), stored.y.data(), rev.y.numel()) == 0.0);
    CHECK(max_rel_diff(from_config.grads.data(), stored.grads.data(), params.size()) == 0.0);
  }
}

TEST_CASE("unet: lean and stored decoders give the same outputs and gradients",
          "[unet][model][decoder_memory]") {
  // The lean decoder runs the same arithmetic in the same order (it recomputes the
  // convolutions and the upsampled sums bit for bit), so everything must be equal exactly.
  auto compare = [](auto one, const UNetConfig& config, Shape5 input, std::uint64_t seed) {
    using T = decltype(one);
    INFO("config " << revox::to_json(config).dump() << ", input " << input);
    UNet<T> net(config);
    net.set_decoder_memory("lean");
    revox::Parameters<T> params(net);
    revox::Rng rng(seed);
    net.reset_parameters(rng);
    // Non-trivial norm parameters, so the GroupNorm affine part is exercised.
    for (const auto& entry : params.entries()) {
      if (entry.name.find("norm.") != std::string::npos) {
        for (index_t i = 0; i < entry.shape.numel(); ++i) {
          params.values().data[entry.offset + i] =
              static_cast<T>(0.5 + 0.1 * static_cast<double>(i % 7));
        }
      }
    }
    Tensor<T> x(input);
    revox::fill_uniform(x.view(), rng, -1.0, 1.0);
    Tensor<T> dy(net.output_shape(x.shape()));
    revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
    REQUIRE(net.lean_decoder());
    const auto lean = forward_backward(net, params, x, dy);
    net.set_decoder_memory("stored");
    REQUIRE_FALSE(net.lean_decoder());
    const auto stored = forward_backward(net, params, x, dy);
    CHECK(max_rel_diff(lean.y.data(), stored.y.data(), lean.y.numel()) == 0.0);
    CHECK(max_rel_diff(lean.dx.data(), stored.dx.data(), lean.dx.numel()) == 0.0);
    for (const auto& entry : params.entries()) {
      INFO("parameter " << entry.name);
      CHECK(max_rel_diff(lean.grads.data() + entry.offset, stored.grads.data() + entry.offset,
                         entry.shape.numel()) == 0.0);
    }
    // A backward follows the mode its forward ran in, even if the mode changed in between.
    {
      params.zero_grad();
      typename UNet<T>::template Saved<revox::Cpu> saved;
      Tensor<T> y(dy.shape()), dx(x.shape());
      net.forward(revox::Cpu{}, x.cview(), y.view(), &saved);  // stored
      net.set_decoder_memory("lean");
      net.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
      net.set_decoder_memory("stored");
      CHECK(max_rel_diff(dx.data(), stored.dx.data(), stored.dx.numel()) == 0.0);
      CHECK(max_rel_diff(params.grads().data, stored.grads.data(), params.size()) == 0.0);
    }
    // Inference (no saved) gives the same output in both modes.
    Tensor<T> y_inference(dy.shape());
    net.forward(revox::Cpu{}, x.cview(), y_inference.view(), nullptr);
    CHECK(max_rel_diff(y_inference.data(), stored.y.data(), stored.y.numel()) == 0.0);
    net.set_decoder_memory("lean");
    net.forward(revox::Cpu{}, x.cview(), y_inference.view(), nullptr);
    CHECK(max_rel_diff(y_inference.data(), stored.y.data(), stored.y.numel()) == 0.0);
  };
  for (const std::string block : {"mbconv", "standard"}) {
    for (bool reversible : {true, false}) {
      for (index_t decoder_blocks : {0, 1, 2}) {
        UNetConfig c = small_config(block, {4, 8, 12}, 2);
        c.reversible = reversible;
        c.decoder_blocks = decoder_blocks;
        compare(float{}, c, Shape5{1, 4, 8, 4, 12}, 21);
        compare(double{}, c, Shape5{2, 4, 4, 8, 4}, 22);
      }
    }
  }
  UNetConfig tiny = revox::unet_preset("tiny");
  compare(float{}, tiny, Shape5{1, 4, 16, 16, 16}, 23);
  CHECK_THROWS_WITH(UNet<float>(tiny).set_decoder_memory("none"),
                    Catch::Contains("expected \"lean\" or \"stored\", got \"none\""));
}

TEST_CASE("unet: lean and stored MBConv blocks give the same outputs and gradients",
          "[unet][model][block_memory]") {
  // Lean MBConv sums the projection one GroupNorm group at a time: equal up to rounding.
  auto compare = [](auto one, UNetConfig config, Shape5 input, double tolerance) {
    using T = decltype(one);
    INFO("config " << revox::to_json(config).dump() << ", input " << input);
    config.block_memory = "lean";
    UNet<T> lean_net(config);
    config.block_memory = "stored";
    UNet<T> stored_net(config);
    revox::Parameters<T> lean_params(lean_net);
    revox::Parameters<T> stored_params(stored_net);
    revox::Rng rng(31);
    lean_net.reset_parameters(rng);
    std::copy(lean_params.values().data, lean_params.values().data + lean_params.size(),
              stored_params.values().data);
    Tensor<T> x(input);
    revox::fill_uniform(x.view(), rng, -1.0, 1.0);
    Tensor<T> dy(lean_net.output_shape(x.shape()));
    revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
    const auto lean = forward_backward(lean_net, lean_params, x, dy);
    const auto stored = forward_backward(stored_net, stored_params, x, dy);
    CHECK(max_rel_diff(stored.y.data(), lean.y.data(), lean.y.numel()) < tolerance);
    CHECK(max_rel_diff(stored.dx.data(), lean.dx.data(), lean.dx.numel()) < tolerance);
    for (const auto& entry : lean_params.entries()) {
      INFO("parameter " << entry.name);
      CHECK(max_rel_diff(stored.grads.data() + entry.offset, lean.grads.data() + entry.offset,
                         entry.shape.numel()) < tolerance);
    }
  };
  for (bool reversible : {true, false}) {
    UNetConfig c = revox::unet_preset("tiny");
    c.reversible = reversible;
    c.blocks_per_level = 2;
    compare(float{}, c, Shape5{1, 4, 16, 16, 16}, 1e-4);
    UNetConfig d = small_config("mbconv", {4, 8, 12}, 2, 2);
    d.reversible = reversible;
    compare(double{}, d, Shape5{2, 4, 8, 8, 4}, 1e-10);
    d.expand_ratio = 1;
    compare(double{}, d, Shape5{1, 4, 4, 8, 8}, 1e-10);
  }
}
