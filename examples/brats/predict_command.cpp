// revox-brats predict: segments BraTS cases with a trained checkpoint, or an ensemble of
// checkpoints whose probabilities are averaged (full volume, as in the paper, or sliding
// window with Gaussian-weighted overlap; optional test-time mirroring), post-processes the
// labels (ET suppression with the checkpoints' threshold, optional small-component removal;
// postprocess.hpp) and writes uint8 label maps in each case's grid, label convention and
// geometry (case_prediction.hpp lists the files).
// The run itself is in predict.hpp; --device cuda [--gpu N] runs the model on a GPU
// (brats_cuda.cu, compiled when CUDA is available).
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "device.hpp"
#include "predict.hpp"

namespace {

struct PredictCommandArgs : revox::brats::PredictArgs {
  revox::brats::DeviceChoice device;
};

}  // namespace

void add_predict_command(CLI::App& app) {
  auto args = std::make_shared<PredictCommandArgs>();
  CLI::App* command = app.add_subcommand(
      "predict",
      "Segment BraTS cases with a trained checkpoint. Writes OUT/<case>.nii.gz (uint8 labels in "
      "the case's convention and geometry); with --save-probabilities also "
      "OUT/<case>_prob_{wt,tc,et}.nii.gz, with --overlays OUT/overlays/<case>_{axial,coronal,"
      "sagittal}.png (ground truth beside prediction; WT blue, TC green, ET red).");
  command->add_option("--checkpoint", args->checkpoints,
                      "Checkpoint (.safetensors) to use; several (--checkpoint a b c, or the "
                      "option repeated) form an ensemble: every model predicts every case and "
                      "the probabilities are averaged (the models must take the same "
                      "modalities and give the same regions)")
      ->required()
      ->expected(1, -1);
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
  command->add_option("--tta", args->tta,
                      "Test-time augmentation by mirroring: none, all (the 8 combinations of "
                      "flips along x, y, z; 8x the time) or a comma-separated list such as "
                      "x,y,z or x,y,xy,xyz (the unflipped image is always included); the "
                      "probabilities of the flipped predictions, flipped back, are averaged")
      ->capture_default_str();
  CLI::Option* no_post = command->add_flag(
      "--no-postprocess", args->no_postprocess,
      "No post-processing: keep every predicted ET voxel (ignore the checkpoint's ET "
      "threshold) and every component");
  command->add_option("--et-threshold", args->et_threshold,
                      "ET post-processing: a case whose predicted ET has fewer voxels than N "
                      "gets them relabelled necrosis (label 1); default: the threshold stored "
                      "in the checkpoint (chosen on the hold-out set by train; the mean over "
                      "several checkpoints; 0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->excludes(no_post);
  command->add_option("--min-component", args->min_component,
                      "Remove, per region (WT, TC, ET), 26-connected components of fewer than "
                      "V voxels (they take the label of the region around them); default 0: off")
      ->check(CLI::NonNegativeNumber)
      ->excludes(no_post);
  command->add_flag("--save-probabilities", args->save_probabilities,
                    "Also write the WT, TC and ET probability maps (float32 NIfTI)");
  command->add_flag("--overlays", args->overlays,
                    "Also write PNG overlays through the tumour (axial, coronal, sagittal)");
  command->add_flag("--overwrite", args->overwrite, "Replace existing outputs in --out");
  command->add_option("--threads", args->threads, "CPU threads (default: all)");
  command->add_option("--nan-policy", args->nan_policy,
                      "NaN/Inf voxels in the images: error (default: stop, naming the file) or "
                      "zero (set them to 0 and report the count per file)")
      ->check(CLI::IsMember({"error", "zero"}))
      ->capture_default_str();
  command->add_option("--device", args->device.device,
                      "where the model runs: cpu (default) or cuda (a GPU; needs a build with "
                      "CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--gpu", args->device.gpu, "with --device cuda: the GPU to use (default 0)")
      ->check(CLI::NonNegativeNumber);
  command->callback([args] {
    revox::brats::check_device_choice(args->device);
    if (args->device.device == "cuda") {
#if defined(REVOX_BRATS_WITH_CUDA)
      revox::brats::run_predict_on_cuda(*args, args->device.gpu);
#endif
      return;
    }
    revox::brats::run_predict(*args, revox::Cpu{}, "the CPU");
  });
}
