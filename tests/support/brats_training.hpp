// The BraTS trainer on the CPU, compiled once for the test files that run it: run_training<Cpu>
// instantiates the whole U-Net's forward and backward (training and sliding-window
// inference), the data pipeline, checkpoints and plots, some 35 s of compile time per file.
// A test file that includes this header only calls them; tests/test_brats_instances_*.cpp
// instantiate them, each a part of the trainer (tests/CMakeLists.txt builds those with any
// test file that includes this header). A declaration here must match its template in
// examples/brats exactly, or the link fails naming the missing function.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

// The trainer writes PNGs with stb: a file that has not included it yet gets its own private
// copy here (as examples/brats/train_command.cpp does).
#ifndef INCLUDE_STB_IMAGE_WRITE_H
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#endif

#include "../../examples/brats/inference.hpp"
#include "../../examples/brats/trainer.hpp"
#include "../../examples/brats/training_data.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/phantom.hpp"

namespace revox::brats {

// test_brats_instances_run.cpp
extern template TrainResult run_training<Cpu>(const TrainOptions&, std::ostream&,
                                              dist::Communicator<Cpu>&, const Cpu&);
// test_brats_instances_forward.cpp
extern template Tensor<float> predict_probabilities_of_volume<Cpu>(const Cpu&,
                                                                   const UNet<float>&,
                                                                   const Tensor<float>&,
                                                                   const InferenceOptions&);

namespace detail {

// test_brats_instances_forward.cpp
extern template void unet_forward<Cpu>(const Cpu&, const UNet<float>&, TensorView<const float>,
                                       TensorView<float>, UNet<float>::Saved<Cpu>*,
                                       const std::vector<TensorView<float>>&);
// test_brats_instances_backward.cpp
extern template void unet_backward<Cpu>(const Cpu&, UNet<float>&, UNet<float>::Saved<Cpu>&,
                                        TensorView<const float>,
                                        const std::vector<TensorView<const float>>&);
// test_brats_instances_validate.cpp
extern template std::array<double, 3> validate_holdout<Cpu>(
    const Cpu&, const UNet<float>&, const TrainingData&, const std::vector<std::size_t>&,
    dist::Communicator<Cpu>&, bool, bool, const fs::path&, std::vector<EnhancingCounts>*);
// test_brats_instances_steps.cpp
extern template RunStart claim_run_directory<Cpu>(const RunContext<Cpu>&, RunDirClaim&);
extern template void check_same_cases<Cpu>(const RunContext<Cpu>&, const RunConfig&,
                                           const TrainingCases&);
extern template TrainResult resume_from_checkpoint<Cpu>(const RunContext<Cpu>&,
                                                        const RunStart&, const RunConfig&,
                                                        TrainingModel<Cpu>&);
// test_brats_instances_forward.cpp
extern template TrainingModel<Cpu>::TrainingModel(const Cpu&, const RunConfig&);
// test_brats_instances_data.cpp
extern template TrainingCases prepare_data<Cpu>(const RunContext<Cpu>&, const RunConfig&);
// test_brats_instances_epoch_end.cpp
extern template void TrainingLoop<Cpu>::end_epoch(int, std::chrono::steady_clock::time_point,
                                                  EpochTotals&);
extern template void TrainingLoop<Cpu>::write_logs();

}  // namespace detail
}  // namespace revox::brats

// Library functions the trainer tests call directly, each some 5-15 s of compile time: the
// tests call these forwarding functions instead, compiled once (in the file named).
namespace revox_test {

// revox::data::write_phantom_dataset (test_brats_instances_validate.cpp)
std::vector<std::filesystem::path> write_phantom_dataset(const std::filesystem::path& root,
                                                         int cases,
                                                         revox::data::PhantomSize size);
// revox::data::preprocess_dataset (test_brats_instances_preprocess.cpp)
revox::data::PreprocessSummary preprocess_dataset(const std::filesystem::path& raw,
                                                  const std::filesystem::path& out,
                                                  const revox::data::PreprocessOptions& options);
// revox::brats::open_training_data (test_brats_instances_data.cpp)
revox::brats::TrainingData open_training_data(
    const std::filesystem::path& folder, const revox::brats::TrainingDataOptions& options,
    const std::function<void(const std::string&)>& say);

}  // namespace revox_test
