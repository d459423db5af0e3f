// plan_layer_memory against measure_layer_memory (see tests/test_layer_memory_plan.cpp) for
// MBConv and ConvBlock.
#include <catch2/catch.hpp>

#include "revox/core/tensor.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/models/memory_planner.hpp"
#include "support/layer_memory_plan.hpp"

using revox::MemoryPlanOptions;
using revox::Shape5;
using revox_test::check_layer;

TEST_CASE("layer memory plan: MBConv and ConvBlock match the measured peak",
          "[memory_planner][plan]") {
  check_layer("MBConv 8->8 e=4", revox::MBConv<float>(8, 8, 4, 2), Shape5{1, 8, 16, 16, 16});
  check_layer("MBConv 8->8 e=1", revox::MBConv<float>(8, 8, 1, 2), Shape5{2, 8, 8, 12, 16});
  MemoryPlanOptions options;
  options.input_gradient = true;
  options.optimizer = "adamw";
  check_layer("ConvBlock 4->8 with dx", revox::ConvBlock<float>(4, 8, 2), Shape5{1, 4, 16, 16, 16},
              options);
  check_layer("ConvBlock 8->8 double", revox::ConvBlock<double>(8, 8, 4), Shape5{1, 8, 20, 20, 20});
}
