// revox-brats train: see trainer.hpp for what a run does and writes, run_config.hpp for the
// config keys and presets. Started by an MPI launcher (`mpirun -np N revox-brats train ...`)
// in a build with MPI (REVOX_WITH_MPI), the N processes train one model together
// (data-parallel, revox/dist/mpi.hpp); a build without MPI refuses to start as one of
// several processes. A process that fails ends the whole job with a message naming its rank.
// --device cuda [--gpu N] trains on a GPU (brats_cuda.cu, compiled when CUDA is available;
// under mpirun one GPU per process, the local rank's, with NCCL).
// stb_image_write, private to this file (overlay_png.cpp has its own static copy).
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "device.hpp"
#include "revox/dist/communicator.hpp"
#include "run_config.hpp"
#include "trainer.hpp"
#if defined(REVOX_WITH_MPI)
#include "revox/dist/mpi.hpp"
#endif

namespace {

struct TrainArgs {
  std::string data, out, preset, config_file;
  std::vector<std::string> sets;
  int epochs = 0, threads = 0;
  long long seed = -1;
  int folds = -1, fold = -1;  // --folds, --fold (config keys "folds", "fold")
  bool resume = false;
  bool check_replicas = false;
  std::string on_nonfinite = "error";
  std::string nan_policy = "error";
  revox::brats::DeviceChoice device;
};

nlohmann::json resolve_config(const TrainArgs& a) {
  nlohmann::json config;
  if (!a.config_file.empty()) {
    std::ifstream in(a.config_file);
    REVOX_CHECK(in.good(), "cannot read --config '", a.config_file, "'");
    nlohmann::json file;
    try {
      file = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw revox::Error("--config '" + a.config_file + "' is not valid JSON: " + e.what());
    }
    config = revox::brats::default_run_json();
    try {
      config = revox::brats::parse_run_config(file).json;
    } catch (const revox::Error& e) {
      throw revox::Error("--config '" + a.config_file + "': " + e.what());
    }
  } else {
    config = revox::brats::training_preset(a.preset.empty() ? "small" : a.preset);
  }
  for (const auto& s : a.sets) revox::brats::apply_set(config, s);
  if (a.seed >= 0) config["seed"] = a.seed;
  if (a.folds >= 0) config["folds"] = a.folds;
  if (a.fold >= 0) config["fold"] = a.fold;
  return revox::brats::parse_run_config(config).json;
}

revox::brats::TrainOptions train_options(const TrainArgs& args) {
  revox::brats::TrainOptions options;
  options.data = args.data;
  options.out = args.out;
  options.resume = args.resume;
  if (!args.resume) {
    options.config = resolve_config(args);
  } else {
    // On --resume the checkpoint's config is the base; --set applies on top of it.
    if (!args.preset.empty() || !args.config_file.empty()) {
      TrainArgs base = args;
      base.sets.clear();
      options.config = resolve_config(base);
    }
    options.sets = args.sets;
    if (args.seed >= 0) options.sets.push_back("seed=" + std::to_string(args.seed));
    if (args.folds >= 0) options.sets.push_back("folds=" + std::to_string(args.folds));
    if (args.fold >= 0) options.sets.push_back("fold=" + std::to_string(args.fold));
  }
  if (args.epochs > 0) options.epochs = args.epochs;
  if (args.threads > 0) options.threads = args.threads;
  options.check_replicas = args.check_replicas;
  options.on_nonfinite = args.on_nonfinite;
  options.nan_policy = revox::io::nan_policy_from_string(args.nan_policy);
  return options;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a reversible 3D U-Net on BraTS cases (seeded train/hold-out split, augmentation, "
      "Adam + MultiStepLR, hold-out Dice, latest/best checkpoints, exact --resume)");
  cmd->add_option("--data", args->data, "folder of BraTS cases (any release layout)")
      ->required();
  cmd->add_option("--out", args->out, "run directory (must be new or empty unless --resume)")
      ->required();
  auto* preset = cmd->add_option("--preset", args->preset,
                                 "training preset: small (default), tiny, mbconv-base, "
                                 "mbconv-deeper, mbconv-wider, baseline");
  auto* config = cmd->add_option("--config", args->config_file,
                                 "training config JSON (see examples/brats/run_config.hpp)");
  preset->excludes(config);
  cmd->add_option("--set", args->sets,
                  "override a config key, e.g. --set epochs=10 --set model.expand_ratio=4 "
                  "--set augment.enabled=false (repeatable)");
  cmd->add_option("--epochs", args->epochs, "number of epochs (overrides the config)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", args->seed, "seed (overrides the config)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--folds", args->folds,
                  "cross-validation: split the cases into K folds (seeded, stratified by "
                  "whether a case has ET) and hold out fold --fold; 0 or 1: the seeded "
                  "hold-out split (config key \"folds\")")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--fold", args->fold,
                  "with --folds K: the hold-out fold, 0 <= k < K (config key \"fold\")")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--resume", args->resume,
                "continue the run in --out from latest.safetensors, exactly");
  cmd->add_option("--threads", args->threads,
                  "OpenMP threads per process (overrides the config)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--check-replicas", args->check_replicas,
                "under mpirun: compare a checksum of every process's weights after every step "
                "and stop with an error if they differ (they are always compared after every "
                "epoch)");
  cmd->add_option("--on-nonfinite", args->on_nonfinite,
                  "a NaN or Inf loss or gradient: error (default) stops the run naming the step "
                  "and the tensor, keeping the last good checkpoint; skip skips that step (no "
                  "update) and counts it in log.csv's skipped_steps")
      ->check(CLI::IsMember({"error", "skip"}));
  cmd->add_option("--nan-policy", args->nan_policy,
                  "NaN/Inf voxels in the images: error (default: stop, naming the file) or "
                  "zero (set them to 0 and report the count per file); NaN in a segmentation "
                  "is always an error")
      ->check(CLI::IsMember({"error", "zero"}))
      ->capture_default_str();
  cmd->add_option("--device", args->device.device,
                  "where the model trains: cpu (default) or cuda (a GPU; needs a build with "
                  "CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--gpu", args->device.gpu,
                  "with --device cuda: the GPU to use (default 0; under mpirun each process "
                  "uses the GPU of its local rank)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([args] {
    revox::brats::check_device_choice(args->device);
    if (args->device.device == "cuda") {
#if defined(REVOX_BRATS_WITH_CUDA)
      revox::brats::run_training_on_cuda(train_options(*args), args->device.gpu);
#endif
      return;
    }
#if defined(REVOX_WITH_MPI)
    revox::dist::CpuWorld world;
    revox::dist::Communicator<revox::Cpu>& comm = world.communicator();
#else
    const auto single = revox::dist::single_process_communicator("revox-brats train");
    revox::dist::Communicator<revox::Cpu>& comm = *single;
#endif
    revox::dist::run_or_abort(comm, "revox-brats train", [&] {
      revox::brats::run_training(train_options(*args), std::cout, comm);
    });
  });
}
