// plan_layer_memory against measure_layer_memory (see tests/test_layer_memory_plan.cpp) for
// lean MBConv, against the stored one.
#include <catch2/catch.hpp>

#include <vector>

#include "revox/core/tensor.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/models/memory_planner.hpp"
#include "support/layer_memory_plan.hpp"

using revox::index_t;
using revox::MemoryPlan;
using revox::MemoryPlanOptions;
using revox::Shape5;
using revox_test::check_layer;

TEST_CASE("layer memory plan: lean MBConv matches the measured peak, below the stored one",
          "[memory_planner][plan][mbconv][lean]") {
  struct Case {
    const char* name;
    index_t in, out, expand, groups;
    Shape5 input;
    bool input_gradient;
  };
  const Case cases[] = {
      {"lean MBConv 8->8 e=2 groups 2", 8, 8, 2, 2, Shape5{1, 8, 16, 16, 16}, false},
      {"lean MBConv 8->8 e=2 groups 2, batch 2, dx", 8, 8, 2, 2, Shape5{2, 8, 12, 12, 12}, true},
      {"lean MBConv 15->15 e=2 groups 5, dx", 15, 15, 2, 5, Shape5{1, 15, 16, 16, 16}, true},
      {"lean MBConv 4->6 e=4 groups 1, batch 2", 4, 6, 4, 1, Shape5{2, 4, 10, 12, 14}, false},
      {"lean MBConv 8->8 e=1 groups 2", 8, 8, 1, 2, Shape5{2, 8, 8, 12, 16}, false},
      {"lean MBConv 8->4 e=1 groups 4, dx", 8, 4, 1, 4, Shape5{1, 8, 9, 10, 11}, true},
  };
  for (const Case& c : cases) {
    MemoryPlanOptions options;
    options.input_gradient = c.input_gradient;
    const MemoryPlan lean =
        check_layer(c.name, revox::MBConv<float>(c.in, c.out, c.expand, c.groups, true), c.input,
                    options);
    const MemoryPlan stored = revox::plan_layer_memory(
        revox::MBConv<float>(c.in, c.out, c.expand, c.groups), c.input, options);
    INFO(c.name << ": lean peak " << lean.peak_bytes << ", stored peak " << stored.peak_bytes);
    CHECK(lean.resident_bytes == stored.resident_bytes);
    CHECK(lean.saved_bytes < stored.saved_bytes);
    CHECK(lean.peak_bytes < stored.peak_bytes);
  }
  // Double precision, and lean F and G inside a reversible block.
  check_layer("lean MBConv<double> 4->4 e=2 groups 2", revox::MBConv<double>(4, 4, 2, 2, true),
              Shape5{2, 4, 8, 8, 8});
  using MBBlock = revox::ReversibleBlock<revox::MBConv<float>, revox::MBConv<float>>;
  const MBBlock lean_block(revox::MBConv<float>(8, 8, 2, 2, true),
                           revox::MBConv<float>(8, 8, 2, 2, true));
  const MBBlock stored_block(revox::MBConv<float>(8, 8, 2, 2), revox::MBConv<float>(8, 8, 2, 2));
  const Shape5 input{2, 16, 16, 16, 16};
  const MemoryPlan lean = check_layer("ReversibleBlock<lean MBConv, lean MBConv>", lean_block, input);
  const MemoryPlan stored = revox::plan_layer_memory(stored_block, input);
  CHECK(lean.peak_bytes < stored.peak_bytes);
}
