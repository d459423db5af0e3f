// revox-brats baseline, the run itself (baseline_command.cpp parses the command line): fits
// the simple baselines of baselines.hpp (a FLAIR threshold for WT and a per-voxel Gaussian
// classifier) on the training cases of a run's split.json and segments its hold-out cases
// (or, with BaselineArgs::test_data, every case of that folder: a test set kept apart) with
// them, so that `revox-brats evaluate` scores them exactly as it scores a model's
// predictions. Prints one line per case and a summary to `log`.
//
// Files written into BaselineArgs::out:
//   flair_threshold/<id>.nii.gz   uint8 labels: WT as edema (2), TC and ET empty
//   gaussian/<id>.nii.gz          uint8 labels in the case's convention
//   baselines.json                the split, the fitted threshold and its training Dice, the
//                                 smoothing radius and ridge, and each class's voxel count,
//                                 prior, mean and covariance
// Each label file has the case's grid and geometry. Cases are read one at a time. Existing
// outputs are an error unless BaselineArgs::overwrite.
#pragma once

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <nlohmann/json.hpp>

#include "baselines.hpp"
#include "inference.hpp"
#include "revox/data/brats.hpp"
#include "revox/io/nifti.hpp"

namespace revox::brats {

struct BaselineArgs {
  std::string data;
  std::string split;
  std::string test_data;  // non-empty: segment every case of this folder, not the hold-out
  std::string out;
  index_t radius = 2;
  double ridge = 1e-3;
  int threads = 0;
  bool overwrite = false;
  std::string nan_policy = "error";  // NaN/Inf image voxels: "error" or "zero"
};

// What run_baselines measured on the hold-out cases with ground truth (zeros when none).
struct BaselineResult {
  double threshold = 0.0;
  std::size_t scored = 0;
  std::array<double, 3> flair_threshold_dice{0, 0, 0};  // mean WT, TC, ET
  std::array<double, 3> gaussian_dice{0, 0, 0};
};

inline constexpr std::array<const char*, 2> kBaselineFolders = {"flair_threshold", "gaussian"};

namespace baseline_detail {

namespace fs = std::filesystem;
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline std::string dice_text(const std::array<double, 3>& dice) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "WT %.4f TC %.4f ET %.4f mean %.4f", dice[0], dice[1],
                dice[2], (dice[0] + dice[1] + dice[2]) / 3.0);
  return buffer;
}

// The same file written by another process would be replaced silently; refuse unless asked.
inline void refuse_to_overwrite(const fs::path& out,
                                const std::vector<data::BratsCase>& holdout, bool overwrite) {
  if (overwrite) return;
  std::vector<fs::path> planned{out / "baselines.json"};
  for (const char* folder : kBaselineFolders) {
    for (const auto& c : holdout) planned.push_back(prediction_path(out / folder, c.id));
  }
  std::size_t existing = 0;
  fs::path first;
  for (const auto& path : planned) {
    std::error_code error;
    if (fs::exists(path, error) && existing++ == 0) first = path;
  }
  REVOX_CHECK(existing == 0, existing, " output file(s) already exist in '", out.string(),
              "' (first: '", first.string(), "'); pass --overwrite to replace them or choose "
              "another --out");
}

inline void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    REVOX_CHECK(file.good(), "cannot write '", temporary.string(), "'");
    file << text;
    file.flush();
    REVOX_CHECK(file.good(), "cannot write '", temporary.string(), "' (disk full?)");
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  REVOX_CHECK(!error, "cannot rename '", temporary.string(), "' to '", path.string(), "': ",
              error.message());
}

inline nlohmann::json model_json(const BaselineArgs& args, const CaseIdSplit& split,
                                 const ThresholdChoice& threshold,
                                 const GaussianClassifier& model) {
  nlohmann::json json;
  json["split"] = args.split;
  json["train"] = split.train;
  json["holdout"] = split.holdout;
  if (!args.test_data.empty()) json["test_data"] = args.test_data;  // segmented instead
  json["flair_threshold"] = {{"threshold", threshold.threshold},
                             {"train_mean_wt_dice", threshold.mean_dice}};
  nlohmann::json classes = nlohmann::json::array();
  const std::size_t n = model.features();
  for (std::size_t k = 0; k < model.classes().size(); ++k) {
    const GaussianClass& g = model.classes()[k];
    nlohmann::json covariance = nlohmann::json::array();
    for (std::size_t a = 0; a < n; ++a) {
      const auto row = g.covariance.begin() + static_cast<long>(a * n);
      covariance.push_back(std::vector<double>(row, row + static_cast<long>(n)));
    }
    classes.push_back({{"class", kBaselineClassNames[k]},
                       {"voxels", g.count},
                       {"prior", g.prior},
                       {"predicted", g.present},
                       {"mean", g.mean},
                       {"covariance", covariance}});
  }
  json["gaussian"] = {{"features", {"t1", "t1ce", "t2", "flair", "t1 local mean",
                                    "t1ce local mean", "t2 local mean", "flair local mean"}},
                      {"radius", args.radius},
                      {"ridge", args.ridge},
                      {"classes", classes}};
  return json;
}

}  // namespace baseline_detail

inline BaselineResult run_baselines(const BaselineArgs& args, std::ostream& log) {
#ifdef _OPENMP
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  using namespace baseline_detail;
  namespace fs = std::filesystem;
  REVOX_CHECK(args.radius >= 0 && args.radius <= 16,
              "baseline: --radius must be in [0, 16], not ", args.radius);
  REVOX_CHECK(args.ridge >= 0.0, "baseline: --ridge must be >= 0, not ", args.ridge);
  const CaseIdSplit split = read_split(args.split);
  const std::vector<data::BratsCase> all = data::discover_brats_cases(args.data);
  const std::vector<data::BratsCase> train =
      cases_of(split.train, all, "training", args.split, args.data);
  const std::vector<data::BratsCase> holdout =
      args.test_data.empty() ? cases_of(split.holdout, all, "hold-out", args.split, args.data)
                             : data::discover_brats_cases(args.test_data);
  REVOX_CHECK(!holdout.empty(), "baseline: no cases to segment in ", args.test_data);
  const fs::path out(args.out);
  refuse_to_overwrite(out, holdout, args.overwrite);

  data::LoadOptions load_options;
  load_options.nan_policy = io::nan_policy_from_string(args.nan_policy);
  const auto run_start = std::chrono::steady_clock::now();
  log << "baseline: fitting on " << train.size() << " training case(s) from " << args.data
            << " (split " << args.split << "), local means over " << 2 * args.radius + 1
            << "^3 voxels\n";

  const std::vector<double> grid = default_threshold_grid();
  std::vector<ThresholdCounts> threshold_counts;
  GaussianStatistics statistics(kBaselineClasses, static_cast<std::size_t>(kBaselineFeatures));
  for (std::size_t i = 0; i < train.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    data::LoadedCase loaded = data::load_brats_case(train[i], load_options);
    REVOX_CHECK(loaded.labels.has_value(), "baseline: training case ", loaded.id,
                " has no segmentation (in '", train[i].folder.string(), "')");
    const CaseFeatures features = case_features(loaded.image, loaded.id, args.radius);
    const Tensor<std::uint8_t>& labels = *loaded.labels;
    std::vector<std::uint8_t> in_wt(static_cast<std::size_t>(labels.numel()));
    for (index_t v = 0; v < labels.numel(); ++v) {
      in_wt[static_cast<std::size_t>(v)] = labels[v] != 0;
    }
    threshold_counts.push_back(
        count_above(features.feature(kFlairChannel), features.brain, in_wt, grid));
    statistics.add_case(features, labels, loaded.label_convention);
    char line[160];
    std::snprintf(line, sizeof line, "[%zu/%zu] train %s: %lld x %lld x %lld, %.1f s", i + 1,
                  train.size(), loaded.id.c_str(), static_cast<long long>(features.size[2]),
                  static_cast<long long>(features.size[1]),
                  static_cast<long long>(features.size[0]),
                  seconds_since(start));
    log << line << "\n" << std::flush;
  }
  const ThresholdChoice threshold = choose_threshold(threshold_counts, grid);
  const GaussianClassifier model = GaussianClassifier::fit(statistics, args.ridge);
  char fitted[200];
  std::snprintf(fitted, sizeof fitted,
                "baseline: FLAIR threshold z > %.2f (mean training WT Dice %.4f)",
                threshold.threshold, threshold.mean_dice);
  log << fitted << "\nbaseline: Gaussian classes (training voxels, prior):";
  for (std::size_t k = 0; k < model.classes().size(); ++k) {
    const GaussianClass& g = model.classes()[k];
    char text[96];
    std::snprintf(text, sizeof text, " %s %lld %.4f%s", kBaselineClassNames[k],
                  static_cast<long long>(g.count), g.prior,
                  g.present ? "" : " (too few voxels: never predicted)");
    log << (k ? "," : "") << text;
  }
  log << "\n";

  for (const char* folder : kBaselineFolders) fs::create_directories(out / folder);
  write_text_atomically(out / "baselines.json",
                        model_json(args, split, threshold, model).dump(2) + "\n");

  std::array<std::array<double, 3>, 2> dice_sum{};
  std::size_t scored = 0;
  for (std::size_t i = 0; i < holdout.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    data::LoadedCase loaded = data::load_brats_case(holdout[i], load_options);
    const CaseFeatures features = case_features(loaded.image, loaded.id, args.radius);
    const std::array<Tensor<std::uint8_t>, 2> predictions = {
        flair_threshold_labels(features, threshold.threshold),
        gaussian_labels(features, model, loaded.label_convention)};
    std::string scores;
    for (std::size_t m = 0; m < 2; ++m) {
      io::write_nifti_labels(prediction_path(out / kBaselineFolders[m], loaded.id),
                                    predictions[m], loaded.geometry);
      if (loaded.labels) {
        const std::array<double, 3> dice =
            region_dice(predictions[m], *loaded.labels, loaded.label_convention);
        for (std::size_t r = 0; r < 3; ++r) dice_sum[m][r] += dice[r];
        char text[32];
        std::snprintf(text, sizeof text, "WT %.4f", dice[0]);
        scores += m ? "; gaussian " + dice_text(dice) : std::string(", FLAIR threshold ") + text;
      }
    }
    scored += loaded.labels ? 1 : 0;
    char line[96];
    std::snprintf(line, sizeof line, "[%zu/%zu] hold-out %s: %.1f s", i + 1, holdout.size(),
                  loaded.id.c_str(), seconds_since(start));
    log << line << scores << "\n" << std::flush;
  }
  BaselineResult result;
  result.threshold = threshold.threshold;
  result.scored = scored;
  for (std::size_t r = 0; r < 3 && scored > 0; ++r) {
    result.flair_threshold_dice[r] = dice_sum[0][r] / static_cast<double>(scored);
    result.gaussian_dice[r] = dice_sum[1][r] / static_cast<double>(scored);
  }
  char summary[200];
  if (scored > 0) {
    std::snprintf(summary, sizeof summary,
                  "baseline: %zu hold-out case(s) in %.1f s: FLAIR threshold WT %.4f (TC, ET "
                  "empty); Gaussian %s",
                  holdout.size(), seconds_since(run_start), result.flair_threshold_dice[0],
                  dice_text(result.gaussian_dice).c_str());
  } else {
    std::snprintf(summary, sizeof summary,
                  "baseline: %zu hold-out case(s) (none with ground truth) in %.1f s",
                  holdout.size(), seconds_since(run_start));
  }
  log << summary << " -> " << out.string() << "\n";
  return result;
}

}  // namespace revox::brats
