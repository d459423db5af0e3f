// revox-brats baseline: fits simple baselines (a FLAIR threshold for WT and a per-voxel
// Gaussian classifier; baselines.hpp) on the training cases of a run's split.json and segments
// its hold-out cases, for `revox-brats evaluate` to score like a model's predictions. The run
// itself is in baseline_run.hpp, which lists the files it writes.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "baseline_run.hpp"
#include "commands.hpp"

void add_baseline_command(CLI::App& app) {
  auto args = std::make_shared<revox::brats::BaselineArgs>();
  CLI::App* command = app.add_subcommand(
      "baseline",
      "Simple baselines that show how hard a data set is: fit a FLAIR threshold for WT and a "
      "per-voxel Gaussian classifier (4 z-scored modalities and their local means; classes "
      "background, edema, NCR/NET, ET) on the training cases of a run's split.json, and "
      "segment its hold-out cases. Writes OUT/flair_threshold/<case>.nii.gz (WT as edema, "
      "label 2; TC and ET empty), OUT/gaussian/<case>.nii.gz and OUT/baselines.json; score "
      "them with `revox-brats evaluate --pred OUT/gaussian --data RUN_DIR/holdout`.");
  command->add_option("--data", args->data,
                      "The folder of BraTS cases the run trained on (its raw cases)")
      ->required();
  command->add_option("--split", args->split,
                      "A run's split.json ({\"train\": [ids], \"holdout\": [ids]}, written by "
                      "`revox-brats train` into its run folder)")
      ->required();
  command->add_option("--test-data", args->test_data,
                      "Segment every case of this folder (a test set kept apart from the run's "
                      "data) instead of the split's hold-out cases");
  command->add_option("--out", args->out, "Output folder (created if missing)")->required();
  command->add_option("--radius", args->radius,
                      "Local means over (2 RADIUS + 1)^3 voxels of brain for the Gaussian "
                      "classifier's smoothed features")
      ->capture_default_str();
  command->add_option("--ridge", args->ridge,
                      "Added to the diagonal of every class covariance (features are z-scored)")
      ->capture_default_str();
  command->add_option("--threads", args->threads, "OpenMP threads (0: OpenMP's default)")
      ->capture_default_str();
  command->add_option("--nan-policy", args->nan_policy,
                      "NaN/Inf image voxels: error, or zero (set to 0 and reported)")
      ->check(CLI::IsMember({"error", "zero"}))
      ->capture_default_str();
  command->add_flag("--overwrite", args->overwrite, "Replace existing output files");
  command->callback([args] { revox::brats::run_baselines(*args, std::cout); });
}
