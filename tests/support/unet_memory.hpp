// The memory planner's U-Net functions, compiled once for all the test files that use them:
// plan_layer_memory and measure_layer_memory of UNet<float> and UNet<double> and
// measure_training_memory<float> / <double> each instantiate a whole U-Net's forward and
// backward (for revox::Plan or the CPU), several seconds of compile time per file. A test file
// that includes this header only calls them; tests/test_memory_plan_instances_*.cpp
// instantiate them (tests/CMakeLists.txt builds those with any memory_plan* test file).
#pragma once

#include <cstddef>

#include "revox/models/memory_planner.hpp"
#include "revox/models/unet.hpp"

namespace revox {

extern template MemoryPlan plan_layer_memory<UNet<float>>(const UNet<float>&, Shape5,
                                                          const MemoryPlanOptions&);
extern template MemoryPlan plan_layer_memory<UNet<double>>(const UNet<double>&, Shape5,
                                                           const MemoryPlanOptions&);
extern template std::size_t measure_layer_memory<UNet<float>>(const UNet<float>&, Shape5,
                                                              const MemoryPlanOptions&);
extern template std::size_t measure_training_memory<float>(const UNetConfig&, Shape5,
                                                           const MemoryPlanOptions&, StepTimes*);
extern template std::size_t measure_training_memory<double>(const UNetConfig&, Shape5,
                                                            const MemoryPlanOptions&, StepTimes*);

}  // namespace revox
