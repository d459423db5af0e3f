// revox-brats post-processing of predicted label maps (applied by `predict` after the labels
// are made from the probabilities), as in the strongest BraTS entries (nnU-Net, BraTS 2020):
//
//   ET suppression: when a case's predicted enhancing tumour (ET) has fewer voxels than a
//     threshold, its ET voxels are relabelled necrosis / non-enhancing core (label 1), so they
//     stay in TC and WT. A false-positive ET in a case without ET costs the whole case's ET
//     Dice (0 by the BraTS rule, 1 when both are empty); dropping a small prediction trades
//     that against the cases with a small true ET. The threshold is chosen on the hold-out
//     set at the end of training (choose_et_threshold: the candidate with the best mean
//     hold-out ET Dice, the smallest on ties) and stored in the checkpoint's metadata
//     "et_threshold" (checkpoint.hpp).
//   Small components (optional, off by default): per region, 26-connected components
//     (metrics::connected_components, the labelling the lesion-wise metrics use) with
//     fewer than `min_component` voxels leave the region and take the label of the region
//     around it: a small WT component becomes background (0), a small TC component oedema
//     (2), a small ET component necrosis (1). Regions are cleaned from the outside in (WT,
//     then TC, then ET), each on the labels the previous step left.
// apply_postprocess runs the ET suppression first (the threshold was chosen on unprocessed
// labels), then the component removal.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/metrics/lesion_wise.hpp"

namespace revox::brats {

struct PostprocessOptions {
  double et_threshold = 0;         // ET with fewer voxels than this -> label 1; 0 = off
  std::int64_t min_component = 0;  // per region, components below this many voxels go; 0 = off
};

// The ET thresholds tried on the hold-out set (voxels).
inline const std::vector<std::int64_t>& et_threshold_candidates() {
  static const std::vector<std::int64_t> candidates{0,   10,  25,  50,  100,
                                                    200, 300, 500, 750, 1000};
  return candidates;
}

// Relabels every ET voxel as 1 when there are some but fewer than `threshold`. Returns the
// number of voxels relabelled.
inline std::int64_t suppress_small_enhancing(Tensor<std::uint8_t>& labels,
                                             data::LabelConvention convention,
                                             double threshold) {
  const std::uint8_t et = data::enhancing_label(convention);
  std::int64_t count = 0;
  for (index_t i = 0; i < labels.numel(); ++i) count += labels[i] == et ? 1 : 0;
  if (count == 0 || static_cast<double>(count) >= threshold) return 0;
  for (index_t i = 0; i < labels.numel(); ++i) {
    if (labels[i] == et) labels[i] = 1;
  }
  return count;
}

// The small-component removal described at the top of this file, on a (1, 1, D, H, W) label
// map. Returns the number of voxels whose label changed.
inline std::int64_t remove_small_components(Tensor<std::uint8_t>& labels,
                                            data::LabelConvention convention,
                                            std::int64_t min_component) {
  if (min_component <= 1) return 0;
  const Shape5 s = labels.shape();
  REVOX_CHECK(s.n == 1 && s.c == 1, "remove_small_components: labels must be (1, 1, D, H, W), "
              "got ", s);
  const std::uint8_t et = data::enhancing_label(convention);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(labels.numel()));
  std::int64_t changed = 0;
  // WT -> 0, TC -> oedema (2), ET -> necrosis (1).
  const std::array<std::uint8_t, 3> outer{0, 2, 1};
  for (std::size_t r = 0; r < 3; ++r) {
    for (index_t i = 0; i < labels.numel(); ++i) {
      const std::uint8_t l = labels[i];
      const bool in = r == 0 ? l != 0 : r == 1 ? (l == 1 || l == et) : l == et;
      mask[static_cast<std::size_t>(i)] = in ? 1 : 0;
    }
    const metrics::Components components = metrics::connected_components(mask.data(), s);
    for (index_t i = 0; i < labels.numel(); ++i) {
      const std::int32_t c = components.label[static_cast<std::size_t>(i)];
      if (c == 0 || components.voxels[static_cast<std::size_t>(c - 1)] >= min_component) continue;
      // A TC component keeps its voxels' WT membership; only those in TC change.
      labels[i] = outer[r];
      ++changed;
    }
  }
  return changed;
}

struct PostprocessReport {
  std::int64_t et_relabelled = 0;       // ET voxels turned into label 1
  std::int64_t component_voxels = 0;    // voxels changed by the component removal
};

inline PostprocessReport apply_postprocess(Tensor<std::uint8_t>& labels,
                                           data::LabelConvention convention,
                                           const PostprocessOptions& options) {
  PostprocessReport report;
  if (options.et_threshold > 0) {
    report.et_relabelled = suppress_small_enhancing(labels, convention, options.et_threshold);
  }
  if (options.min_component > 1) {
    report.component_voxels = remove_small_components(labels, convention, options.min_component);
  }
  return report;
}

// What choosing an ET threshold needs of one case: predicted and true ET voxels and their
// overlap (before any post-processing).
struct EnhancingCounts {
  std::int64_t predicted = 0, truth = 0, overlap = 0;
};

inline EnhancingCounts enhancing_counts(const Tensor<std::uint8_t>& pred,
                                        const Tensor<std::uint8_t>& truth,
                                        data::LabelConvention convention) {
  REVOX_CHECK(pred.shape() == truth.shape(), "enhancing_counts: prediction shape ",
              pred.shape(), " differs from the ground truth's ", truth.shape());
  const std::uint8_t et = data::enhancing_label(convention);
  EnhancingCounts c;
  for (index_t i = 0; i < pred.numel(); ++i) {
    const bool p = pred[i] == et, t = truth[i] == et;
    c.predicted += p ? 1 : 0;
    c.truth += t ? 1 : 0;
    c.overlap += p && t ? 1 : 0;
  }
  return c;
}

// The case's ET Dice (BraTS rule: 1 when both are empty) once ET predictions below
// `threshold` voxels are suppressed.
inline double enhancing_dice_after(const EnhancingCounts& c, double threshold) {
  const bool suppressed = c.predicted > 0 && static_cast<double>(c.predicted) < threshold;
  const std::int64_t predicted = suppressed ? 0 : c.predicted;
  const std::int64_t overlap = suppressed ? 0 : c.overlap;
  if (predicted + c.truth == 0) return 1.0;
  return 2.0 * static_cast<double>(overlap) / static_cast<double>(predicted + c.truth);
}

struct EtThresholdChoice {
  std::int64_t threshold = 0;        // the chosen candidate
  std::vector<std::int64_t> candidates;
  std::vector<double> mean_dice;     // mean hold-out ET Dice per candidate
  double dice_without = 0.0;         // threshold 0 (no suppression)
  double dice_with = 0.0;            // the chosen threshold
};

// The candidate with the highest mean ET Dice over `cases` (the smallest on ties; 0 when
// there are no cases).
inline EtThresholdChoice choose_et_threshold(
    const std::vector<EnhancingCounts>& cases,
    const std::vector<std::int64_t>& candidates = et_threshold_candidates()) {
  REVOX_CHECK(!candidates.empty(), "choose_et_threshold: no candidate thresholds");
  EtThresholdChoice choice;
  choice.candidates = candidates;
  std::sort(choice.candidates.begin(), choice.candidates.end());
  if (cases.empty()) {
    choice.mean_dice.assign(choice.candidates.size(), 0.0);
    return choice;
  }
  double best = -1.0;
  for (std::int64_t t : choice.candidates) {
    double sum = 0.0;
    for (const auto& c : cases) sum += enhancing_dice_after(c, static_cast<double>(t));
    const double mean = sum / static_cast<double>(cases.size());
    choice.mean_dice.push_back(mean);
    if (mean > best) {
      best = mean;
      choice.threshold = t;
    }
  }
  double without = 0.0;
  for (const auto& c : cases) without += enhancing_dice_after(c, 0.0);
  choice.dice_without = without / static_cast<double>(cases.size());
  choice.dice_with = best;
  return choice;
}

}  // namespace revox::brats
