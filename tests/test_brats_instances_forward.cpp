// The model (TrainingModel: the U-Net, its parameters and Adam) and the U-Net's forward pass
// in training and in sliding-window inference on the CPU, declared extern in
// support/brats_training.hpp.
#include "support/brats_training.hpp"

namespace revox::brats {

template Tensor<float> predict_probabilities_of_volume<Cpu>(const Cpu&, const UNet<float>&,
                                                            const Tensor<float>&,
                                                            const InferenceOptions&);

namespace detail {
template TrainingModel<Cpu>::TrainingModel(const Cpu&, const RunConfig&);
template void unet_forward<Cpu>(const Cpu&, const UNet<float>&, TensorView<const float>,
                                TensorView<float>, UNet<float>::Saved<Cpu>*,
                                const std::vector<TensorView<float>>&);
}  // namespace detail

}  // namespace revox::brats
