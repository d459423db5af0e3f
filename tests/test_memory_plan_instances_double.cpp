// measure_training_memory<double>, declared extern in tests/support/unet_memory.hpp: compiled
// here once.
#include "support/unet_memory.hpp"

namespace revox {

template std::size_t measure_training_memory<double>(const UNetConfig&, Shape5,
                                                     const MemoryPlanOptions&, StepTimes*);

}  // namespace revox
