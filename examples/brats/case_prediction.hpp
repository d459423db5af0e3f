// revox-brats: predicting one case and writing what `predict` promises, shared by the predict
// and ensemble subcommands.
//
// Files written into the output folder `out` for a case with id ID:
//   ID.nii.gz                         uint8 labels in the case's convention, its geometry
//   ID_prob_{wt,tc,et}.nii.gz         float32 region probabilities (save_probabilities)
//   overlays/ID_{axial,coronal,sagittal}.png   pictures through the tumour (overlays): the
//                                     centroid of the ground truth's tumour if the case has a
//                                     segmentation with tumour, else the prediction's
// planned_outputs lists them so that a run can refuse to overwrite before it starts.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "inference.hpp"
#include "overlay.hpp"
#include "postprocess.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/io/nifti.hpp"

namespace revox::brats {

struct OutputOptions {
  bool save_probabilities = false;
  bool overlays = false;
};

inline constexpr std::array<Plane, 3> kOverlayPlanes{Plane::axial, Plane::coronal,
                                                     Plane::sagittal};

inline std::filesystem::path overlay_path(const std::filesystem::path& out,
                                          const std::string& case_id, Plane plane) {
  return out / "overlays" / (case_id + "_" + plane_name(plane) + ".png");
}

inline std::vector<std::filesystem::path> planned_outputs(const std::filesystem::path& out,
                                                          const std::string& case_id,
                                                          const OutputOptions& options) {
  std::vector<std::filesystem::path> paths{prediction_path(out, case_id)};
  if (options.save_probabilities) {
    for (std::size_t r = 0; r < 3; ++r) paths.push_back(probability_path(out, case_id, r));
  }
  if (options.overlays) {
    for (Plane plane : kOverlayPlanes) paths.push_back(overlay_path(out, case_id, plane));
  }
  return paths;
}

// Throws when any planned output of any case exists and overwriting was not asked for.
inline void refuse_to_overwrite(const std::filesystem::path& out,
                                const std::vector<data::BratsCase>& cases,
                                const OutputOptions& options, bool overwrite) {
  if (overwrite) return;
  std::size_t existing = 0;
  std::filesystem::path first;
  for (const auto& brats_case : cases) {
    for (const auto& path : planned_outputs(out, brats_case.id, options)) {
      std::error_code error;
      if (std::filesystem::exists(path, error)) {
        if (existing == 0) first = path;
        ++existing;
      }
    }
  }
  REVOX_CHECK(existing == 0, existing, " output file(s) already exist in '", out.string(),
              "' (first: '", first.string(), "'); pass --overwrite to replace them or choose "
              "another --out");
}

struct CasePrediction {
  Tensor<std::uint8_t> labels;                // (1, 1, D, H, W) in the case's grid
  std::optional<std::array<double, 3>> dice;  // WT, TC, ET, when the case has a segmentation
  PostprocessReport postprocess;              // what the post-processing changed
};

// Predicts an already loaded case (image still raw: this z-scores it in place) with the
// models on `dev` (inference.hpp: every model and flip, probabilities averaged), turns the
// probabilities into labels, post-processes them (postprocess.hpp; the probability maps
// written are the unprocessed ones) and writes its outputs into `out`.
template <class Dev>
CasePrediction predict_and_write_case(const Dev& dev, const std::vector<const UNet<float>*>& nets,
                                      data::LoadedCase& loaded, const InferenceOptions& inference,
                                      const OutputOptions& outputs,
                                      const std::filesystem::path& out,
                                      const PostprocessOptions& postprocess = {}) {
  std::optional<Tensor<float>> flair;
  if (outputs.overlays) flair = channel_copy(loaded.image, 3);
  data::zscore_nonzero(loaded.image, loaded.id);
  const Tensor<float> probabilities = predict_probabilities(dev, nets, loaded.image, inference);
  CasePrediction result;
  result.labels = data::labels_from_regions(probabilities, loaded.label_convention, 0.5f);
  result.postprocess = apply_postprocess(result.labels, loaded.label_convention, postprocess);
  io::write_nifti_labels(prediction_path(out, loaded.id), result.labels, loaded.geometry);
  if (outputs.save_probabilities) {
    for (std::size_t r = 0; r < 3; ++r) {
      io::write_nifti(probability_path(out, loaded.id, r),
                      channel_copy(probabilities, static_cast<index_t>(r)), loaded.geometry);
    }
  }
  const Tensor<std::uint8_t>* truth = loaded.labels ? &*loaded.labels : nullptr;
  if (truth != nullptr) {
    result.dice = region_dice(result.labels, *truth, loaded.label_convention);
  }
  if (outputs.overlays) {
    std::filesystem::create_directories(out / "overlays");
    bool truth_has_tumour = false;
    for (index_t i = 0; truth != nullptr && i < truth->numel() && !truth_has_tumour; ++i) {
      truth_has_tumour = (*truth)[i] != 0;
    }
    const data::Size3 centre = tumour_centroid(truth_has_tumour ? *truth : result.labels);
    for (Plane plane : kOverlayPlanes) {
      write_png(overlay_path(out, loaded.id, plane),
                render_overlay(*flair, truth, result.labels,
                               data::enhancing_label(loaded.label_convention), plane, centre,
                               OverlayCaption{loaded.id, result.dice}));
    }
  }
  return result;
}

// One model.
template <class Dev>
CasePrediction predict_and_write_case(const Dev& dev, const UNet<float>& net,
                                      data::LoadedCase& loaded, const InferenceOptions& inference,
                                      const OutputOptions& outputs,
                                      const std::filesystem::path& out,
                                      const PostprocessOptions& postprocess = {}) {
  return predict_and_write_case(dev, std::vector<const UNet<float>*>{&net}, loaded, inference,
                                outputs, out, postprocess);
}

// The same on the CPU.
inline CasePrediction predict_and_write_case(const UNet<float>& net, data::LoadedCase& loaded,
                                             const InferenceOptions& inference,
                                             const OutputOptions& outputs,
                                             const std::filesystem::path& out) {
  return predict_and_write_case(Cpu{}, net, loaded, inference, outputs, out);
}

}  // namespace revox::brats
