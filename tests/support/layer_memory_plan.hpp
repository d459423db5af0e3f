// check_layer, shared by tests/test_layer_memory_plan*.cpp: plans and measures one training
// step of a layer (revox/models/memory_planner.hpp) and checks that they agree to the byte.
#pragma once

#include <catch2/catch.hpp>

#include <iostream>
#include <string>

#include "revox/models/memory_planner.hpp"

namespace revox_test {

using revox::MemoryPlan;
using revox::MemoryPlanOptions;
using revox::Shape5;

// Plans and measures one step of `layer`; they must agree to the byte.
template <class L>
MemoryPlan check_layer(const std::string& name, const L& layer, Shape5 input,
                       const MemoryPlanOptions& options = {}) {
  const MemoryPlan plan = revox::plan_layer_memory(layer, input, options);
  const std::size_t measured = revox::measure_layer_memory(layer, input, options);
  std::cout << "layer memory plan " << name << ": predicted " << plan.peak_bytes
            << " B, measured " << measured << " B; peak at " << plan.peak_at << "\n";
  INFO(name << ": predicted " << plan.peak_bytes << " bytes (resident " << plan.resident_bytes
            << ", forward +" << plan.forward_peak_bytes << ", backward +"
            << plan.backward_peak_bytes << ", peak at " << plan.peak_at << "), measured "
            << measured);
  CHECK(measured == plan.peak_bytes);
  CHECK(plan.peak_bytes == plan.resident_bytes + plan.activation_peak_bytes);
  CHECK(plan.saved_bytes <= plan.forward_peak_bytes);
  return plan;
}

}  // namespace revox_test
