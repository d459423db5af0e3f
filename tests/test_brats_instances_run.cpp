// run_training<Cpu> and its TrainingLoop, declared extern in support/brats_training.hpp.
#include "support/brats_training.hpp"

namespace revox::brats {

template TrainResult run_training<Cpu>(const TrainOptions&, std::ostream&,
                                       dist::Communicator<Cpu>&, const Cpu&);

}  // namespace revox::brats
