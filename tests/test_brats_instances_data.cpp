// The training data (prepare_data: the cases found, checked, preprocessed and split) on the
// CPU, declared extern in support/brats_training.hpp, and revox_test::open_training_data.
#include "support/brats_training.hpp"

namespace revox::brats::detail {

template TrainingCases prepare_data<Cpu>(const RunContext<Cpu>&, const RunConfig&);

}  // namespace revox::brats::detail

revox::brats::TrainingData revox_test::open_training_data(
    const std::filesystem::path& folder, const revox::brats::TrainingDataOptions& options,
    const std::function<void(const std::string&)>& say) {
  return revox::brats::open_training_data(folder, options, say);
}
