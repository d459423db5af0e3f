// revox-brats baseline: two simple segmentations of BraTS cases that a 3D CNN should beat by
// a wide margin, fitted on training cases so that their hold-out scores say how hard a data
// set is.
//
//   FLAIR threshold (WT only): FLAIR z-scored over brain voxels (data::zscore_nonzero, as the
//     trainer normalises), WT predicted where z > t on brain voxels. t is the grid value with
//     the highest mean WT Dice over the training cases (the first one on ties; a case with an
//     empty WT and an empty prediction scores 1, as in BraTS). Predicted WT voxels are written
//     as edema (label 2), so TC and ET are always empty for this baseline.
//   Gaussian classifier (QDA): per brain voxel, the 4 z-scored modalities (t1, t1ce, t2,
//     flair) and their local means over a (2r+1)^3 box of brain voxels (the box truncated at
//     the volume's border, and only brain voxels averaged, so the brain's edge is not
//     darkened by the background) = 8 features. Classes: brain background, edema, NCR/NET,
//     ET. One full-covariance Gaussian per class and the class priors (voxel frequencies)
//     are fitted by maximum likelihood on every brain voxel of the training cases; the
//     fit only keeps per-class sufficient statistics (count, sum, sum of outer products, in
//     double), so memory does not grow with the number of cases or voxels. Each brain voxel
//     gets the class of maximum posterior; a small ridge on the diagonal keeps covariances
//     invertible; a class seen on fewer voxels than 2 x features in training is never
//     predicted.
//
// Brain voxels are those where any modality is non-zero (skull-stripped BraTS has zero
// background); every other voxel is predicted background. Volumes are (1, C, D, H, W) host
// tensors; features are stored planar, feature-major: features[f * voxels + i].
//
// The split comes from a training run's RUN_DIR/split.json ({"train": [ids], "holdout":
// [ids]}, written by the trainer); read_split checks it and names the file in every error.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"

namespace revox::brats {

// ---- the split --------------------------------------------------------------------------

struct CaseIdSplit {
  std::vector<std::string> train;
  std::vector<std::string> holdout;
};

// Reads {"train": [ids], "holdout": [ids]} (other keys are ignored). Every error names the
// file: missing, not JSON, a key missing or not a list of strings, an id in both lists or
// twice in one, no training case.
inline CaseIdSplit read_split(const std::filesystem::path& path) {
  std::error_code error;
  REVOX_CHECK(std::filesystem::is_regular_file(path, error), "split file '", path.string(),
              "' does not exist (it is RUN_DIR/split.json, written by `revox-brats train`)");
  std::ifstream in(path);
  REVOX_CHECK(in.good(), "cannot open split file '", path.string(), "'");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& parse_error) {
    throw Error(revox::detail::concat("split file '", path.string(),
                                      "' is not valid JSON: ", parse_error.what()));
  }
  REVOX_CHECK(json.is_object(), "split file '", path.string(),
              "' must hold a JSON object with \"train\" and \"holdout\" lists of case ids");
  CaseIdSplit split;
  std::set<std::string> seen;
  for (const char* key : {"train", "holdout"}) {
    REVOX_CHECK(json.contains(key) && json[key].is_array(), "split file '", path.string(),
                "' has no \"", key, "\" list of case ids");
    auto& ids = std::string(key) == "train" ? split.train : split.holdout;
    for (const auto& id : json[key]) {
      REVOX_CHECK(id.is_string(), "split file '", path.string(), "': \"", key,
                  "\" holds ", id.dump(), ", not a case id (a string)");
      const std::string text = id.get<std::string>();
      REVOX_CHECK(seen.insert(text).second, "split file '", path.string(), "': case '", text,
                  "' is listed twice");
      ids.push_back(text);
    }
  }
  REVOX_CHECK(!split.train.empty(), "split file '", path.string(),
              "' lists no training case (\"train\" is empty)");
  return split;
}

// The cases of `ids`, in that order, looked up among the discovered `cases`; an id that is not
// there is an error naming the split file and the data folder.
inline std::vector<data::BratsCase> cases_of(const std::vector<std::string>& ids,
                                             const std::vector<data::BratsCase>& cases,
                                             const std::string& role,
                                             const std::filesystem::path& split_path,
                                             const std::filesystem::path& data_folder) {
  std::map<std::string, const data::BratsCase*> by_id;
  for (const auto& c : cases) by_id[c.id] = &c;
  std::vector<data::BratsCase> found;
  std::vector<std::string> missing;
  for (const auto& id : ids) {
    const auto it = by_id.find(id);
    if (it == by_id.end()) {
      missing.push_back(id);
    } else {
      found.push_back(*it->second);
    }
  }
  if (!missing.empty()) {
    std::string listed;
    for (std::size_t i = 0; i < missing.size() && i < 8; ++i) {
      listed += (i ? ", " : "") + missing[i];
    }
    if (missing.size() > 8) listed += revox::detail::concat(" and ", missing.size() - 8, " more");
    throw Error(revox::detail::concat(
        "split file '", split_path.string(), "': ", missing.size(), " ", role,
        " case(s) are not in the data folder '", data_folder.string(), "' (", cases.size(),
        " case(s) found there): ", listed));
  }
  return found;
}

// ---- features ---------------------------------------------------------------------------

inline constexpr index_t kBaselineModalities = 4;
inline constexpr index_t kBaselineFeatures = 8;  // 4 z-scored modalities + 4 local means
inline constexpr index_t kFlairChannel = 3;

struct CaseFeatures {
  data::Size3 size{0, 0, 0};        // (D, H, W)
  std::vector<std::uint8_t> brain;  // (voxels): 1 where any modality is non-zero
  std::vector<float> values;        // (kBaselineFeatures, voxels), feature-major
  index_t voxels() const { return size[0] * size[1] * size[2]; }
  const float* feature(index_t f) const { return values.data() + f * voxels(); }
};

// Box sums along one axis: out[i] = sum of in[j] for |j - i| <= radius within each line.
// `lines` lines of `length` elements, element k of line l at base(l) + k * stride.
namespace detail {

inline void box_sum_axis(std::vector<double>& values, const data::Size3& size, int axis,
                         index_t radius) {
  const index_t d = size[0], h = size[1], w = size[2];
  const index_t length = size[static_cast<std::size_t>(axis)];
  const index_t stride = axis == 0 ? h * w : axis == 1 ? w : 1;
  std::vector<double> prefix(static_cast<std::size_t>(length + 1));
  for (index_t z = 0; z < (axis == 0 ? 1 : d); ++z) {
    for (index_t y = 0; y < (axis == 1 ? 1 : h); ++y) {
      for (index_t x = 0; x < (axis == 2 ? 1 : w); ++x) {
        const index_t base = (z * h + y) * w + x;
        prefix[0] = 0.0;
        for (index_t k = 0; k < length; ++k) {
          prefix[static_cast<std::size_t>(k + 1)] =
              prefix[static_cast<std::size_t>(k)] +
              values[static_cast<std::size_t>(base + k * stride)];
        }
        for (index_t k = 0; k < length; ++k) {
          const index_t lo = std::max<index_t>(0, k - radius);
          const index_t hi = std::min<index_t>(length, k + radius + 1);
          values[static_cast<std::size_t>(base + k * stride)] =
              prefix[static_cast<std::size_t>(hi)] - prefix[static_cast<std::size_t>(lo)];
        }
      }
    }
  }
}

inline void box_sum(std::vector<double>& values, const data::Size3& size, index_t radius) {
  for (int axis = 0; axis < 3; ++axis) box_sum_axis(values, size, axis, radius);
}

}  // namespace detail

// The mean of `values` over the brain voxels of the (2 radius + 1)^3 box around each brain
// voxel (0 outside the brain). radius 0 gives `values` on brain voxels.
inline std::vector<float> local_brain_mean(const float* values,
                                           const std::vector<std::uint8_t>& brain,
                                           const data::Size3& size, index_t radius) {
  const std::size_t voxels = brain.size();
  std::vector<double> sums(voxels), counts(voxels);
  for (std::size_t i = 0; i < voxels; ++i) {
    counts[i] = brain[i] ? 1.0 : 0.0;
    sums[i] = brain[i] ? static_cast<double>(values[i]) : 0.0;
  }
  detail::box_sum(sums, size, radius);
  detail::box_sum(counts, size, radius);
  std::vector<float> mean(voxels, 0.0f);
  for (std::size_t i = 0; i < voxels; ++i) {
    if (brain[i]) mean[i] = static_cast<float>(sums[i] / counts[i]);
  }
  return mean;
}

// The baselines' features of a case from its raw image (1, 4, D, H, W), which this z-scores
// in place (data::zscore_nonzero; its errors name the case and the modality).
inline CaseFeatures case_features(Tensor<float>& image, const std::string& case_id,
                                  index_t radius) {
  const Shape5 s = image.shape();
  REVOX_CHECK(s.n == 1 && s.c == kBaselineModalities, "baseline: case ", case_id,
              " has image shape ", s, "; expected (1, 4, D, H, W) (t1, t1ce, t2, flair)");
  REVOX_CHECK(radius >= 0, "baseline: the smoothing radius must be >= 0, not ", radius);
  CaseFeatures features;
  features.size = data::spatial_size(s);
  const index_t voxels = s.spatial();
  features.brain.assign(static_cast<std::size_t>(voxels), 0);
  for (index_t c = 0; c < kBaselineModalities; ++c) {
    const float* v = image.data() + c * voxels;
    for (index_t i = 0; i < voxels; ++i) {
      if (v[i] != 0.0f) features.brain[static_cast<std::size_t>(i)] = 1;
    }
  }
  data::zscore_nonzero(image, case_id);
  features.values.resize(static_cast<std::size_t>(kBaselineFeatures * voxels));
  for (index_t c = 0; c < kBaselineModalities; ++c) {
    const float* z = image.data() + c * voxels;
    float* out = features.values.data() + c * voxels;
    for (index_t i = 0; i < voxels; ++i) {
      out[i] = features.brain[static_cast<std::size_t>(i)] ? z[i] : 0.0f;
    }
  }
#pragma omp parallel for schedule(static, 1)
  for (index_t c = 0; c < kBaselineModalities; ++c) {
    const std::vector<float> mean = local_brain_mean(features.values.data() + c * voxels,
                                                     features.brain, features.size, radius);
    std::copy(mean.begin(), mean.end(),
              features.values.begin() + (kBaselineModalities + c) * voxels);
  }
  return features;
}

// ---- FLAIR threshold --------------------------------------------------------------------

// -2, -1.98, ..., 6: the thresholds (in standard deviations of the brain's FLAIR) searched.
inline std::vector<double> default_threshold_grid() {
  std::vector<double> grid;
  for (int k = -100; k <= 300; ++k) grid.push_back(0.02 * k);
  return grid;
}

// For one case and every threshold grid[j]: the brain voxels with z > grid[j] inside the
// true WT and outside it, and the WT's size.
struct ThresholdCounts {
  std::vector<index_t> wt_above;
  std::vector<index_t> other_above;
  index_t wt_voxels = 0;
};

// `z`: the case's z-scored FLAIR; `in_wt`: 1 on true WT voxels; `grid` sorted ascending.
inline ThresholdCounts count_above(const float* z, const std::vector<std::uint8_t>& brain,
                                   const std::vector<std::uint8_t>& in_wt,
                                   const std::vector<double>& grid) {
  REVOX_ASSERT(std::is_sorted(grid.begin(), grid.end()));
  const std::size_t n = grid.size();
  // below[m]: voxels whose value exceeds exactly the first m thresholds.
  std::vector<index_t> wt_below(n + 1, 0), other_below(n + 1, 0);
  ThresholdCounts counts;
  for (std::size_t i = 0; i < brain.size(); ++i) {
    if (in_wt[i]) ++counts.wt_voxels;
    if (!brain[i]) continue;
    const auto m = static_cast<std::size_t>(
        std::lower_bound(grid.begin(), grid.end(), static_cast<double>(z[i])) - grid.begin());
    ++(in_wt[i] ? wt_below : other_below)[m];
  }
  counts.wt_above.assign(n, 0);
  counts.other_above.assign(n, 0);
  index_t wt = 0, other = 0;
  for (std::size_t j = n; j-- > 0;) {  // voxels above grid[j]: those exceeding > j thresholds
    wt += wt_below[j + 1];
    other += other_below[j + 1];
    counts.wt_above[j] = wt;
    counts.other_above[j] = other;
  }
  return counts;
}

struct ThresholdChoice {
  double threshold = 0.0;
  double mean_dice = 0.0;            // mean WT Dice over the training cases at `threshold`
  std::vector<double> mean_dice_at;  // per grid value
};

inline ThresholdChoice choose_threshold(const std::vector<ThresholdCounts>& cases,
                                        const std::vector<double>& grid) {
  REVOX_CHECK(!cases.empty(), "baseline: no training case to choose the FLAIR threshold on");
  ThresholdChoice choice;
  choice.mean_dice_at.assign(grid.size(), 0.0);
  for (const auto& c : cases) {
    REVOX_ASSERT(c.wt_above.size() == grid.size());
    for (std::size_t j = 0; j < grid.size(); ++j) {
      const index_t tp = c.wt_above[j];
      const index_t denominator = c.wt_voxels + tp + c.other_above[j];
      choice.mean_dice_at[j] +=
          denominator == 0 ? 1.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(denominator);
    }
  }
  std::size_t best = 0;
  for (std::size_t j = 0; j < grid.size(); ++j) {
    choice.mean_dice_at[j] /= static_cast<double>(cases.size());
    if (choice.mean_dice_at[j] > choice.mean_dice_at[best]) best = j;
  }
  choice.threshold = grid[best];
  choice.mean_dice = choice.mean_dice_at[best];
  return choice;
}

// Labels (1, 1, D, H, W): 2 (edema) on brain voxels with FLAIR z > threshold, else 0.
inline Tensor<std::uint8_t> flair_threshold_labels(const CaseFeatures& features,
                                                   double threshold) {
  const data::Size3& s = features.size;
  Tensor<std::uint8_t> labels(Shape5{1, 1, s[0], s[1], s[2]});
  const float* z = features.feature(kFlairChannel);
  for (index_t i = 0; i < features.voxels(); ++i) {
    labels[i] = features.brain[static_cast<std::size_t>(i)] && static_cast<double>(z[i]) > threshold
                    ? std::uint8_t{2}
                    : std::uint8_t{0};
  }
  return labels;
}

// ---- Gaussian classifier ----------------------------------------------------------------

// Class k of the BraTS baseline classifier: 0 brain background, 1 edema, 2 NCR/NET, 3 ET.
inline constexpr std::size_t kBaselineClasses = 4;
inline constexpr std::array<const char*, kBaselineClasses> kBaselineClassNames = {
    "background", "edema", "NCR/NET", "ET"};

// The class of a raw BraTS label (the convention's ET value is 4 or 3).
inline std::size_t class_of_label(std::uint8_t label, data::LabelConvention convention) {
  if (label == 0) return 0;
  if (label == 2) return 1;
  if (label == 1) return 2;
  REVOX_ASSERT(label == data::enhancing_label(convention));
  return 3;
}

inline std::uint8_t label_of_class(std::size_t k, data::LabelConvention convention) {
  constexpr std::array<std::uint8_t, 3> labels = {0, 2, 1};
  return k < 3 ? labels[k] : data::enhancing_label(convention);
}

// Per-class sufficient statistics of feature vectors: count, sum and sum of outer products.
class GaussianStatistics {
 public:
  GaussianStatistics(std::size_t classes, std::size_t features)
      : classes_(classes), features_(features), counts_(classes, 0),
        sums_(classes * features, 0.0), products_(classes * features * features, 0.0) {}

  void add(std::size_t k, const double* x) {
    REVOX_ASSERT(k < classes_);
    ++counts_[k];
    double* sum = sums_.data() + k * features_;
    double* product = products_.data() + k * features_ * features_;
    for (std::size_t a = 0; a < features_; ++a) {
      sum[a] += x[a];
      for (std::size_t b = 0; b <= a; ++b) product[a * features_ + b] += x[a] * x[b];
    }
  }

  // Adds every brain voxel of a case, its class from `labels` (1, 1, D, H, W).
  void add_case(const CaseFeatures& features, const Tensor<std::uint8_t>& labels,
                data::LabelConvention convention) {
    REVOX_ASSERT(static_cast<index_t>(features_) == kBaselineFeatures &&
                 classes_ == kBaselineClasses);
    REVOX_ASSERT(labels.numel() == features.voxels());
    std::array<double, kBaselineFeatures> x{};
    const index_t voxels = features.voxels();
    for (index_t i = 0; i < voxels; ++i) {
      if (!features.brain[static_cast<std::size_t>(i)]) continue;
      for (index_t f = 0; f < kBaselineFeatures; ++f) {
        x[static_cast<std::size_t>(f)] = features.values[static_cast<std::size_t>(f * voxels + i)];
      }
      add(class_of_label(labels[i], convention), x.data());
    }
  }

  std::size_t classes() const { return classes_; }
  std::size_t features() const { return features_; }
  std::int64_t count(std::size_t k) const { return counts_[k]; }
  const double* sum(std::size_t k) const { return sums_.data() + k * features_; }
  // Lower triangle (b <= a) of the sum of x x^T, row-major features x features.
  const double* products(std::size_t k) const {
    return products_.data() + k * features_ * features_;
  }

 private:
  std::size_t classes_, features_;
  std::vector<std::int64_t> counts_;
  std::vector<double> sums_, products_;
};

struct GaussianClass {
  bool present = false;             // enough training voxels to be predicted
  std::int64_t count = 0;
  double prior = 0.0;
  std::vector<double> mean;         // (features)
  std::vector<double> covariance;   // (features, features), ridge included
  std::vector<double> cholesky;     // lower triangle L with L L^T = covariance
  double log_weight = 0.0;          // log prior - sum log diag(L)
};

// Maximum-likelihood Gaussians and priors; `ridge` is added to every covariance's diagonal.
class GaussianClassifier {
 public:
  GaussianClassifier() = default;

  static GaussianClassifier fit(const GaussianStatistics& statistics, double ridge = 1e-3) {
    const std::size_t n = statistics.features();
    GaussianClassifier model;
    model.features_ = n;
    std::int64_t total = 0;
    for (std::size_t k = 0; k < statistics.classes(); ++k) total += statistics.count(k);
    REVOX_CHECK(total > 0, "baseline: no training voxels to fit the Gaussian classifier on");
    for (std::size_t k = 0; k < statistics.classes(); ++k) {
      GaussianClass g;
      g.count = statistics.count(k);
      g.prior = static_cast<double>(g.count) / static_cast<double>(total);
      g.present = g.count >= static_cast<std::int64_t>(2 * n);
      g.mean.assign(n, 0.0);
      g.covariance.assign(n * n, 0.0);
      g.cholesky.assign(n * n, 0.0);
      if (g.present) {
        const double count = static_cast<double>(g.count);
        for (std::size_t a = 0; a < n; ++a) g.mean[a] = statistics.sum(k)[a] / count;
        for (std::size_t a = 0; a < n; ++a) {
          for (std::size_t b = 0; b <= a; ++b) {
            const double c =
                statistics.products(k)[a * n + b] / count - g.mean[a] * g.mean[b];
            g.covariance[a * n + b] = g.covariance[b * n + a] = c;
          }
          g.covariance[a * n + a] += ridge;
        }
        g.log_weight = std::log(g.prior) - cholesky_log_diagonal(g.covariance, g.cholesky, n, k);
      }
      model.classes_.push_back(std::move(g));
    }
    const bool any = std::any_of(model.classes_.begin(), model.classes_.end(),
                                 [](const GaussianClass& g) { return g.present; });
    REVOX_CHECK(any, "baseline: no class has the ", 2 * n, " training voxels a ", n,
                "-feature Gaussian needs");
    return model;
  }

  std::size_t features() const { return features_; }
  const std::vector<GaussianClass>& classes() const { return classes_; }

  // log p(k) + log N(x; mean_k, cov_k) up to a constant shared by the classes.
  double log_posterior(std::size_t k, const double* x) const {
    const GaussianClass& g = classes_[k];
    const std::size_t n = features_;
    double y[64];
    REVOX_ASSERT(n <= 64);
    double squared = 0.0;
    for (std::size_t a = 0; a < n; ++a) {  // forward substitution: L y = x - mean
      double v = x[a] - g.mean[a];
      for (std::size_t b = 0; b < a; ++b) v -= g.cholesky[a * n + b] * y[b];
      y[a] = v / g.cholesky[a * n + a];
      squared += y[a] * y[a];
    }
    return g.log_weight - 0.5 * squared;
  }

  // The present class of maximum posterior (the lowest index on ties).
  std::size_t classify(const double* x) const {
    std::size_t best = classes_.size();
    double best_score = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < classes_.size(); ++k) {
      if (!classes_[k].present) continue;
      const double score = log_posterior(k, x);
      if (best == classes_.size() || score > best_score) {
        best = k;
        best_score = score;
      }
    }
    REVOX_ASSERT(best < classes_.size());
    return best;
  }

 private:
  // Cholesky factor of `covariance` into `l`; returns sum log diag(L) = log det / 2.
  static double cholesky_log_diagonal(const std::vector<double>& covariance,
                                      std::vector<double>& l, std::size_t n, std::size_t k) {
    double log_diagonal = 0.0;
    for (std::size_t a = 0; a < n; ++a) {
      for (std::size_t b = 0; b <= a; ++b) {
        double v = covariance[a * n + b];
        for (std::size_t c = 0; c < b; ++c) v -= l[a * n + c] * l[b * n + c];
        if (a == b) {
          REVOX_CHECK(v > 0.0 && std::isfinite(v), "baseline: the covariance of class ", k,
                      " is not positive definite (feature ", a, "); raise the ridge");
          l[a * n + a] = std::sqrt(v);
          log_diagonal += std::log(l[a * n + a]);
        } else {
          l[a * n + b] = v / l[b * n + b];
        }
      }
    }
    return log_diagonal;
  }

  std::size_t features_ = 0;
  std::vector<GaussianClass> classes_;
};

// Labels (1, 1, D, H, W) in `convention`: each brain voxel's class of maximum posterior.
inline Tensor<std::uint8_t> gaussian_labels(const CaseFeatures& features,
                                            const GaussianClassifier& model,
                                            data::LabelConvention convention) {
  REVOX_CHECK(static_cast<index_t>(model.features()) == kBaselineFeatures,
              "baseline: the Gaussian classifier has ", model.features(), " features, not ",
              kBaselineFeatures);
  const data::Size3& s = features.size;
  const index_t voxels = features.voxels();
  Tensor<std::uint8_t> labels(Shape5{1, 1, s[0], s[1], s[2]});
#pragma omp parallel for schedule(static) if (voxels > (index_t{1} << 16))
  for (index_t i = 0; i < voxels; ++i) {
    if (!features.brain[static_cast<std::size_t>(i)]) {
      labels[i] = 0;
      continue;
    }
    std::array<double, kBaselineFeatures> x{};
    for (index_t f = 0; f < kBaselineFeatures; ++f) {
      x[static_cast<std::size_t>(f)] = features.values[static_cast<std::size_t>(f * voxels + i)];
    }
    labels[i] = label_of_class(model.classify(x.data()), convention);
  }
  return labels;
}

}  // namespace revox::brats
