// revox/metrics/segmentation.hpp — per-region segmentation scores with the BraTS rules:
// Dice, Hausdorff-95 (HD95), sensitivity and specificity.
//
// Masks are one volume, shape (1, 1, D, H, W), one byte per voxel, non-zero = inside; given
// as a Tensor<std::uint8_t> or as a pointer + Shape5. Spacing is (x = W, y = H, z = D) in mm,
// the NIfTI pixdim order. With TP, FP, FN, TN the voxel counts of pred vs truth:
//   dice        = 2 TP / (2 TP + FP + FN)    1 when both masks are empty (BraTS rule)
//   sensitivity = TP / (TP + FN)             1 when truth is empty (nothing to miss)
//   specificity = TN / (TN + FP)             1 when truth fills the volume (no negatives)
//   hd95        = the larger of the two directed 95th percentiles (the BraTS and MONAI rule):
//     surface(M) = M XOR binary_erosion(M) with the 6-neighbourhood (connectivity 1); voxels
//     outside the array count as outside M, so mask voxels on the array border are surface;
//     d(pred -> truth) = the distances (mm) from every surface voxel of pred to the nearest
//     surface voxel of truth, d(truth -> pred) likewise; each 95th percentile is NumPy's
//     default (linear interpolation), and
//       hd95        = max(P95(d(pred -> truth)), P95(d(truth -> pred)))
//                     (monai.metrics.compute_hausdorff_distance(..., percentile=95), and the
//                     max-of-directed rule of the BraTS 2023 evaluation code)
//       hd95_pooled = P95(d(pred -> truth) and d(truth -> pred) pooled)
//                     (medpy.metric.binary.hd95(pred, truth, voxelspacing))
//     Both are 0 when both masks are empty and kBratsEmptyHd95 (373.12866) when exactly one
//     is (BraTS rule, as in nnU-Net's Task082_BraTS_2020: the diagonal of a 240x240x155
//     volume at 1 mm). The BraTS 2023 evaluation code measures the directed distances with
//     DeepMind's surface-distance package (surface elements on the voxel corners, weighted by
//     their area) instead of surface voxels, which can move an HD95 by about one voxel:
//     hausdorff95(..., Hd95Definition::kSurfaceElements) computes that one
//     (revox/metrics/surface_elements.hpp).
// score_brats scores label volumes on the BraTS regions, in this order:
//   WT = {1, 2, ET}, TC = {1, ET}, ET = {ET}, with ET = 4 (2017-2021) or 3 (2023+).
//
// HD95 works on the bounding box of pred OR truth, which is exact (every surface voxel
// and every nearest neighbour lies in it) and is much smaller than the volume for tumours.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"
#include "revox/metrics/distance_transform.hpp"
#include "revox/metrics/surface_elements.hpp"

namespace revox::metrics {

// HD95 when exactly one of pred and truth is empty (BraTS; nnU-Net Task082 uses 373.12866).
inline constexpr double kBratsEmptyHd95 = 373.12866;

inline constexpr std::array<const char*, 3> kBratsRegionNames = {"WT", "TC", "ET"};

// Which 95th percentile of the surface distances an HD95 is (see the top of this file).
enum class Hd95Definition {
  kMaxOfDirected,  // max of the two directed 95th percentiles (BraTS, MONAI); the default
  kPooled,         // 95th percentile of both directions pooled (medpy)
  kSurfaceElements,  // max of directed, area-weighted, on voxel corners (DeepMind; the
                     // BraTS 2023 evaluation code)
};

inline const char* to_string(Hd95Definition definition) {
  switch (definition) {
    case Hd95Definition::kPooled: return "pooled (medpy)";
    case Hd95Definition::kSurfaceElements: return "surface elements (DeepMind, BraTS 2023 code)";
    default: return "max of directed (MONAI)";
  }
}

struct RegionScores {
  double dice = 0.0;
  double hd95 = 0.0;         // Hd95Definition::kMaxOfDirected
  double hd95_pooled = 0.0;  // Hd95Definition::kPooled
  double sensitivity = 0.0;
  double specificity = 0.0;
};

struct ConfusionCounts {
  index_t true_positives = 0;
  index_t false_positives = 0;
  index_t false_negatives = 0;
  index_t true_negatives = 0;
};

inline ConfusionCounts count_confusion(const std::uint8_t* pred, const std::uint8_t* truth,
                                       index_t voxels) {
  index_t tp = 0, fp = 0, fn = 0;
  // Integer sums: exact, so the reduction order does not matter.
#pragma omp parallel for reduction(+ : tp, fp, fn) schedule(static) if (voxels > (index_t{1} << 16))
  for (index_t i = 0; i < voxels; ++i) {
    const bool p = pred[i] != 0;
    const bool t = truth[i] != 0;
    tp += (p && t) ? 1 : 0;
    fp += (p && !t) ? 1 : 0;
    fn += (!p && t) ? 1 : 0;
  }
  return ConfusionCounts{tp, fp, fn, voxels - tp - fp - fn};
}

inline double dice(const ConfusionCounts& c) {
  const index_t denominator = 2 * c.true_positives + c.false_positives + c.false_negatives;
  if (denominator == 0) return 1.0;
  return 2.0 * static_cast<double>(c.true_positives) / static_cast<double>(denominator);
}

inline double sensitivity(const ConfusionCounts& c) {
  const index_t positives = c.true_positives + c.false_negatives;
  if (positives == 0) return 1.0;
  return static_cast<double>(c.true_positives) / static_cast<double>(positives);
}

inline double specificity(const ConfusionCounts& c) {
  const index_t negatives = c.true_negatives + c.false_positives;
  if (negatives == 0) return 1.0;
  return static_cast<double>(c.true_negatives) / static_cast<double>(negatives);
}

// surface[v] = 1 where mask[v] != 0 and one of its 6 neighbours is outside the mask or
// outside the volume; 0 elsewhere.
inline std::vector<std::uint8_t> surface_voxels(const std::uint8_t* mask, Shape5 shape) {
  detail::check_volume("surface_voxels", shape);
  const index_t depth = shape.d, height = shape.h, width = shape.w;
  std::vector<std::uint8_t> surface(static_cast<std::size_t>(shape.spatial()));
#pragma omp parallel for schedule(static) if (shape.spatial() > (index_t{1} << 16))
  for (index_t dh = 0; dh < depth * height; ++dh) {
    const index_t d = dh / height, h = dh % height;
    const index_t row = dh * width;
    for (index_t w = 0; w < width; ++w) {
      const index_t i = row + w;
      auto inside = [&](index_t offset) { return mask[i + offset] != 0; };
      const bool interior = mask[i] != 0 && w > 0 && w + 1 < width && h > 0 &&
                            h + 1 < height && d > 0 && d + 1 < depth && inside(-1) &&
                            inside(1) && inside(-width) && inside(width) &&
                            inside(-height * width) && inside(height * width);
      surface[i] = (mask[i] != 0 && !interior) ? 1 : 0;
    }
  }
  return surface;
}

// The q-th percentile (q in [0, 100]) with NumPy's default ('linear') method: the values
// sorted, position (n - 1) q / 100, linear interpolation between its neighbours (with
// NumPy's own lerp, so the result matches numpy.percentile to the last bit or two).
inline double percentile(std::vector<double> values, double q) {
  REVOX_CHECK(!values.empty(), "percentile: no values");
  REVOX_CHECK(q >= 0.0 && q <= 100.0, "percentile: q must be in [0, 100], got ", q);
  const double position = static_cast<double>(values.size() - 1) * (q / 100.0);
  const auto lower = static_cast<std::size_t>(std::floor(position));
  const double t = position - static_cast<double>(lower);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lower),
                   values.end());
  const double a = values[lower];
  if (lower + 1 >= values.size()) return a;
  const double b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lower) + 1,
                                     values.end());
  const double difference = b - a;
  return t >= 0.5 ? b - difference * (1.0 - t) : a + difference * t;
}

// medpy's __surface_distances(result = from, reference = to): for every surface voxel of
// `from` (in memory order), the distance in mm to the nearest surface voxel of `to`. Both
// masks must be non-empty.
inline std::vector<double> surface_distances(const std::uint8_t* from, const std::uint8_t* to,
                                             Shape5 shape, const Spacing& spacing) {
  detail::check_volume("surface_distances", shape);
  const std::vector<std::uint8_t> from_surface = surface_voxels(from, shape);
  const std::vector<std::uint8_t> to_surface = surface_voxels(to, shape);
  REVOX_CHECK(std::find(to_surface.begin(), to_surface.end(), 1) != to_surface.end() &&
                  std::find(from_surface.begin(), from_surface.end(), 1) != from_surface.end(),
              "surface_distances: both masks must be non-empty");
  const std::vector<double> squared = squared_distance_transform(to_surface.data(), shape, spacing);
  std::vector<double> distances;
  for (std::size_t i = 0; i < from_surface.size(); ++i) {
    if (from_surface[i] != 0) distances.push_back(std::sqrt(squared[i]));
  }
  return distances;
}

namespace detail {

// The smallest box holding every non-zero voxel of a or b, as [begin, end) per axis
// (d, h, w); empty (begin == end) when both are empty.
struct Box {
  std::array<index_t, 3> begin{};
  std::array<index_t, 3> end{};
};

inline Box union_bounding_box(const std::uint8_t* a, const std::uint8_t* b, Shape5 shape) {
  Box box;
  box.begin = {shape.d, shape.h, shape.w};
  box.end = {0, 0, 0};
  for (index_t d = 0; d < shape.d; ++d) {
    for (index_t h = 0; h < shape.h; ++h) {
      const index_t row = (d * shape.h + h) * shape.w;
      index_t first = -1, last = -1;
      for (index_t w = 0; w < shape.w; ++w) {
        if ((a[row + w] | b[row + w]) != 0) {
          if (first < 0) first = w;
          last = w;
        }
      }
      if (first < 0) continue;
      box.begin = {std::min(box.begin[0], d), std::min(box.begin[1], h),
                   std::min(box.begin[2], first)};
      box.end = {std::max(box.end[0], d + 1), std::max(box.end[1], h + 1),
                 std::max(box.end[2], last + 1)};
    }
  }
  return box;
}

inline std::vector<std::uint8_t> crop(const std::uint8_t* mask, Shape5 shape, const Box& box) {
  const index_t depth = box.end[0] - box.begin[0];
  const index_t height = box.end[1] - box.begin[1];
  const index_t width = box.end[2] - box.begin[2];
  std::vector<std::uint8_t> out(static_cast<std::size_t>(depth * height * width));
  for (index_t d = 0; d < depth; ++d) {
    for (index_t h = 0; h < height; ++h) {
      const std::uint8_t* source =
          mask + ((box.begin[0] + d) * shape.h + box.begin[1] + h) * shape.w + box.begin[2];
      std::uint8_t* target = out.data() + (d * height + h) * width;
      for (index_t w = 0; w < width; ++w) target[w] = source[w] != 0 ? 1 : 0;
    }
  }
  return out;
}

}  // namespace detail

// Both HD95 definitions, from one pair of directed distance sets.
struct Hd95Pair {
  double max_of_directed = 0.0;
  double pooled = 0.0;

};

// HD95 in mm, both definitions, with the BraTS rules for empty masks (see the top of this
// file).
inline Hd95Pair hausdorff95_both(const std::uint8_t* pred, const std::uint8_t* truth,
                                 Shape5 shape, const Spacing& spacing) {
  detail::check_volume("hausdorff95", shape);
  detail::check_spacing("hausdorff95", spacing);
  const index_t voxels = shape.spatial();
  const bool pred_empty = std::all_of(pred, pred + voxels, [](std::uint8_t v) { return v == 0; });
  const bool truth_empty =
      std::all_of(truth, truth + voxels, [](std::uint8_t v) { return v == 0; });
  if (pred_empty && truth_empty) return Hd95Pair{0.0, 0.0};
  if (pred_empty || truth_empty) return Hd95Pair{kBratsEmptyHd95, kBratsEmptyHd95};

  const detail::Box box = detail::union_bounding_box(pred, truth, shape);
  const Shape5 cropped{1, 1, box.end[0] - box.begin[0], box.end[1] - box.begin[1],
                       box.end[2] - box.begin[2]};
  const std::vector<std::uint8_t> pred_box = detail::crop(pred, shape, box);
  const std::vector<std::uint8_t> truth_box = detail::crop(truth, shape, box);
  const std::vector<std::uint8_t> pred_surface = surface_voxels(pred_box.data(), cropped);
  const std::vector<std::uint8_t> truth_surface = surface_voxels(truth_box.data(), cropped);

  std::vector<double> squared(static_cast<std::size_t>(cropped.spatial()));
  auto directed = [&](const std::vector<std::uint8_t>& from, const std::vector<std::uint8_t>& to) {
    std::vector<double> distances;
    squared_distance_transform(to.data(), cropped, spacing, squared.data());
    for (std::size_t i = 0; i < from.size(); ++i) {
      if (from[i] != 0) distances.push_back(std::sqrt(squared[i]));
    }
    return distances;
  };
  std::vector<double> pooled = directed(pred_surface, truth_surface);
  const std::vector<double> truth_to_pred = directed(truth_surface, pred_surface);
  Hd95Pair result;
  result.max_of_directed = std::max(percentile(pooled, 95.0), percentile(truth_to_pred, 95.0));
  pooled.insert(pooled.end(), truth_to_pred.begin(), truth_to_pred.end());
  result.pooled = percentile(std::move(pooled), 95.0);
  return result;
}

// HD95 in mm in the chosen definition, with the BraTS rules for empty masks.
inline double hausdorff95(const std::uint8_t* pred, const std::uint8_t* truth, Shape5 shape,
                          const Spacing& spacing,
                          Hd95Definition definition = Hd95Definition::kMaxOfDirected) {
  if (definition != Hd95Definition::kSurfaceElements) {
    const Hd95Pair both = hausdorff95_both(pred, truth, shape, spacing);
    return definition == Hd95Definition::kPooled ? both.pooled : both.max_of_directed;
  }
  detail::check_volume("hausdorff95", shape);
  detail::check_spacing("hausdorff95", spacing);
  const index_t voxels = shape.spatial();
  const bool pred_empty = std::all_of(pred, pred + voxels, [](std::uint8_t v) { return v == 0; });
  const bool truth_empty =
      std::all_of(truth, truth + voxels, [](std::uint8_t v) { return v == 0; });
  if (pred_empty && truth_empty) return 0.0;
  if (pred_empty || truth_empty) return kBratsEmptyHd95;
  return surface_element_hd95(pred, truth, shape, spacing);
}

inline RegionScores score_region(const std::uint8_t* pred, const std::uint8_t* truth,
                                 Shape5 shape, const Spacing& spacing) {
  detail::check_volume("score_region", shape);
  detail::check_spacing("score_region", spacing);
  const ConfusionCounts counts = count_confusion(pred, truth, shape.spatial());
  RegionScores scores;
  scores.dice = dice(counts);
  const Hd95Pair hd95 = hausdorff95_both(pred, truth, shape, spacing);
  scores.hd95 = hd95.max_of_directed;
  scores.hd95_pooled = hd95.pooled;
  scores.sensitivity = sensitivity(counts);
  scores.specificity = specificity(counts);
  return scores;
}

inline RegionScores score_region(const Tensor<std::uint8_t>& pred,
                                 const Tensor<std::uint8_t>& truth, const Spacing& spacing) {
  REVOX_CHECK(pred.shape() == truth.shape(), "score_region: pred shape ", pred.shape(),
              " differs from truth shape ", truth.shape());
  return score_region(pred.data(), truth.data(), pred.shape(), spacing);
}

namespace detail {

// Checks a pair of BraTS label volumes for `who`: enhancing_label 4 or 3, equal shapes, one
// volume each, and no label outside {0, 1, 2, enhancing_label}.
inline void check_brats_labels(const char* who, const Tensor<std::uint8_t>& pred_labels,
                               const Tensor<std::uint8_t>& truth_labels, int enhancing_label) {
  REVOX_CHECK(enhancing_label == 3 || enhancing_label == 4, who,
              ": enhancing_label must be 4 (BraTS 2017-2021) or 3 (2023+), got ",
              enhancing_label);
  REVOX_CHECK(pred_labels.shape() == truth_labels.shape(), who, ": pred_labels shape ",
              pred_labels.shape(), " differs from truth_labels shape ", truth_labels.shape());
  const Shape5 shape = pred_labels.shape();
  check_volume(who, shape);
  const index_t voxels = shape.spatial();
  const auto et = static_cast<std::uint8_t>(enhancing_label);
  auto validate = [&](const Tensor<std::uint8_t>& labels, const char* name) {
    for (index_t i = 0; i < voxels; ++i) {
      const std::uint8_t v = labels[i];
      if (v == 0 || v == 1 || v == 2 || v == et) continue;
      const index_t w = i % shape.w, h = (i / shape.w) % shape.h, d = i / (shape.w * shape.h);
      REVOX_CHECK(false, who, ": ", name, " has label ", static_cast<int>(v),
                  " at voxel (d, h, w) = (", d, ", ", h, ", ", w,
                  "); with enhancing_label ", enhancing_label, " the labels are {0, 1, 2, ",
                  enhancing_label, "}");
    }
  };
  validate(pred_labels, "pred_labels");
  validate(truth_labels, "truth_labels");
}

// Region membership per label value, for WT = {1, 2, ET}, TC = {1, ET}, ET = {ET}.
inline std::array<std::array<std::uint8_t, 256>, 3> brats_region_tables(int enhancing_label) {
  const auto et = static_cast<std::uint8_t>(enhancing_label);
  std::array<std::array<std::uint8_t, 256>, 3> member{};
  for (std::uint8_t label : {std::uint8_t{1}, std::uint8_t{2}, et}) member[0][label] = 1;
  for (std::uint8_t label : {std::uint8_t{1}, et}) member[1][label] = 1;
  member[2][et] = 1;
  return member;
}

}  // namespace detail

// Scores label volumes (values 0, 1, 2 and enhancing_label) on WT, TC, ET, in that order.
// enhancing_label is 4 for BraTS 2017-2021 and 3 for 2023+; any other label value in
// either volume is an error (it usually means the wrong release's convention).
inline std::array<RegionScores, 3> score_brats(const Tensor<std::uint8_t>& pred_labels,
                                               const Tensor<std::uint8_t>& truth_labels,
                                               int enhancing_label, const Spacing& spacing) {
  detail::check_brats_labels("score_brats", pred_labels, truth_labels, enhancing_label);
  detail::check_spacing("score_brats", spacing);
  const Shape5 shape = pred_labels.shape();
  const index_t voxels = shape.spatial();
  const auto member = detail::brats_region_tables(enhancing_label);

  std::vector<std::uint8_t> pred_region(static_cast<std::size_t>(voxels));
  std::vector<std::uint8_t> truth_region(static_cast<std::size_t>(voxels));
  std::array<RegionScores, 3> scores;
  for (std::size_t region = 0; region < 3; ++region) {
    const auto& table = member[region];
    for (index_t i = 0; i < voxels; ++i) {
      pred_region[i] = table[pred_labels[i]];
      truth_region[i] = table[truth_labels[i]];
    }
    scores[region] = score_region(pred_region.data(), truth_region.data(), shape, spacing);
  }
  return scores;
}

}  // namespace revox::metrics
