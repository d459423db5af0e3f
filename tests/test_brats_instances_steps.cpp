// run_training's steps around the data and the model (the run directory, the case check and a
// resumed checkpoint) on the CPU, declared extern in support/brats_training.hpp.
#include "support/brats_training.hpp"

namespace revox::brats::detail {

template RunStart claim_run_directory<Cpu>(const RunContext<Cpu>&, RunDirClaim&);
template void check_same_cases<Cpu>(const RunContext<Cpu>&, const RunConfig&,
                                    const TrainingCases&);
template TrainResult resume_from_checkpoint<Cpu>(const RunContext<Cpu>&, const RunStart&,
                                                 const RunConfig&, TrainingModel<Cpu>&);

}  // namespace revox::brats::detail
