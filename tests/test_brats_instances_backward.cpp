// The U-Net's training backward pass on the CPU, declared extern in support/brats_training.hpp.
#include "support/brats_training.hpp"

namespace revox::brats::detail {

template void unet_backward<Cpu>(const Cpu&, UNet<float>&, UNet<float>::Saved<Cpu>&,
                                 TensorView<const float>,
                                 const std::vector<TensorView<const float>>&);

}  // namespace revox::brats::detail
