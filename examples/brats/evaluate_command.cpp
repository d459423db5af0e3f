// revox-brats evaluate: scores predicted segmentations against the ground truth of BraTS
// cases with the BraTS metrics on WT, TC and ET: the classical per-case Dice, HD95 (two
// definitions), sensitivity and specificity (revox/metrics/segmentation.hpp), with BraTS's
// empty-region rules (Dice 1 and HD95 0 when both masks are empty, HD95 373.13 mm when
// exactly one is), and the BraTS 2023 lesion-wise Dice and HD95 with the lesion counts
// (revox/metrics/lesion_wise.hpp; --challenge picks the dilation and minimum lesion size).
//
// A prediction is <pred>/<case id>.nii.gz (or .nii): labels in the case's convention on the
// case's grid. Each case is scored with its own label convention (decided by its labels,
// else by its naming) and its voxel spacing. Output: a per-case CSV (one row per case) and a
// summary CSV (mean, std, median, 25th and 75th percentile over cases), both written
// atomically, and a table on stdout.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "revox/core/error.hpp"
#include "revox/data/brats.hpp"
#include "revox/io/nifti.hpp"
#include "revox/metrics/lesion_wise.hpp"
#include "revox/metrics/segmentation.hpp"

namespace {

namespace fs = std::filesystem;
using revox::metrics::LesionWiseScores;
using revox::metrics::RegionScores;

struct EvaluateArguments {
  std::string pred;
  std::string data;
  std::string csv;
  std::string challenge = "GLI";
  bool only_predicted = false;
};

struct CaseResult {
  std::string id;
  std::array<RegionScores, 3> scores;      // WT, TC, ET
  std::array<LesionWiseScores, 3> lesion;  // WT, TC, ET
};

// The per-region columns, in CSV order (<region>_<name>).
constexpr std::array<const char*, 10> kMetricNames = {
    "dice",        "hd95",        "hd95_pooled", "sensitivity", "specificity",
    "lesion_dice", "lesion_hd95", "lesion_tp",   "lesion_fp",   "lesion_fn"};

double metric_of(const CaseResult& result, std::size_t region, std::size_t metric) {
  const RegionScores& scores = result.scores[region];
  const LesionWiseScores& lesion = result.lesion[region];
  switch (metric) {
    case 0: return scores.dice;
    case 1: return scores.hd95;
    case 2: return scores.hd95_pooled;
    case 3: return scores.sensitivity;
    case 4: return scores.specificity;
    case 5: return lesion.dice;
    case 6: return lesion.hd95;
    case 7: return static_cast<double>(lesion.true_positives);
    case 8: return static_cast<double>(lesion.false_positives);
    default: return static_cast<double>(lesion.false_negatives);
  }
}

double mean_dice(const std::array<RegionScores, 3>& scores) {
  return (scores[0].dice + scores[1].dice + scores[2].dice) / 3.0;
}

double mean_lesion_dice(const std::array<LesionWiseScores, 3>& scores) {
  return (scores[0].dice + scores[1].dice + scores[2].dice) / 3.0;
}

std::string size_text(const revox::Shape5& shape) {
  return revox::detail::concat(shape.w, " x ", shape.h, " x ", shape.d, " (W x H x D)");
}

std::string geometry_text(const revox::io::NiftiGeometry& geometry) {
  std::ostringstream out;
  out << "spacing (" << geometry.spacing[0] << ", " << geometry.spacing[1] << ", "
      << geometry.spacing[2] << ") mm, affine [";
  const auto affine = geometry.affine();
  for (int r = 0; r < 3; ++r) {
    out << (r == 0 ? "[" : ", [");
    for (int c = 0; c < 4; ++c) out << (c == 0 ? "" : ", ") << affine[r][c];
    out << "]";
  }
  out << "]";
  return out.str();
}

// <folder>/<id>.nii.gz or <folder>/<id>.nii; both present is ambiguous.
std::optional<fs::path> find_prediction(const fs::path& folder, const std::string& id) {
  const fs::path gz = folder / (id + ".nii.gz");
  const fs::path plain = folder / (id + ".nii");
  std::error_code error;
  const bool has_gz = fs::is_regular_file(gz, error);
  const bool has_plain = fs::is_regular_file(plain, error);
  REVOX_CHECK(!(has_gz && has_plain), "case ", id, ": both '", gz.string(), "' and '",
              plain.string(), "' exist; keep one of them");
  if (has_gz) return gz;
  if (has_plain) return plain;
  return std::nullopt;
}

std::string case_list(const std::vector<std::string>& ids, std::size_t limit = 8) {
  std::string text;
  for (std::size_t i = 0; i < ids.size() && i < limit; ++i) text += (i ? ", " : "") + ids[i];
  if (ids.size() > limit) text += revox::detail::concat(" and ", ids.size() - limit, " more");
  return text;
}

CaseResult score_case(const revox::data::BratsCase& brats_case, const fs::path& prediction,
                      const revox::metrics::LesionWiseOptions& lesion_options) {
  namespace data = revox::data;
  const std::string& id = brats_case.id;
  const fs::path& truth_path = *brats_case.segmentation;
  // Labels must be finite: no NaN policy here, and the message does not suggest one.
  revox::io::NiftiReadOptions label_options;
  label_options.nan_hint = data::detail::kLabelNanHint;
  const revox::io::NiftiVolume truth =
      data::detail::read_case_volume(id, "segmentation", truth_path, label_options);
  const revox::Tensor<std::uint8_t> truth_labels =
      data::labels_from_volume(truth.data, std::nullopt, id, truth_path.string());
  const data::LabelConvention convention =
      data::detect_label_convention(truth_labels, id)
          .value_or(data::default_label_convention(brats_case.naming));

  revox::io::NiftiVolume predicted;
  try {
    predicted = revox::io::read_nifti(prediction, label_options);
  } catch (const revox::InternalError&) {
    throw;
  } catch (const revox::Error& error) {
    throw revox::Error(revox::detail::concat("case ", id, ", prediction: ", error.what()));
  }
  REVOX_CHECK(predicted.data.shape() == truth.data.shape(), "case ", id, ": prediction '",
              prediction.string(), "' is ", size_text(predicted.data.shape()),
              " but the ground truth '", truth_path.string(), "' is ",
              size_text(truth.data.shape()), " (predictions must be on the case's own grid)");
  REVOX_CHECK(predicted.geometry.matches(truth.geometry, 1e-3), "case ", id, ": prediction '",
              prediction.string(), "' has another geometry than the ground truth '",
              truth_path.string(), "' (tolerance 0.001 mm): ", geometry_text(predicted.geometry),
              " vs ", geometry_text(truth.geometry));
  // The prediction must use the case's label convention (e.g. 4, not 3, for 2020 data).
  revox::Tensor<std::uint8_t> predicted_labels;
  try {
    predicted_labels = data::labels_from_volume(predicted.data, convention, "", prediction.string());
  } catch (const revox::InternalError&) {
    throw;
  } catch (const revox::Error& error) {
    throw revox::Error(revox::detail::concat("case ", id, ", prediction: ", error.what(),
                                             " (the case's ground truth uses the ",
                                             data::to_string(convention), ")"));
  }

  CaseResult result;
  result.id = id;
  const revox::metrics::Spacing spacing = truth.geometry.spacing;
  result.scores = revox::metrics::score_brats(predicted_labels, truth_labels,
                                              data::enhancing_label(convention), spacing);
  result.lesion = revox::metrics::lesion_wise_brats(
      predicted_labels, truth_labels, data::enhancing_label(convention), spacing, lesion_options);
  return result;
}

struct Statistics {
  double mean = 0, std = 0, median = 0, q25 = 0, q75 = 0;
};

Statistics statistics_of(const std::vector<double>& values) {
  Statistics s;
  double sum = 0.0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  if (values.size() > 1) {
    double squares = 0.0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(squares / static_cast<double>(values.size() - 1));
  }
  s.median = revox::metrics::percentile(values, 50.0);
  s.q25 = revox::metrics::percentile(values, 25.0);
  s.q75 = revox::metrics::percentile(values, 75.0);
  return s;
}

std::string csv_header(const char* first) {
  std::string header = first;
  for (const char* region : revox::metrics::kBratsRegionNames) {
    for (const char* metric : kMetricNames) header += std::string(",") + region + "_" + metric;
  }
  return header + ",mean_dice,mean_lesion_dice";
}

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees a
// half-written file.
void write_text_atomically(const fs::path& path, const std::string& text) {
  std::error_code error;
  if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), error);
    REVOX_CHECK(!error, "cannot create the folder of '", path.string(), "': ", error.message());
  }
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    REVOX_CHECK(out.good(), "cannot write '", temporary.string(), "'");
    out << text;
    out.close();
    REVOX_CHECK(!out.fail(), "writing '", temporary.string(), "' failed (disk full?)");
  }
  fs::rename(temporary, path, error);
  REVOX_CHECK(!error, "cannot rename '", temporary.string(), "' to '", path.string(),
              "': ", error.message());
}

std::string format_number(double value) {
  std::ostringstream out;
  out << std::setprecision(8) << value;
  return out.str();
}

void run_evaluate(const EvaluateArguments& args) {
  const fs::path pred_folder = args.pred;
  std::error_code error;
  REVOX_CHECK(fs::is_directory(pred_folder, error), "--pred '", args.pred,
              "' is not a folder (expected a folder of <case id>.nii.gz predictions)");
  std::vector<fs::path> nifti_files;
  for (const auto& entry : fs::directory_iterator(pred_folder, error)) {
    if (entry.is_regular_file() && revox::io::nifti_detail::is_nifti_name(entry.path())) {
      nifti_files.push_back(entry.path());
    }
  }
  REVOX_CHECK(!error, "cannot list --pred '", args.pred, "': ", error.message());
  REVOX_CHECK(!nifti_files.empty(), "--pred '", args.pred,
              "' holds no predictions (expected <case id>.nii.gz files, as written by "
              "revox-brats predict)");

  const std::vector<revox::data::BratsCase> cases = revox::data::discover_brats_cases(args.data);
  std::vector<std::pair<const revox::data::BratsCase*, fs::path>> matched;
  std::vector<std::string> missing, without_truth;
  std::set<fs::path> used;
  for (const auto& brats_case : cases) {
    const std::optional<fs::path> prediction = find_prediction(pred_folder, brats_case.id);
    if (!prediction) {
      if (brats_case.segmentation) missing.push_back(brats_case.id);
      continue;
    }
    used.insert(*prediction);
    if (!brats_case.segmentation) {
      without_truth.push_back(brats_case.id);
      continue;
    }
    matched.emplace_back(&brats_case, *prediction);
  }
  REVOX_CHECK(without_truth.empty(), "--data '", args.data, "': ", without_truth.size(),
              " predicted case(s) have no ground-truth segmentation to score against: ",
              case_list(without_truth));
  REVOX_CHECK(!matched.empty(), "no prediction in --pred '", args.pred,
              "' belongs to a case in --data '", args.data, "' (expected <case id>.nii.gz, e.g. ",
              cases.front().id, ".nii.gz)");
  REVOX_CHECK(missing.empty() || args.only_predicted, "missing prediction",
              missing.size() == 1 ? "" : "s", " for ", missing.size(), " of ", cases.size(),
              " case", cases.size() == 1 ? "" : "s", " in --data '", args.data, "': ",
              case_list(missing), " (expected e.g. '",
              (pred_folder / (missing.empty() ? std::string() : missing.front() + ".nii.gz")).string(),
              "'; pass --only-predicted to score just the cases that have a prediction)");

  std::vector<std::string> ignored;
  for (const fs::path& file : nifti_files) {
    if (used.count(file) == 0) ignored.push_back(file.filename().string());
  }
  if (!ignored.empty()) {
    std::cout << "evaluate: ignoring " << ignored.size() << " NIfTI file"
              << (ignored.size() == 1 ? "" : "s") << " in --pred that match no case: "
              << case_list(ignored) << "\n";
  }
  if (!missing.empty()) {
    std::cout << "evaluate: --only-predicted: scoring " << matched.size() << " of " << cases.size()
              << " cases\n";
  }

  const revox::metrics::LesionWiseOptions lesion_options =
      revox::metrics::brats2023_lesion_options(args.challenge);
  std::vector<CaseResult> results;
  for (std::size_t i = 0; i < matched.size(); ++i) {
    results.push_back(score_case(*matched[i].first, matched[i].second, lesion_options));
    const auto& s = results.back().scores;
    const auto& l = results.back().lesion;
    std::cout << std::fixed << std::setprecision(4) << "evaluate: [" << i + 1 << "/"
              << matched.size() << "] " << results.back().id << "  Dice WT " << s[0].dice
              << " TC " << s[1].dice << " ET " << s[2].dice << "  lesion Dice WT " << l[0].dice
              << " TC " << l[1].dice << " ET " << l[2].dice << "  HD95 WT "
              << std::setprecision(2) << s[0].hd95 << " TC " << s[1].hd95 << " ET " << s[2].hd95
              << " mm\n"
              << std::defaultfloat << std::flush;
  }

  // Per-case CSV, then the summary over cases of every column.
  constexpr std::size_t kColumns = 3 * kMetricNames.size() + 2;
  std::string per_case = csv_header("case") + "\n";
  std::vector<std::vector<double>> columns(kColumns);
  for (const CaseResult& result : results) {
    per_case += result.id;
    std::size_t column = 0;
    for (std::size_t region = 0; region < 3; ++region) {
      for (std::size_t metric = 0; metric < kMetricNames.size(); ++metric) {
        const double value = metric_of(result, region, metric);
        per_case += "," + format_number(value);
        columns[column++].push_back(value);
      }
    }
    per_case += "," + format_number(mean_dice(result.scores)) + "," +
                format_number(mean_lesion_dice(result.lesion)) + "\n";
    columns[column++].push_back(mean_dice(result.scores));
    columns[column].push_back(mean_lesion_dice(result.lesion));
  }
  std::vector<Statistics> stats;
  for (const auto& column : columns) stats.push_back(statistics_of(column));
  std::string summary = csv_header("statistic") + "\n";
  const std::array<std::pair<const char*, double Statistics::*>, 5> rows = {
      {{"mean", &Statistics::mean},
       {"std", &Statistics::std},
       {"median", &Statistics::median},
       {"q25", &Statistics::q25},
       {"q75", &Statistics::q75}}};
  for (const auto& [name, member] : rows) {
    summary += name;
    for (const Statistics& s : stats) summary += "," + format_number(s.*member);
    summary += "\n";
  }

  const fs::path csv_path = args.csv.empty() ? pred_folder / "evaluation.csv" : fs::path(args.csv);
  fs::path summary_path = csv_path;
  summary_path.replace_filename(csv_path.stem().string() + "_summary" +
                                csv_path.extension().string());
  write_text_atomically(csv_path, per_case);
  write_text_atomically(summary_path, summary);

  // The printed table: one row per region.
  std::cout << "\nevaluate: " << results.size() << " case" << (results.size() == 1 ? "" : "s")
            << " (BraTS rules: Dice 1 / HD95 0 when both masks are empty, HD95 "
            << std::fixed << std::setprecision(2) << revox::metrics::kBratsEmptyHd95
            << std::defaultfloat << " mm when exactly one is; HD95 = max of the directed 95th "
            << "percentiles, pooled = medpy's; lesion-wise: BraTS 2023 " << args.challenge
            << " rules, dilation " << lesion_options.dilation_iterations
            << ", lesions <= " << lesion_options.min_lesion_volume << " mm^3 left out, HD95 on "
            << "surface elements, 374 mm per missed or false-positive lesion)\n";
  std::cout << "region  Dice mean +- std   lesion Dice   HD95 mm mean (median)  HD95 pooled  "
               "lesion HD95  sensitivity  specificity\n";
  const std::size_t per_region = kMetricNames.size();
  for (std::size_t region = 0; region < 3; ++region) {
    const Statistics& d = stats[region * per_region + 0];
    const Statistics& h = stats[region * per_region + 1];
    const Statistics& hp = stats[region * per_region + 2];
    const Statistics& se = stats[region * per_region + 3];
    const Statistics& sp = stats[region * per_region + 4];
    const Statistics& ld = stats[region * per_region + 5];
    const Statistics& lh = stats[region * per_region + 6];
    char line[200];
    std::snprintf(line, sizeof line,
                  "%-6s  %.4f +- %.4f    %.4f      %8.2f (%8.2f)    %8.2f     %8.2f       %.4f"
                  "       %.4f\n",
                  revox::metrics::kBratsRegionNames[region], d.mean, d.std, ld.mean, h.mean,
                  h.median, hp.mean, lh.mean, se.mean, sp.mean);
    std::cout << line;
  }
  std::cout << std::fixed << std::setprecision(4)
            << "mean Dice over WT, TC, ET: " << stats[3 * per_region].mean
            << "   lesion-wise: " << stats[3 * per_region + 1].mean << "\n"
            << std::defaultfloat << "per-case CSV: " << csv_path.string() << "\n"
            << "summary CSV:  " << summary_path.string() << "\n";
}

}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto args = std::make_shared<EvaluateArguments>();
  CLI::App* command = app.add_subcommand(
      "evaluate",
      "Score predicted segmentations (<pred>/<case id>.nii.gz) against the ground truth of "
      "the BraTS cases in --data: Dice, HD95 (max of directed and pooled), sensitivity and "
      "specificity on WT, TC and ET with the BraTS empty-region rules, and the BraTS 2023 "
      "lesion-wise Dice and HD95; writes a per-case and a summary CSV and prints a table");
  command->add_option("--pred", args->pred, "Folder of predictions <case id>.nii.gz")
      ->required();
  command->add_option("--data", args->data, "BraTS data folder (or one case folder) with segmentations")
      ->required();
  command->add_option("--csv", args->csv,
                      "Per-case CSV to write (the summary goes beside it as <name>_summary.csv); "
                      "default <pred>/evaluation.csv");
  command
      ->add_option("--challenge", args->challenge,
                   "BraTS 2023 challenge whose lesion-wise parameters to use: GLI, SSA, PED "
                   "(dilation 3, lesions <= 50 mm^3 left out), MEN (dilation 1, 50 mm^3) or "
                   "MET (dilation 1, 2 mm^3)")
      ->check(CLI::IsMember({"GLI", "SSA", "MEN", "PED", "MET"}))
      ->capture_default_str();
  command->add_flag("--only-predicted", args->only_predicted,
                    "Score only the cases that have a prediction (default: every case in --data "
                    "with a segmentation needs one)");
  command->callback([args] { run_evaluate(*args); });
}
