// plan_layer_memory of UNet<float> and UNet<double>, declared extern in
// tests/support/unet_memory.hpp: compiled here once.
#include "support/unet_memory.hpp"

namespace revox {

template MemoryPlan plan_layer_memory<UNet<float>>(const UNet<float>&, Shape5,
                                                   const MemoryPlanOptions&);
template MemoryPlan plan_layer_memory<UNet<double>>(const UNet<double>&, Shape5,
                                                    const MemoryPlanOptions&);

}  // namespace revox
