// The end of a training epoch on the CPU (its record, checkpoints, log.csv and the learning
// curve), declared extern in support/brats_training.hpp.
#include "support/brats_training.hpp"

namespace revox::brats::detail {

template void TrainingLoop<Cpu>::end_epoch(int, std::chrono::steady_clock::time_point,
                                           EpochTotals&);
template void TrainingLoop<Cpu>::write_logs();

}  // namespace revox::brats::detail
