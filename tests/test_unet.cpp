// Tests for revox/models/unet.hpp: parameters of the paper presets, shapes and errors,
// activation memory, a training run. Gradchecks in test_unet_grad.cpp, the reversible,
// lean and stored twins in test_unet_twins.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"
#include "support/unet_runs.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::UNet;
using revox::UNetConfig;
using revox_test::small_config;

namespace {

static_assert(revox::check_layer_contract<UNet<float>>());
static_assert(revox::check_layer_contract<UNet<double>>());

// The parameter count implied by the architecture of revox/models/unet.hpp (its header
// comment; docs/architecture.md section 4), written out independently of the model.
index_t expected_param_count(const UNetConfig& c) {
  index_t total = 0;
  index_t in = c.in_channels;
  for (index_t width : c.widths) {
    total += in * width + width;  // pointwise conv with bias
    const index_t h = width / 2;
    index_t block = 0;  // one of F, G
    if (c.block == "mbconv") {
      const index_t e = h * c.expand_ratio;
      if (c.expand_ratio > 1) block += h * e + 2 * e;  // expand + norm
      block += e * 27 + 2 * e;                         // depthwise + norm
      block += e * h + 2 * h;                          // project + norm
    } else {
      block = h * h * 27 + 2 * h;  // conv 3x3x3 (no bias) + norm
    }
    total += c.blocks_per_level * 2 * block;
    in = width;
  }
  for (std::size_t i = 0; i + 1 < c.widths.size(); ++i) {
    const index_t width = c.widths[i];
    total += c.widths[i + 1] * width + width;                    // reduce, with bias
    total += c.decoder_blocks * (width * width * 27 + 2 * width);  // ConvBlocks
  }
  total += c.widths[0] * c.out_channels + c.out_channels;  // head
  return total;
}

std::map<std::string, revox::ParamShape> param_shapes(UNet<float>& net) {
  std::map<std::string, revox::ParamShape> shapes;
  net.visit_params(
      [&](const std::string& name, revox::Param<float>& p) { shapes.emplace(name, p.shape); });
  return shapes;
}

// One forward (with saved) and backward of a freshly initialised UNet<float> built from `c`;
// returns the CPU tracking allocator's peak above what was in use before, and stores in
// *kept what forward left for backward. Checks that nothing is left behind, by the step or
// by inference.
std::size_t step_peak_bytes(const UNetConfig& c, Shape5 input, std::uint64_t seed,
                            std::size_t* kept = nullptr) {
  auto& allocator = revox::cpu_allocator();
  const revox::Cpu dev;
  UNet<float> net(c);
  revox::Parameters<float> params(net);
  revox::Rng rng(seed);
  net.reset_parameters(rng);
  Tensor<float> x(input);
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> y(net.output_shape(x.shape()));
  Tensor<float> dy(y.shape());
  revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
  Tensor<float> dx(x.shape());
  const std::size_t before = allocator.current_bytes();
  allocator.reset_peak();
  {
    UNet<float>::Saved<revox::Cpu> saved;
    net.forward(dev, x.cview(), y.view(), &saved);
    if (kept != nullptr) *kept = allocator.current_bytes() - before;
    net.backward(dev, saved, dy.cview(), dx.view());
  }
  CHECK(allocator.current_bytes() == before);  // nothing left behind
  const std::size_t peak = allocator.peak_bytes() - before;
  net.forward(dev, x.cview(), y.view(), nullptr);  // inference keeps nothing either
  CHECK(allocator.current_bytes() == before);
  return peak;
}

}  // namespace

TEST_CASE("unet: paper presets construct, with the expected parameter names and counts",
          "[unet][model]") {
  for (const auto& name : revox::unet_preset_names()) {
    const UNetConfig config = revox::unet_preset(name);
    UNet<float> net(config);
    const index_t count = revox::param_count(net);
    std::cout << "UNet preset " << name << ": " << count << " parameters\n";
    INFO("preset " << name);
    CHECK(count == expected_param_count(config));
    const auto shapes = param_shapes(net);
    const index_t c0 = config.widths[0];
    const index_t h0 = c0 / 2;
    CHECK(shapes.at("encoders.0.conv.weight") == (revox::ParamShape{c0, 4, 1, 1, 1}));
    CHECK(shapes.at("encoders.0.conv.bias") == (revox::ParamShape{c0}));
    CHECK(shapes.at("decoders.0.reduce.weight") ==
          (revox::ParamShape{c0, config.widths[1], 1, 1, 1}));
    CHECK(shapes.at("decoders.0.blocks.0.conv.weight") == (revox::ParamShape{c0, c0, 3, 3, 3}));
    CHECK(shapes.at("head.weight") == (revox::ParamShape{3, c0, 1, 1, 1}));
    CHECK(shapes.at("head.bias") == (revox::ParamShape{3}));
    const std::string last = "encoders." + std::to_string(config.widths.size() - 1) + ".";
    CHECK(shapes.count(last + "conv.weight") == 1);
    CHECK(shapes.count("decoders." + std::to_string(config.widths.size() - 1) +
                       ".reduce.weight") == 0);
    if (config.block == "mbconv") {
      CHECK(shapes.at("encoders.0.blocks.0.f.expand.weight") ==
            (revox::ParamShape{h0 * config.expand_ratio, h0, 1, 1, 1}));
      CHECK(shapes.at("encoders.0.blocks.0.g.project_norm.bias") == (revox::ParamShape{h0}));
    } else {
      CHECK(shapes.at("encoders.0.blocks.0.f.conv.weight") ==
            (revox::ParamShape{h0, h0, 3, 3, 3}));
      CHECK(shapes.at("encoders.0.blocks.0.g.norm.weight") == (revox::ParamShape{h0}));
    }
  }
  // More blocks per level and decoder blocks give the names they promise.
  UNetConfig c = small_config("mbconv", {8, 16}, 2, 3);
  c.decoder_blocks = 2;
  UNet<float> net(c);
  const auto shapes = param_shapes(net);
  CHECK(shapes.count("encoders.1.blocks.2.g.depthwise.weight") == 1);
  CHECK(shapes.count("encoders.1.blocks.3.f.depthwise.weight") == 0);
  CHECK(shapes.count("decoders.0.blocks.1.norm.bias") == 1);
  CHECK(revox::param_count(net) == expected_param_count(c));
}

TEST_CASE("unet: shapes, divisibility and misuse errors", "[unet][model]") {
  UNet<float> net(revox::unet_preset("tiny"));
  CHECK(net.output_shape(Shape5{1, 4, 16, 16, 16}) == (Shape5{1, 3, 16, 16, 16}));
  CHECK(net.output_shape(Shape5{2, 4, 8, 12, 20}) == (Shape5{2, 3, 8, 12, 20}));
  CHECK_THROWS_WITH(net.output_shape(Shape5{1, 4, 16, 18, 16}),
                    Catch::Contains("UNet: input H (18) must be divisible by 4 (3 levels); "
                                    "crop or pad to a multiple first"));
  CHECK_THROWS_WITH(net.output_shape(Shape5{1, 3, 16, 16, 16}),
                    Catch::Contains("UNet: input channels: expected 4, got 3"));
  CHECK_THROWS_WITH(net.output_shape(Shape5{1, 4, 0, 16, 16}),
                    Catch::Contains("UNet: input extents must be positive"));

  UNet<float> base(revox::unet_preset("mbconv-base"));
  CHECK_THROWS_WITH(base.output_shape(Shape5{1, 4, 155, 240, 240}),
                    Catch::Contains("UNet: input D (155) must be divisible by 16 (5 levels)"));

  UNetConfig bad = revox::unet_preset("mbconv-base");
  bad.num_groups = 4;
  CHECK_THROWS_WITH(UNet<float>(bad), Catch::Contains("level 0 width 30: its half (15) must be "
                                                      "divisible by 'num_groups' (4)"));
  bad = revox::unet_preset("tiny");
  bad.widths = {8, 17};
  CHECK_THROWS_WITH(UNet<float>(bad), Catch::Contains("'widths[1]' must be an even integer"));

  // Forward and backward check their views.
  revox::Parameters<float> params(net);
  revox::Rng rng(3);
  net.reset_parameters(rng);
  const revox::Cpu dev;
  Tensor<float> x = Tensor<float>::zeros(Shape5{1, 4, 16, 16, 16});
  Tensor<float> wrong(Shape5{1, 3, 8, 16, 16});
  CHECK_THROWS_WITH(net.forward(dev, x.cview(), wrong.view(), nullptr),
                    Catch::Contains("UNet: output shape"));
  UNet<float>::Saved<revox::Cpu> saved;
  Tensor<float> dy = Tensor<float>::zeros(Shape5{1, 3, 16, 16, 16});
  Tensor<float> dx(x.shape());
  CHECK_THROWS_WITH(net.backward(dev, saved, dy.cview(), dx.view()),
                    Catch::Contains("UNet::backward: nothing saved"));
  Tensor<float> y(Shape5{1, 3, 16, 16, 16});
  net.forward(dev, x.cview(), y.view(), &saved);
  CHECK_THROWS_WITH(net.backward(dev, saved, wrong.cview(), dx.view()),
                    Catch::Contains("UNet::backward: dy shape"));
  Tensor<float> wrong_dx(Shape5{1, 4, 8, 16, 16});
  CHECK_THROWS_WITH(net.backward(dev, saved, dy.cview(), wrong_dx.view()),
                    Catch::Contains("UNet::backward (dx): output shape"));
  net.backward(dev, saved, dy.cview(), dx.view());
  CHECK_THROWS_WITH(net.backward(dev, saved, dy.cview(), dx.view()),
                    Catch::Contains("nothing saved (or already consumed)"));
}

TEST_CASE("unet: the lean decoder keeps less than the stored one", "[unet][model][memory]") {
  // Bytes that forward leaves for backward, and the step's peak, above the resident tensors.
  auto measure = [](const std::string& block, const std::string& decoder_memory,
                    std::size_t& kept) {
    UNetConfig c = revox::unet_preset("tiny");
    c.block = block;
    c.decoder_memory = decoder_memory;
    return step_peak_bytes(c, Shape5{1, 4, 16, 16, 16}, 6, &kept);
  };
  for (const std::string block : {"mbconv", "standard"}) {
    std::size_t lean_kept = 0, stored_kept = 0;
    const std::size_t lean_peak = measure(block, "lean", lean_kept);
    const std::size_t stored_peak = measure(block, "stored", stored_kept);
    std::cout << "UNet tiny (" << block << ") @16^3: forward keeps " << lean_kept
              << " B (lean decoder) vs " << stored_kept << " B (stored); step peak above "
              << "resident " << lean_peak << " vs " << stored_peak << " B\n";
    INFO("block " << block);
    // Level 0 (8 channels of 16^3 floats = 131072 B per map) keeps one map instead of four
    // (sum, conv output, norm output, block output), level 1 (16 channels of 8^3) likewise.
    const std::size_t saved_maps = 3 * 131072 + 3 * 32768;
    CHECK(stored_kept - lean_kept >= saved_maps);
    // With MBConv blocks the step peaks in the encoder's backward (G's recomputation), which
    // the decoder does not change; with 3x3x3 blocks it peaks in the decoder's backward.
    CHECK(lean_peak <= stored_peak);
    if (block == "standard") CHECK(lean_peak < stored_peak);
  }
}

TEST_CASE("unet: reversible activation memory does not grow with blocks per level",
          "[unet][model][memory]") {
  // Peak bytes above the parameters, input, output and gradients, during forward + backward.
  auto peak_activation_bytes = [](index_t blocks, bool reversible) {
    UNetConfig c = revox::unet_preset("tiny");
    c.blocks_per_level = blocks;
    c.reversible = reversible;
    return step_peak_bytes(c, Shape5{1, 4, 8, 8, 8}, 5);
  };
  const std::size_t rev1 = peak_activation_bytes(1, true);
  const std::size_t rev4 = peak_activation_bytes(4, true);
  const std::size_t stored1 = peak_activation_bytes(1, false);
  const std::size_t stored4 = peak_activation_bytes(4, false);
  std::cout << "UNet tiny @8^3 peak activation bytes: reversible " << rev1 << " (1 block), "
            << rev4 << " (4 blocks); stored " << stored1 << " (1 block), " << stored4
            << " (4 blocks)\n";
  CHECK(rev4 == rev1);
  CHECK(stored1 > rev1);
  CHECK(static_cast<double>(stored4) > 1.5 * static_cast<double>(stored1));
}

TEST_CASE("unet: training on a toy problem lowers the loss", "[unet][model][train]") {
  // A noisy sphere in 4 channels; targets are three nested spheres (like WT, TC, ET).
  const index_t size = 16;
  const Shape5 in_shape{1, 4, size, size, size};
  const Shape5 out_shape{1, 3, size, size, size};
  Tensor<float> x(in_shape);
  Tensor<float> target(out_shape);
  revox::Rng rng(2024);
  const double center = 0.5 * static_cast<double>(size - 1);
  const double radii[3] = {5.5, 3.5, 2.0};
  for (index_t d = 0; d < size; ++d) {
    for (index_t h = 0; h < size; ++h) {
      for (index_t w = 0; w < size; ++w) {
        const double dd = static_cast<double>(d) - center;
        const double dh = static_cast<double>(h) - center;
        const double dw = static_cast<double>(w) - center;
        const double r = std::sqrt(dd * dd + dh * dh + dw * dw);
        for (index_t c = 0; c < 3; ++c) {
          target.view().at(0, c, d, h, w) = r <= radii[c] ? 1.0f : 0.0f;
        }
        for (index_t c = 0; c < 4; ++c) {
          const double signal = (r <= radii[0] ? 1.0 : 0.0) + (r <= radii[1] ? 0.5 : 0.0) +
                                (r <= radii[2] ? 0.5 : 0.0);
          x.view().at(0, c, d, h, w) =
              static_cast<float>(signal * (1.0 + 0.2 * static_cast<double>(c)) +
                                 0.3 * rng.normal());
        }
      }
    }
  }
  UNet<float> net(revox::unet_preset("tiny"));
  revox::Parameters<float> params(net);
  net.reset_parameters(rng);
  revox::optim::Adam<float> adam(params, revox::optim::AdamOptions{1e-2});
  const revox::Cpu dev;
  Tensor<float> logits(out_shape);
  Tensor<float> dlogits(out_shape);
  Tensor<float> dx;  // not needed: the input gradient is skipped
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < 30; ++step) {
    UNet<float>::Saved<revox::Cpu> saved;
    net.forward(dev, x.cview(), logits.view(), &saved);
    const double loss =
        revox::losses::soft_dice_loss(logits.cview(), target.cview(), dlogits.view());
    REQUIRE(std::isfinite(loss));
    losses.push_back(loss);
    params.zero_grad();
    net.backward(dev, saved, dlogits.cview(), dx.view());
    adam.step();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "UNet tiny toy training: loss " << losses.front() << " -> " << losses.back()
            << " in 30 steps, " << seconds << " s\n";
  INFO("first loss " << losses.front() << ", last loss " << losses.back());
  // Measured: 0.862 -> 0.601, falling at every step.
  CHECK(losses.back() < 0.8 * losses.front());
  CHECK(losses[15] < losses.front());
  CHECK(losses.back() < losses[15]);
}
