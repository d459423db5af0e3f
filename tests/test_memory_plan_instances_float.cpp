// measure_training_memory<float> and measure_layer_memory of UNet<float>, declared extern in
// tests/support/unet_memory.hpp: compiled here once.
#include "support/unet_memory.hpp"

namespace revox {

template std::size_t measure_layer_memory<UNet<float>>(const UNet<float>&, Shape5,
                                                       const MemoryPlanOptions&);
template std::size_t measure_training_memory<float>(const UNetConfig&, Shape5,
                                                    const MemoryPlanOptions&, StepTimes*);

}  // namespace revox
