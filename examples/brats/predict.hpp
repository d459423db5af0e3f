// revox-brats predict, the run itself (predict_command.cpp parses the command line): reads a
// checkpoint, builds the model on the device `dev` (its weights copied there from the
// checkpoint's host tensors on a GPU), and segments every case under --data with
// predict_and_write_case (case_prediction.hpp), printing one line per case (with the ETA)
// and the mean Dice over the cases with ground truth. Cases stream: one is predicted while a
// reader thread loads the next, so memory holds two cases whatever their number. The Cuda instantiation lives in brats_cuda.cu.
#pragma once

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "case_prediction.hpp"
#include "checkpoint.hpp"
#include "device.hpp"
#include "progress.hpp"
#include "revox/core/parameters.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/loader.hpp"
#include "revox/models/unet.hpp"

namespace revox::brats {

struct PredictArgs {
  std::string checkpoint;
  std::string data;
  std::string out;
  index_t window = 0;
  double overlap = 0.5;
  bool save_probabilities = false;
  bool overlays = false;
  bool overwrite = false;
  int threads = 0;
  std::string nan_policy = "error";  // --nan-policy: NaN/Inf image voxels, "error" or "zero"
};

inline std::string format_dice(const std::array<double, 3>& dice) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "Dice WT %.4f  TC %.4f  ET %.4f  mean %.4f", dice[0],
                dice[1], dice[2], (dice[0] + dice[1] + dice[2]) / 3.0);
  return buffer;
}

// `device_name` ("CPU", "GPU 0", ...) is printed in the first line.
template <class Dev>
void run_predict(const PredictArgs& args, const Dev& dev, const std::string& device_name) {
#ifdef _OPENMP
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  const Checkpoint checkpoint = read_checkpoint(args.checkpoint);
  const UNetConfig config = model_config_of(checkpoint);
  UNet<float> net(config);
  Parameters<float, Dev> params(net);
  {
    HostState<Dev> host(dev, config, net, params, nullptr, optim::AdamOptions{});
    load_model_weights(checkpoint, host.params());
    host.push();
  }

  InferenceOptions inference;
  inference.window = args.window;
  inference.overlap = args.overlap;
  check_inference_options(config, inference);
  OutputOptions outputs;
  outputs.save_probabilities = args.save_probabilities;
  outputs.overlays = args.overlays;

  const std::vector<data::BratsCase> cases = data::discover_brats_cases(args.data);
  const std::filesystem::path out(args.out);
  refuse_to_overwrite(out, cases, outputs, args.overwrite);
  std::filesystem::create_directories(out);

  char mode[96];
  if (args.window == 0) {
    std::snprintf(mode, sizeof mode, "full volume");
  } else {
    std::snprintf(mode, sizeof mode, "sliding window %lld^3, overlap %g",
                  static_cast<long long>(args.window), args.overlap);
  }
  std::cout << "predict: " << cases.size() << " case(s) from " << args.data << " with "
            << args.checkpoint << " (epoch " << checkpoint.epoch << "), " << mode << ", on "
            << device_name << "\n";
  std::array<double, 3> dice_sum{0, 0, 0};
  std::size_t scored = 0;
  // One case in memory at a time, plus the next one, which a reader thread loads while
  // this one is predicted (reading and inflating .nii.gz overlaps the forward pass).
  data::LoadOptions load_options;
  load_options.nan_policy = io::nan_policy_from_string(args.nan_policy);
  data::BackgroundLoader<data::LoadedCase> reader(
      cases.size(),
      [&](std::size_t i) { return data::load_brats_case(cases[i], load_options); },
      cases.size() > 1 ? 1 : 0, 1);
  const auto run_start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    data::LoadedCase loaded = reader.next();
    for (const auto& zeroed : loaded.zeroed) {
      std::cout << "predict: " << data::describe_zeroed(loaded.id, zeroed) << "\n";
    }
    const Shape5 shape = loaded.image.shape();
    const CasePrediction prediction =
        predict_and_write_case(dev, net, loaded, inference, outputs, out);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char timing[64];
    std::snprintf(timing, sizeof timing, "%.1f s", seconds);
    std::cout << "[" << (i + 1) << "/" << cases.size() << "] " << loaded.id << ": " << shape.w
              << " x " << shape.h << " x " << shape.d << ", " << timing;
    if (prediction.dice) {
      std::cout << ", " << format_dice(*prediction.dice);
      for (std::size_t r = 0; r < 3; ++r) dice_sum[r] += (*prediction.dice)[r];
      ++scored;
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    const double eta = elapsed / static_cast<double>(i + 1) * static_cast<double>(cases.size() - i - 1);
    std::cout << " -> " << prediction_path(out, loaded.id).string();
    if (i + 1 < cases.size()) std::cout << "  (ETA " << format_duration(eta) << ")";
    std::cout << "\n" << std::flush;
  }
  char waited[160];
  std::snprintf(waited, sizeof waited, "predict: %zu case(s) in %s; %.1f s of it waiting for "
                "cases to be read (the reader works while a case is predicted)",
                cases.size(),
                format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                              run_start).count()).c_str(),
                reader.wait_seconds());
  std::cout << waited << "\n";
  if (scored > 0) {
    const double n = static_cast<double>(scored);
    std::cout << "mean over " << scored << " case(s) with ground truth: "
              << format_dice({dice_sum[0] / n, dice_sum[1] / n, dice_sum[2] / n}) << "\n";
  }
  if (args.overlays) std::cout << "overlays: " << (out / "overlays").string() << "\n";
}

}  // namespace revox::brats
