// Hold-out validation on the CPU, declared extern in support/brats_training.hpp, and
// revox_test::write_phantom_dataset.
#include "support/brats_training.hpp"

namespace revox::brats::detail {

template std::array<double, 3> validate_holdout<Cpu>(const Cpu&, const UNet<float>&,
                                                     const TrainingData&,
                                                     const std::vector<std::size_t>&,
                                                     dist::Communicator<Cpu>&, bool, bool,
                                                     const fs::path&,
                                                     std::vector<EnhancingCounts>*);

}  // namespace revox::brats::detail

std::vector<std::filesystem::path> revox_test::write_phantom_dataset(
    const std::filesystem::path& root, int cases, revox::data::PhantomSize size) {
  return revox::data::write_phantom_dataset(root, cases, size);
}
