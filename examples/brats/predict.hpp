// revox-brats predict, the run itself (predict_command.cpp parses the command line): reads one
// or more checkpoints, builds their models on the device `dev` (weights copied there from the
// checkpoints' host tensors on a GPU), and segments every case under --data with
// predict_and_write_case (case_prediction.hpp), printing one line per case (with the ETA)
// and the mean Dice over the cases with ground truth.
// Several checkpoints (e.g. the K folds of a cross-validation) form an ensemble: every model
// predicts every case (and every test-time flip) and the probabilities are averaged; they
// must agree on the model's input and output channels (architectures may differ). The ET
// post-processing threshold is --et-threshold when given, else the mean of the checkpoints'
// "et_threshold" metadata (0 for a checkpoint without it); --no-postprocess turns all
// post-processing off. Cases stream: one is predicted while a
// reader thread loads the next, so memory holds two cases whatever their number. The Cuda instantiation lives in brats_cuda.cu.
#pragma once

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

#include "case_prediction.hpp"
#include "checkpoint.hpp"
#include "device.hpp"
#include "postprocess.hpp"
#include "progress.hpp"
#include "revox/core/parameters.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/loader.hpp"
#include "revox/models/unet.hpp"

namespace revox::brats {

struct PredictArgs {
  std::vector<std::string> checkpoints;  // one, or several for an ensemble
  std::string data;
  std::string out;
  index_t window = 0;
  double overlap = 0.5;
  bool save_probabilities = false;
  bool overlays = false;
  bool overwrite = false;
  int threads = 0;
  std::string nan_policy = "error";  // --nan-policy: NaN/Inf image voxels, "error" or "zero"
  std::string tta = "none";          // --tta: none, all, or a list of flips (parse_tta)
  bool no_postprocess = false;       // --no-postprocess
  double et_threshold = -1;          // --et-threshold: >= 0 overrides the checkpoints'
  long long min_component = 0;       // --min-component: voxels, 0 = off
};

// The ET threshold predict applies: the override when >= 0, else the mean of the
// checkpoints' thresholds.
inline double resolve_et_threshold(const std::vector<std::int64_t>& checkpoint_thresholds,
                                   double override_threshold) {
  if (override_threshold >= 0) return override_threshold;
  if (checkpoint_thresholds.empty()) return 0.0;
  double sum = 0.0;
  for (auto t : checkpoint_thresholds) sum += static_cast<double>(t);
  return sum / static_cast<double>(checkpoint_thresholds.size());
}

// Throws unless every checkpoint's model takes the same input channels and gives the same
// region outputs as the first one (their predictions are averaged voxel by voxel).
inline void check_same_contract(const std::vector<std::string>& paths,
                                const std::vector<UNetConfig>& configs) {
  for (std::size_t i = 1; i < configs.size(); ++i) {
    REVOX_CHECK(configs[i].in_channels == configs[0].in_channels &&
                    configs[i].out_channels == configs[0].out_channels,
                "predict: checkpoint '", paths[i], "' has a model with ", configs[i].in_channels,
                " input and ", configs[i].out_channels, " output channels, '", paths[0],
                "' one with ", configs[0].in_channels, " and ", configs[0].out_channels,
                "; an ensemble needs the same modalities in and the same regions out");
  }
}

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
  REVOX_CHECK(!args.checkpoints.empty(), "predict: no --checkpoint given");
  // Every model with its parameters on `dev` (each checkpoint's weights through a host copy).
  struct Model {
    std::unique_ptr<UNet<float>> net;
    std::unique_ptr<Parameters<float, Dev>> params;
  };
  std::vector<Model> models;
  std::vector<UNetConfig> configs;
  std::vector<std::int64_t> thresholds;
  std::vector<int> epochs;
  for (const auto& path : args.checkpoints) {
    const Checkpoint checkpoint = read_checkpoint(path);
    configs.push_back(model_config_of(checkpoint));
    check_same_contract(args.checkpoints, configs);
    thresholds.push_back(checkpoint.et_threshold);
    epochs.push_back(checkpoint.epoch);
    Model model;
    model.net = std::make_unique<UNet<float>>(configs.back());
    model.params = std::make_unique<Parameters<float, Dev>>(*model.net);
    HostState<Dev> host(dev, configs.back(), *model.net, *model.params, nullptr,
                        optim::AdamOptions{});
    load_model_weights(checkpoint, host.params());
    host.push();
    models.push_back(std::move(model));
  }
  std::vector<const UNet<float>*> nets;
  for (const auto& model : models) nets.push_back(model.net.get());
  InferenceOptions inference;
  inference.window = args.window;
  inference.overlap = args.overlap;
  inference.flips = parse_tta(args.tta);
  for (const auto& c : configs) check_inference_options(c, inference);
  PostprocessOptions postprocess;
  if (!args.no_postprocess) {
    postprocess.et_threshold = resolve_et_threshold(thresholds, args.et_threshold);
    REVOX_CHECK(args.min_component >= 0, "--min-component must be >= 0, got ",
                args.min_component);
    postprocess.min_component = args.min_component;
  }
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
  std::cout << "predict: " << cases.size() << " case(s) from " << args.data << " with ";
  for (std::size_t m = 0; m < args.checkpoints.size(); ++m) {
    std::cout << (m > 0 ? ", " : "") << args.checkpoints[m] << " (epoch " << epochs[m] << ")";
  }
  if (args.checkpoints.size() > 1) {
    std::cout << " (an ensemble of " << args.checkpoints.size()
              << " models, probabilities averaged)";
  }
  std::cout << ", " << mode << ", on " << device_name << "\n";
  std::cout << "predict: test-time mirroring: " << describe_tta(inference.flips);
  if (nets.size() * std::max<std::size_t>(inference.flips.size(), 1) > 1) {
    std::cout << "; " << nets.size() * std::max<std::size_t>(inference.flips.size(), 1)
              << " forward passes per case";
  }
  std::cout << "\n";
  {
    char line[256];
    if (args.no_postprocess) {
      std::snprintf(line, sizeof line, "off (--no-postprocess)");
    } else {
      std::snprintf(line, sizeof line, "%s %g voxels%s%s; small components %s",
                    postprocess.et_threshold > 0 ? "ET below" : "ET kept (threshold",
                    postprocess.et_threshold,
                    postprocess.et_threshold > 0 ? " -> necrosis (label 1)" : ")",
                    args.et_threshold >= 0 ? " (--et-threshold)"
                    : args.checkpoints.size() > 1 ? " (mean of the checkpoints' thresholds)"
                                                  : " (the checkpoint's threshold)",
                    args.min_component > 1
                        ? ("below " + std::to_string(args.min_component) + " voxels removed")
                              .c_str()
                        : "kept");
    }
    std::cout << "predict: post-processing: " << line << "\n";
  }
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
        predict_and_write_case(dev, nets, loaded, inference, outputs, out, postprocess);
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
    if (prediction.postprocess.et_relabelled > 0) {
      std::cout << ", ET " << prediction.postprocess.et_relabelled << " voxels -> necrosis";
    }
    if (prediction.postprocess.component_voxels > 0) {
      std::cout << ", " << prediction.postprocess.component_voxels
                << " voxels of small components relabelled";
    }
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
