// The memory planner (revox/models/memory_planner.hpp) against the tracking allocator: one
// real training step (forward with saved, soft Dice gradient, backward, optimizer step) of
// each config, with parameters, gradients, optimizer state, input, target and logits
// allocated inside the measurement, must peak at exactly the planned bytes: the plan runs the
// same UNet code on the planning device (revox/core/plan.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <iostream>
#include <string>

#include "revox/core/parameters.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/models/unet.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/optim/adam.hpp"

#include "support/unet_memory.hpp"

using revox::index_t;
using revox::MemoryPlanOptions;
using revox::Shape5;
using revox::UNetConfig;

namespace {

UNetConfig make_config(std::vector<index_t> widths, index_t num_groups, const std::string& block,
                       bool reversible, index_t blocks_per_level = 1, index_t expand_ratio = 2,
                       index_t decoder_blocks = 1) {
  UNetConfig c;
  c.widths = std::move(widths);
  c.num_groups = num_groups;
  c.block = block;
  c.reversible = reversible;
  c.blocks_per_level = blocks_per_level;
  c.expand_ratio = expand_ratio;
  c.decoder_blocks = decoder_blocks;
  return c;
}

// Plans and measures one step; they must agree to the byte. Returns measured / predicted.
template <class T = float>
double check_plan(const std::string& name, const UNetConfig& config, Shape5 input,
                  MemoryPlanOptions options = {}) {
  options.element_bytes = static_cast<index_t>(sizeof(T));
  const revox::MemoryPlan plan = revox::plan_training_memory(config, input, options);
  const std::size_t measured = revox::measure_training_memory<T>(config, input, options);
  const double ratio = static_cast<double>(measured) / static_cast<double>(plan.peak_bytes);
  std::cout << "memory plan " << name << ": predicted " << plan.peak_bytes << " B, measured "
            << measured << " B (ratio " << ratio << "); peak at " << plan.peak_at << "\n";
  INFO(name << ": predicted " << plan.peak_bytes << " bytes (resident " << plan.resident_bytes
            << ", forward +" << plan.forward_peak_bytes << ", backward +"
            << plan.backward_peak_bytes << ", peak at " << plan.peak_at << "), measured "
            << measured);
  CHECK(measured == plan.peak_bytes);
  return ratio;
}

}  // namespace

TEST_CASE("memory planner: reversible and stored MBConv U-Nets match the measured peak",
          "[memory_planner][unet]") {
  SECTION("tiny preset, 3 levels, 16^3") {
    UNetConfig c = revox::unet_preset("tiny");
    check_plan("tiny reversible 16^3", c, Shape5{1, 4, 16, 16, 16});
    c.reversible = false;
    check_plan("tiny stored 16^3", c, Shape5{1, 4, 16, 16, 16});
  }
  SECTION("lean MBConv blocks, lean decoder or both, tiny and small presets") {
    for (const std::string part : {"block_memory", "decoder_memory", "both"}) {
      for (const char* preset : {"tiny", "small"}) {
        for (bool reversible : {true, false}) {
          UNetConfig c = revox::unet_preset(preset);
          if (part != "decoder_memory") c.block_memory = "lean";
          if (part != "block_memory") c.decoder_memory = "lean";
          c.reversible = reversible;
          const index_t side = c.input_size[0];
          check_plan(std::string(preset) + " lean " + part + ", " +
                         (reversible ? "reversible" : "stored"),
                     c, Shape5{1, 4, side, side, side});
        }
      }
    }
  }
  SECTION("2 levels, 2 blocks per level, 32^3") {
    for (bool reversible : {true, false}) {
      const UNetConfig c = make_config({8, 16}, 2, "mbconv", reversible, 2);
      check_plan(std::string("2 levels x 2 blocks ") + (reversible ? "reversible" : "stored") +
                     " 32^3",
                 c, Shape5{1, 4, 32, 32, 32});
    }
  }
  SECTION("small preset, 4 levels, 32^3") {
    UNetConfig c = revox::unet_preset("small");
    check_plan("small reversible 32^3", c, Shape5{1, 4, 32, 32, 32});
    c.reversible = false;
    check_plan("small stored 32^3", c, Shape5{1, 4, 32, 32, 32});
  }
  SECTION("non-cubic input 16 x 24 x 32, expand ratio 4, 2 blocks") {
    for (bool reversible : {true, false}) {
      const UNetConfig c = make_config({8, 16, 32}, 2, "mbconv", reversible, 2, 4);
      check_plan(std::string("non-cubic e=4 ") + (reversible ? "reversible" : "stored"), c,
                 Shape5{1, 4, 16, 24, 32});
    }
  }
  SECTION("expand ratio 1 (no expansion conv), no decoder blocks") {
    for (bool reversible : {true, false}) {
      const UNetConfig c = make_config({8, 16, 32}, 2, "mbconv", reversible, 1, 1, 0);
      check_plan(std::string("e=1, 0 decoder blocks ") + (reversible ? "reversible" : "stored"),
                 c, Shape5{1, 4, 16, 16, 16});
    }
  }
}

TEST_CASE("memory planner: standard-block (Baseline-style) U-Nets match the measured peak",
          "[memory_planner][unet]") {
  for (bool reversible : {true, false}) {
    const std::string mode = reversible ? "reversible" : "stored";
    check_plan("standard 3 levels 16^3 " + mode, make_config({8, 16, 32}, 2, "standard", reversible),
               Shape5{1, 4, 16, 16, 16});
    check_plan("standard 4 levels x 2 blocks, 2 decoder blocks, 24^3 " + mode,
               make_config({8, 16, 24, 32}, 2, "standard", reversible, 2, 2, 2),
               Shape5{1, 4, 24, 24, 24});
    // At 32^3 the im2col columns (8 or 16 channels x 27 taps) exceed 16 MiB: chunked.
    check_plan("standard 2 levels 32^3 " + mode, make_config({16, 32}, 4, "standard", reversible),
               Shape5{1, 4, 32, 32, 32});
    UNetConfig lean_decoder = make_config({8, 16, 24, 32}, 2, "standard", reversible, 1, 2, 2);
    lean_decoder.decoder_memory = "lean";
    check_plan("standard 4 levels, 2 lean decoder blocks, 24^3 " + mode, lean_decoder,
               Shape5{1, 4, 24, 24, 24});
  }
}

TEST_CASE("memory planner: batch 2, double, other optimizers and the input gradient",
          "[memory_planner][unet]") {
  const UNetConfig tiny = revox::unet_preset("tiny");
  UNetConfig stored = tiny;
  stored.reversible = false;
  check_plan("tiny batch 2 reversible", tiny, Shape5{2, 4, 16, 16, 16});
  check_plan("tiny batch 2 stored", stored, Shape5{2, 4, 16, 16, 16});
  check_plan<double>("tiny double", tiny, Shape5{1, 4, 16, 16, 16});
  MemoryPlanOptions options;
  options.optimizer = "sgd";
  options.input_gradient = true;
  check_plan("tiny sgd + dx", tiny, Shape5{1, 4, 16, 16, 16}, options);
  options.optimizer = "none";
  options.input_gradient = false;
  options.include_input = false;
  options.include_target = false;
  options.include_output_gradient = false;
  check_plan("tiny no optimizer, no input/target/output gradient", stored,
             Shape5{1, 4, 16, 16, 16}, options);
}

TEST_CASE("memory planner: breakdown of the resident bytes", "[memory_planner][unet]") {
  const UNetConfig c = revox::unet_preset("small");
  revox::UNet<float> net(c);
  revox::Parameters<float> params(net);
  const Shape5 input{1, 4, 32, 32, 32};
  const revox::MemoryPlan adam = revox::plan_training_memory(c, input);
  CHECK(adam.parameter_count == params.count());
  CHECK(adam.parameter_buffer_elements == params.size());
  CHECK(adam.parameter_bytes == params.values().numel() * sizeof(float));
  CHECK(adam.gradient_bytes == adam.parameter_bytes);
  CHECK(adam.optimizer_state_bytes == 2 * adam.parameter_bytes);
  CHECK(adam.input_target_bytes == (4 + 3) * 32 * 32 * 32 * sizeof(float));
  CHECK(adam.output_bytes == 2 * 3 * 32 * 32 * 32 * sizeof(float));
  CHECK(adam.resident_bytes == adam.parameter_bytes + adam.gradient_bytes +
                                   adam.optimizer_state_bytes + adam.input_target_bytes +
                                   adam.output_bytes);
  CHECK(adam.peak_bytes == adam.resident_bytes + adam.activation_peak_bytes);
  CHECK(adam.activation_peak_bytes ==
        std::max(adam.forward_peak_bytes, adam.backward_peak_bytes));
  CHECK(adam.saved_bytes <= adam.forward_peak_bytes);
  MemoryPlanOptions options;
  options.optimizer = "none";
  options.element_bytes = 8;
  const revox::MemoryPlan none = revox::plan_training_memory(c, input, options);
  CHECK(none.optimizer_state_bytes == 0);
  CHECK(none.parameter_bytes == 2 * adam.parameter_bytes);
  CHECK(none.activation_peak_bytes > adam.activation_peak_bytes);
}

TEST_CASE("memory planner: the reversible encoder's memory does not grow with its blocks",
          "[memory_planner][unet]") {
  const Shape5 input{1, 4, 64, 64, 64};
  auto plan = [&](index_t blocks, bool reversible) {
    UNetConfig c = revox::unet_preset("small");
    c.blocks_per_level = blocks;
    c.reversible = reversible;
    if (!reversible) c.block_memory = "stored";  // the twin that keeps every MBConv map
    return revox::plan_training_memory(c, input);
  };
  const auto rev1 = plan(1, true);
  const auto rev4 = plan(4, true);
  const auto stored1 = plan(1, false);
  const auto stored4 = plan(4, false);
  CHECK(rev4.activation_peak_bytes == rev1.activation_peak_bytes);
  CHECK(rev4.saved_bytes == rev1.saved_bytes);
  CHECK(stored1.activation_peak_bytes > rev1.activation_peak_bytes);
  CHECK(stored4.activation_peak_bytes > 2 * stored1.activation_peak_bytes);
  // The reversible encoder keeps only the skips; the stored one keeps every MBConv map.
  CHECK(stored1.saved_bytes > 3 * rev1.saved_bytes);
}

TEST_CASE("memory planner: bad inputs and options throw readable errors",
          "[memory_planner][unet][errors]") {
  const UNetConfig c = revox::unet_preset("tiny");
  using Catch::Contains;
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 3, 16, 16, 16}),
                    Contains("input channels"));
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 4, 16, 18, 16}),
                    Contains("must be divisible by 4"));
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 4, 0, 16, 16}),
                    Contains("must be positive"));
  MemoryPlanOptions options;
  options.element_bytes = 2;
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 4, 16, 16, 16}, options),
                    Contains("element_bytes must be 4 (float) or 8 (double), got 2"));
  options.element_bytes = 4;
  options.optimizer = "lion";
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 4, 16, 16, 16}, options),
                    Contains("unknown optimizer 'lion'"));
  UNetConfig bad = c;
  bad.num_groups = 3;
  CHECK_THROWS_WITH(revox::plan_training_memory(bad, Shape5{1, 4, 16, 16, 16}),
                    Contains("must be divisible by 'num_groups' (3)"));
  CHECK_THROWS_WITH(revox::measure_training_memory<double>(c, Shape5{1, 4, 16, 16, 16}),
                    Contains("element_bytes (4) must equal sizeof(T) (8)"));
}

TEST_CASE("memory planner: deep supervision is refused by name", "[memory_planner][unet][errors]") {
  UNetConfig c = revox::unet_preset("tiny");
  c.deep_supervision = 1;
  CHECK_THROWS_WITH(revox::plan_training_memory(c, Shape5{1, 4, 16, 16, 16}),
                    Catch::Contains("a UNet with deep_supervision 1 is not planned"));
}
