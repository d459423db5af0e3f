// Tests for revox/models/unet.hpp: parameters of the paper presets, shapes and errors,
// gradcheck, reversible vs stored-activation twin, activation memory, a training run.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"
#include "revox/testing/gradcheck.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::UNet;
using revox::UNetConfig;

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

UNetConfig small_config(const std::string& block, std::vector<index_t> widths,
                        index_t num_groups, index_t blocks_per_level = 1) {
  UNetConfig c;
  c.widths = std::move(widths);
  c.num_groups = num_groups;
  c.block = block;
  c.blocks_per_level = blocks_per_level;
  c.expand_ratio = 2;
  return c;
}

template <class T>
struct Run {
  Tensor<T> y;
  Tensor<T> dx;
  std::vector<T> grads;
};

// One forward (with saved) and backward at fixed x and dy; grads start from zero.
template <class T>
Run<T> forward_backward(UNet<T>& net, revox::Parameters<T>& params, const Tensor<T>& x,
                        const Tensor<T>& dy) {
  const revox::Cpu dev;
  Run<T> run{Tensor<T>(net.output_shape(x.shape())), Tensor<T>(x.shape()), {}};
  params.zero_grad();
  typename UNet<T>::template Saved<revox::Cpu> saved;
  net.forward(dev, x.cview(), run.y.view(), &saved);
  net.backward(dev, saved, dy.cview(), run.dx.view());
  run.grads.assign(params.grads().data, params.grads().data + params.size());
  return run;
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

template <class T>
double max_rel_diff(const T* a, const T* b, index_t count) {
  double worst = 0.0;
  double scale = 0.0;
  for (index_t i = 0; i < count; ++i) scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  for (index_t i = 0; i < count; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return scale > 0.0 ? worst / scale : worst;
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

namespace {

void run_gradcheck(const UNetConfig& config, Shape5 input, index_t max_checks) {
  INFO("config " << revox::to_json(config).dump() << ", input " << input);
  UNet<double> net(config);
  revox::Parameters<double> params(net);
  revox::testing::GradcheckOptions options;
  options.max_checks_per_tensor = max_checks;
  options.rtol = 1e-5;
  options.atol = 1e-6;
  const auto result = revox::testing::gradcheck(net, params, input, options);
  INFO(result.report);
  REQUIRE(result.passed);
}

}  // namespace

TEST_CASE("unet: gradcheck, MBConv blocks, reversible and stored", "[unet][model][gradcheck]") {
  UNetConfig c = small_config("mbconv", {4, 8}, 2);
  run_gradcheck(c, Shape5{1, 4, 4, 6, 8}, 8);
  c.reversible = false;
  run_gradcheck(c, Shape5{1, 4, 4, 6, 8}, 8);
}

TEST_CASE("unet: gradcheck, standard blocks (Baseline kind)", "[unet][model][gradcheck]") {
  UNetConfig c = small_config("standard", {4, 8}, 2);
  run_gradcheck(c, Shape5{1, 4, 6, 4, 4}, 12);
  c.decoder_memory = "stored";
  run_gradcheck(c, Shape5{1, 4, 6, 4, 4}, 12);
  c.decoder_memory = "lean";
  c.decoder_blocks = 0;  // decoder = reduce, upsample, skip only
  run_gradcheck(c, Shape5{1, 4, 4, 4, 4}, 12);
}

TEST_CASE("unet: gradcheck, three levels with two blocks each", "[unet][model][gradcheck]") {
  run_gradcheck(small_config("mbconv", {4, 8, 8}, 2, 2), Shape5{1, 4, 8, 4, 8}, 3);
}

TEST_CASE("unet: gradcheck, batch 2, other channel counts, one level",
          "[unet][model][gradcheck]") {
  UNetConfig c = small_config("mbconv", {4, 8}, 1);
  c.in_channels = 2;
  c.out_channels = 2;
  c.decoder_blocks = 2;
  run_gradcheck(c, Shape5{2, 2, 4, 4, 6}, 5);
  UNetConfig one = small_config("mbconv", {4}, 2);  // no pooling, no decoder
  one.expand_ratio = 1;
  run_gradcheck(one, Shape5{1, 4, 3, 5, 4}, 20);
}

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

namespace {

// L = <y, r> + sum_j <aux_j, r_j> for fixed random r, r_j: its gradient is what backward
// gives with dy = r and daux_j = r_j.
double deep_supervision_objective(const UNet<double>& net, const Tensor<double>& x,
                                  const Tensor<double>& r, const std::vector<Tensor<double>>& rj) {
  revox::Cpu dev;
  Tensor<double> y(net.output_shape(x.shape()));
  std::vector<Tensor<double>> aux;
  std::vector<revox::TensorView<double>> views;
  for (const auto& t : rj) {
    aux.emplace_back(t.shape());
    views.push_back(aux.back().view());
  }
  net.forward(dev, x.cview(), y.view(), nullptr, views);
  double total = 0.0;
  for (index_t i = 0; i < y.numel(); ++i) total += y[i] * r[i];
  for (std::size_t j = 0; j < rj.size(); ++j) {
    for (index_t i = 0; i < rj[j].numel(); ++i) total += aux[j][i] * rj[j][i];
  }
  return total;
}

}  // namespace

TEST_CASE("unet: deep supervision heads: names, shapes, inference unchanged, gradients match "
          "finite differences", "[unet][model][gradcheck][deep_supervision]") {
  revox::Cpu dev;
  for (const std::string decoder_memory : {"stored", "lean"}) {
    INFO("decoder_memory " << decoder_memory);
    UNetConfig plain = small_config("mbconv", {4, 8, 8, 8}, 2);
    plain.decoder_memory = decoder_memory;
    UNetConfig config = plain;
    config.deep_supervision = 2;
    UNet<double> net(config), without(plain);
    revox::Parameters<double> params(net), params_without(without);
    revox::Rng rng(41), rng_without(41);
    net.reset_parameters(rng);
    without.reset_parameters(rng_without);
    // The heads come last: the other names and initial values are the plain net's.
    const auto& entries = params.entries();
    const auto& plain_entries = params_without.entries();
    REQUIRE(entries.size() == plain_entries.size() + 4);
    for (std::size_t e = 0; e < plain_entries.size(); ++e) {
      REQUIRE(entries[e].name == plain_entries[e].name);
      REQUIRE(entries[e].offset == plain_entries[e].offset);
    }
    CHECK(entries[plain_entries.size()].name == "aux_heads.1.weight");
    CHECK(entries[plain_entries.size() + 3].name == "aux_heads.2.bias");
    CHECK(entries[plain_entries.size()].shape.numel() == 8 * 3);
    for (index_t i = 0; i < params_without.size(); ++i) {
      REQUIRE(params.values()[i] == params_without.values()[i]);
    }

    const Shape5 input{1, 4, 8, 8, 16};
    CHECK(net.aux_output_shape(input, 1) == Shape5{1, 3, 4, 4, 8});
    CHECK(net.aux_output_shape(input, 2) == Shape5{1, 3, 2, 2, 4});
    CHECK_THROWS_WITH(net.aux_output_shape(input, 3),
                      Catch::Contains("deep-supervision output 3 does not exist"));
    Tensor<double> x(input);
    for (index_t i = 0; i < x.numel(); ++i) x[i] = rng.normal();
    // Without aux views: the plain net's output, bit for bit (inference).
    Tensor<double> y(net.output_shape(input)), y_plain(net.output_shape(input));
    net.forward(dev, x.cview(), y.view(), nullptr);
    without.forward(dev, x.cview(), y_plain.view(), nullptr);
    for (index_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == y_plain[i]);

    Tensor<double> r(y.shape());
    for (index_t i = 0; i < r.numel(); ++i) r[i] = rng.normal();
    std::vector<Tensor<double>> rj;
    for (index_t j = 1; j <= 2; ++j) {
      rj.emplace_back(net.aux_output_shape(input, j));
      for (index_t i = 0; i < rj.back().numel(); ++i) rj.back()[i] = rng.normal();
    }
    // Analytic: forward with saved and the aux outputs, backward with dy = r, daux = rj.
    UNet<double>::Saved<revox::Cpu> saved;
    std::vector<Tensor<double>> aux;
    std::vector<revox::TensorView<double>> aux_views;
    std::vector<revox::TensorView<const double>> daux;
    for (const auto& t : rj) {
      aux.emplace_back(t.shape());
      aux_views.push_back(aux.back().view());
      daux.push_back(t.cview());
    }
    Tensor<double> y_saved(y.shape());
    net.forward(dev, x.cview(), y_saved.view(), &saved, aux_views);
    for (index_t i = 0; i < y.numel(); ++i) REQUIRE(y_saved[i] == y[i]);
    auto dx = Tensor<double>::zeros(input);
    params.zero_grad();
    net.backward(dev, saved, r.cview(), dx.view(), daux);
    std::vector<double> analytic(params.grads().data, params.grads().data + params.size());

    const double h = 1e-5;
    auto check = [&](double& value, double expected, const std::string& what) {
      const double keep = value;
      value = keep + h;
      const double plus = deep_supervision_objective(net, x, r, rj);
      value = keep - h;
      const double minus = deep_supervision_objective(net, x, r, rj);
      value = keep;
      const double numeric = (plus - minus) / (2 * h);
      INFO(what << ": analytic " << expected << ", numeric " << numeric);
      REQUIRE(std::abs(expected - numeric) <= 1e-6 + 1e-5 * std::abs(numeric));
    };
    // Every head parameter, and a spread of the others (their gradient now includes the
    // heads' paths), and of the input.
    for (std::size_t e = 0; e < entries.size(); ++e) {
      const bool head = e >= plain_entries.size();
      const index_t count = entries[e].shape.numel();
      const index_t stride = head ? 1 : std::max<index_t>(1, count / 2);
      for (index_t i = 0; i < count; i += stride) {
        const index_t k = entries[e].offset + i;
        check(params.values()[k], analytic[static_cast<std::size_t>(k)],
              entries[e].name + "[" + std::to_string(i) + "]");
      }
    }
    for (index_t i = 0; i < x.numel(); i += 97) check(x[i], dx[i], "x[" + std::to_string(i) + "]");

    // Without daux the heads get no gradient and the rest is the plain net's gradient.
    net.forward(dev, x.cview(), y_saved.view(), &saved, aux_views);
    params.zero_grad();
    net.backward(dev, saved, r.cview(), revox::TensorView<double>{});
    for (std::size_t e = plain_entries.size(); e < entries.size(); ++e) {
      for (index_t i = 0; i < entries[e].shape.numel(); ++i) {
        REQUIRE(params.grads()[entries[e].offset + i] == 0.0);
      }
    }
  }
  UNetConfig bad = small_config("mbconv", {4, 8, 8}, 2);
  bad.deep_supervision = 2;
  CHECK_THROWS_WITH(UNet<float>(bad), Catch::Contains("'deep_supervision' must be an integer in "
                                                      "[0, levels - 2] = [0, 1]"));
}
