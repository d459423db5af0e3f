// revox_test::preprocess_dataset, declared in support/brats_training.hpp.
#include "support/brats_training.hpp"

revox::data::PreprocessSummary revox_test::preprocess_dataset(
    const std::filesystem::path& raw, const std::filesystem::path& out,
    const revox::data::PreprocessOptions& options) {
  return revox::data::preprocess_dataset(raw, out, options);
}
