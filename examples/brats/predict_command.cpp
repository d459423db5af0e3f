// revox-brats predict: segments BraTS cases with a trained checkpoint (full volume, as in
// the paper, or sliding window with Gaussian-weighted overlap) and writes uint8 label maps
// in each case's grid, label convention and geometry (case_prediction.hpp lists the files).
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <CLI/CLI.hpp>

#include "case_prediction.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "revox/core/parameters.hpp"
#include "revox/data/brats.hpp"
#include "revox/models/unet.hpp"

namespace {

struct PredictArgs {
  std::string checkpoint;
  std::string data;
  std::string out;
  revox::index_t window = 0;
  double overlap = 0.5;
  bool save_probabilities = false;
  bool overlays = false;
  bool overwrite = false;
  int threads = 0;
};

std::string format_dice(const std::array<double, 3>& dice) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "Dice WT %.4f  TC %.4f  ET %.4f  mean %.4f", dice[0],
                dice[1], dice[2], (dice[0] + dice[1] + dice[2]) / 3.0);
  return buffer;
}

void run_predict(const PredictArgs& args) {
  namespace brats = revox::brats;
#ifdef _OPENMP
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  const brats::Checkpoint checkpoint = brats::read_checkpoint(args.checkpoint);
  const revox::UNetConfig config = brats::model_config_of(checkpoint);
  revox::UNet<float> net(config);
  revox::Parameters<float> params(net);
  brats::load_model_weights(checkpoint, params);

  brats::InferenceOptions inference;
  inference.window = args.window;
  inference.overlap = args.overlap;
  brats::check_inference_options(config, inference);
  brats::OutputOptions outputs;
  outputs.save_probabilities = args.save_probabilities;
  outputs.overlays = args.overlays;

  const std::vector<revox::data::BratsCase> cases = revox::data::discover_brats_cases(args.data);
  const std::filesystem::path out(args.out);
  brats::refuse_to_overwrite(out, cases, outputs, args.overwrite);
  std::filesystem::create_directories(out);

  char mode[96];
  if (args.window == 0) {
    std::snprintf(mode, sizeof mode, "full volume");
  } else {
    std::snprintf(mode, sizeof mode, "sliding window %lld^3, overlap %g",
                  static_cast<long long>(args.window), args.overlap);
  }
  std::cout << "predict: " << cases.size() << " case(s) from " << args.data << " with "
            << args.checkpoint << " (epoch " << checkpoint.epoch << "), " << mode << "\n";
  std::array<double, 3> dice_sum{0, 0, 0};
  std::size_t scored = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    revox::data::LoadedCase loaded = revox::data::load_brats_case(cases[i]);
    const revox::Shape5 shape = loaded.image.shape();
    const brats::CasePrediction prediction =
        brats::predict_and_write_case(net, loaded, inference, outputs, out);
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
    std::cout << " -> " << brats::prediction_path(out, loaded.id).string() << "\n";
  }
  if (scored > 0) {
    const double n = static_cast<double>(scored);
    std::cout << "mean over " << scored << " case(s) with ground truth: "
              << format_dice({dice_sum[0] / n, dice_sum[1] / n, dice_sum[2] / n}) << "\n";
  }
  if (args.overlays) std::cout << "overlays: " << (out / "overlays").string() << "\n";
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* command = app.add_subcommand(
      "predict",
      "Segment BraTS cases with a trained checkpoint. Writes OUT/<case>.nii.gz (uint8 labels in "
      "the case's convention and geometry); with --save-probabilities also "
      "OUT/<case>_prob_{wt,tc,et}.nii.gz, with --overlays OUT/overlays/<case>_{axial,coronal,"
      "sagittal}.png (ground truth beside prediction; WT blue, TC green, ET red).");
  command->add_option("--checkpoint", args->checkpoint, "Checkpoint (.safetensors) to use")
      ->required();
  command->add_option("--data", args->data, "A folder of BraTS cases, or one case folder")
      ->required();
  command->add_option("--out", args->out, "Output folder (created if missing)")->required();
  CLI::Option* window = command->add_option(
      "--sliding-window", args->window,
      "Sliding-window inference with SIZE^3 patches (a multiple of 2^(levels-1)) instead of "
      "the full volume");
  command->add_option("--overlap", args->overlap,
                      "Fraction of a window shared with its neighbour, in [0, 1)")
      ->needs(window)
      ->capture_default_str();
  command->add_flag("--save-probabilities", args->save_probabilities,
                    "Also write the WT, TC and ET probability maps (float32 NIfTI)");
  command->add_flag("--overlays", args->overlays,
                    "Also write PNG overlays through the tumour (axial, coronal, sagittal)");
  command->add_flag("--overwrite", args->overwrite, "Replace existing outputs in --out");
  command->add_option("--threads", args->threads, "CPU threads (default: all)");
  command->callback([args] { run_predict(*args); });
}
