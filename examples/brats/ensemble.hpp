// revox-brats ensembling: the paper's per-image model choice ("Ensembling", section 3 of
// Pendse, Thangarasa et al. 2021, arXiv 2104.09648), implemented as the paper words it.
//
// For a test image x, training images t_1 .. t_J and models m = 1 .. M:
//   h(v)         intensity histogram of image v (below)
//   chi2(a, b)   = 1/2 * sum_k (a_k - b_k)^2 / (a_k + b_k)   over bins with a_k + b_k > 0
//                  (0 for identical histograms, 1 for disjoint ones; both sum to 1)
//   Dice_m(t_j)  model m's Dice on training image t_j: the mean of its WT, TC and ET Dice
//                (BraTS rule: 1 when prediction and truth are both empty)
//   score_m(x)   = sum_j chi2(h(x), h(t_j)) * Dice_m(t_j)
//   chosen(x)    = argmin_m score_m(x)   (the first such m on ties)
// "For each model, sum its per-image training Dice weighted by that distance; the model with
// the lowest weighted sum predicts that test image." The weight is the distance itself (not
// a similarity), and the lowest sum wins, exactly as written.
//
// Histogram h(v): for each selected modality (FLAIR alone by default, or all four), the
// brain voxels (non-zero in that modality) are z-scored over themselves (mean and
// population standard deviation in double, as data::zscore_nonzero) and counted into `bins`
// equal bins over [low, high] = [-5, 5]; values outside go to the first or last bin. Each
// modality's histogram is normalised to sum 1, and with several modalities they are
// concatenated and divided by their number, so every histogram sums to 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::brats {

struct HistogramOptions {
  int bins = 64;
  double low = -5.0;
  double high = 5.0;
  bool all_modalities = false;  // false: FLAIR only (channel 3 of t1, t1ce, t2, flair)
};

// h(v) of a raw (not yet z-scored) image (1, C, D, H, W); `case_id` is named in errors.
inline std::vector<double> intensity_histogram(const Tensor<float>& image,
                                               const HistogramOptions& options,
                                               const std::string& case_id = {}) {
  const Shape5 s = image.shape();
  REVOX_CHECK(s.n == 1 && s.c >= 1 && s.valid(), "intensity_histogram: image must be "
              "(1, C, D, H, W), got ", s);
  REVOX_CHECK(options.bins >= 2, "intensity_histogram: bins must be >= 2, got ", options.bins);
  REVOX_CHECK(options.high > options.low, "intensity_histogram: range [", options.low, ", ",
              options.high, "] is empty");
  REVOX_CHECK(options.all_modalities || s.c == 4, "intensity_histogram: FLAIR is channel 3 of a "
              "4-channel image (t1, t1ce, t2, flair), got ", s.c, " channels");
  std::vector<index_t> channels;
  if (options.all_modalities) {
    for (index_t c = 0; c < s.c; ++c) channels.push_back(c);
  } else {
    channels.push_back(3);
  }
  const auto bins = static_cast<std::size_t>(options.bins);
  std::vector<double> histogram(bins * channels.size(), 0.0);
  for (std::size_t k = 0; k < channels.size(); ++k) {
    const float* v = image.data() + channels[k] * s.spatial();
    double sum = 0.0;
    index_t count = 0;
    for (index_t i = 0; i < s.spatial(); ++i) {
      if (v[i] != 0.0f) {
        sum += static_cast<double>(v[i]);
        ++count;
      }
    }
    REVOX_CHECK(count > 0, "intensity_histogram: case ", case_id, ", channel ", channels[k],
                " has no brain (non-zero) voxels");
    const double mean = sum / static_cast<double>(count);
    double squares = 0.0;
    for (index_t i = 0; i < s.spatial(); ++i) {
      if (v[i] == 0.0f) continue;
      const double centered = static_cast<double>(v[i]) - mean;
      squares += centered * centered;
    }
    const double std_dev = std::sqrt(squares / static_cast<double>(count));
    REVOX_CHECK(std_dev > 0.0, "intensity_histogram: case ", case_id, ", channel ", channels[k],
                " is constant over the brain");
    double* h = histogram.data() + k * bins;
    const double width = (options.high - options.low) / static_cast<double>(bins);
    for (index_t i = 0; i < s.spatial(); ++i) {
      if (v[i] == 0.0f) continue;
      const double z = (static_cast<double>(v[i]) - mean) / std_dev;
      const double position = std::floor((z - options.low) / width);
      const double clamped = std::min(std::max(position, 0.0), static_cast<double>(bins - 1));
      h[static_cast<std::size_t>(clamped)] += 1.0;
    }
    const double scale = 1.0 / (static_cast<double>(count) * static_cast<double>(channels.size()));
    for (std::size_t b = 0; b < bins; ++b) h[b] *= scale;
  }
  return histogram;
}

inline double chi_squared_distance(const std::vector<double>& a, const std::vector<double>& b) {
  REVOX_CHECK(a.size() == b.size(), "chi_squared_distance: histograms have ", a.size(), " and ",
              b.size(), " bins");
  double distance = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    const double total = a[k] + b[k];
    if (total > 0.0) distance += (a[k] - b[k]) * (a[k] - b[k]) / total;
  }
  return 0.5 * distance;
}

struct EnsembleChoice {
  std::size_t model = 0;       // argmin of scores
  std::vector<double> scores;  // score_m(x) per model
};

// distances[j] = chi2(h(x), h(t_j)); train_dice[m][j] = Dice_m(t_j).
inline EnsembleChoice choose_model(const std::vector<double>& distances,
                                   const std::vector<std::vector<double>>& train_dice) {
  REVOX_CHECK(!train_dice.empty(), "choose_model: no models");
  EnsembleChoice choice;
  for (std::size_t m = 0; m < train_dice.size(); ++m) {
    REVOX_CHECK(train_dice[m].size() == distances.size(), "choose_model: model ", m, " has ",
                train_dice[m].size(), " training Dice values for ", distances.size(),
                " training images");
    double score = 0.0;
    for (std::size_t j = 0; j < distances.size(); ++j) score += distances[j] * train_dice[m][j];
    choice.scores.push_back(score);
    if (score < choice.scores[choice.model]) choice.model = m;
  }
  return choice;
}

}  // namespace revox::brats
