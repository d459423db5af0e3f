// revox-brats ensemble: the paper's per-image model choice (ensemble.hpp has the formula).
// Each model's Dice on every training case is computed by running it there (once: cached
// per checkpoint content and inference setting in CACHE/<checkpoint stem>-<hash>.csv);
// every test case is then predicted by the model with the lowest distance-weighted sum of
// training Dice, written like `predict` does, and OUT/ensemble_choices.csv records the choice
// and every model's score.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <CLI/CLI.hpp>

#include "case_prediction.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "ensemble.hpp"
#include "revox/core/parameters.hpp"
#include "revox/data/brats.hpp"
#include "revox/models/unet.hpp"

namespace {

namespace fs = std::filesystem;
namespace brats = revox::brats;

struct EnsembleArgs {
  std::vector<std::string> checkpoints;
  std::string train_data;
  std::string data;
  std::string out;
  std::string cache;
  revox::index_t window = 0;
  double overlap = 0.5;
  int bins = 64;
  std::string histogram = "flair";
  bool save_probabilities = false;
  bool overlays = false;
  bool overwrite = false;
  int threads = 0;
  std::string nan_policy = "error";  // --nan-policy: NaN/Inf image voxels
};

struct Model {
  std::string path;
  revox::UNet<float> net;
  revox::Parameters<float> params;
  explicit Model(const std::string& checkpoint_path, const brats::Checkpoint& checkpoint)
      : path(checkpoint_path), net(brats::model_config_of(checkpoint)), params(net) {
    brats::load_model_weights(checkpoint, params);
  }
};

// FNV-1a 64 of the file's bytes and `salt`: names a model's Dice cache, so a retrained
// checkpoint at the same path never reuses stale values.
std::string content_key(const fs::path& path, const std::string& salt) {
  std::ifstream in(path, std::ios::binary);
  REVOX_CHECK(in.good(), "cannot read '", path.string(), "'");
  std::uint64_t hash = 14695981039346656037ull;
  auto mix = [&](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ull;
  };
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      mix(static_cast<unsigned char>(buffer[static_cast<std::size_t>(i)]));
    }
  }
  for (char c : salt) mix(static_cast<unsigned char>(c));
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

using DiceTable = std::map<std::string, std::array<double, 3>>;

DiceTable read_dice_cache(const fs::path& path) {
  DiceTable table;
  std::error_code error;
  if (!fs::exists(path, error)) return table;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  REVOX_CHECK(line == "case_id,dice_wt,dice_tc,dice_et,dice_mean", "Dice cache '", path.string(),
              "' has an unexpected header; delete it to recompute");
  int number = 1;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::stringstream fields(line);
    std::string id;
    std::array<std::string, 3> values;
    std::getline(fields, id, ',');
    for (auto& v : values) std::getline(fields, v, ',');
    try {
      table[id] = {std::stod(values[0]), std::stod(values[1]), std::stod(values[2])};
    } catch (const std::exception&) {
      throw revox::Error(revox::detail::concat("Dice cache '", path.string(), "' line ", number,
                                               " is damaged; delete the file to recompute"));
    }
  }
  return table;
}

void write_dice_cache(const fs::path& path, const DiceTable& table) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << "case_id,dice_wt,dice_tc,dice_et,dice_mean\n";
    for (const auto& [id, dice] : table) {
      char row[160];
      std::snprintf(row, sizeof row, ",%.17g,%.17g,%.17g,%.17g\n", dice[0], dice[1], dice[2],
                    (dice[0] + dice[1] + dice[2]) / 3.0);
      out << id << row;
    }
    REVOX_CHECK(out.good(), "cannot write the Dice cache '", temporary.string(), "'");
  }
  fs::rename(temporary, path);
}

void run_ensemble(const EnsembleArgs& args) {
#ifdef _OPENMP
  if (args.threads > 0) omp_set_num_threads(args.threads);
#endif
  REVOX_CHECK(args.checkpoints.size() >= 2, "--checkpoints needs at least two models to choose "
              "between, got ", args.checkpoints.size());
  REVOX_CHECK(args.histogram == "flair" || args.histogram == "all",
              "--histogram must be 'flair' or 'all', got '", args.histogram, "'");
  brats::InferenceOptions inference;
  inference.window = args.window;
  inference.overlap = args.overlap;
  brats::HistogramOptions histogram;
  histogram.bins = args.bins;
  histogram.all_modalities = args.histogram == "all";
  brats::OutputOptions outputs;
  outputs.save_probabilities = args.save_probabilities;
  outputs.overlays = args.overlays;

  std::vector<std::unique_ptr<Model>> models;
  for (const std::string& path : args.checkpoints) {
    const brats::Checkpoint checkpoint = brats::read_checkpoint(path);
    models.push_back(std::make_unique<Model>(path, checkpoint));
    brats::check_inference_options(models.back()->net.config(), inference);
  }
  revox::data::DiscoverOptions train_discovery;
  train_discovery.require_segmentation = true;
  const auto train_cases = revox::data::discover_brats_cases(args.train_data, train_discovery);
  const auto test_cases = revox::data::discover_brats_cases(args.data);
  const fs::path out(args.out);
  const fs::path choices_path = out / "ensemble_choices.csv";
  brats::refuse_to_overwrite(out, test_cases, outputs, args.overwrite);
  std::error_code error;
  REVOX_CHECK(args.overwrite || !fs::exists(choices_path, error), "'", choices_path.string(),
              "' already exists; pass --overwrite to replace it or choose another --out");
  const fs::path cache_dir = args.cache.empty() ? out / "train_dice_cache" : fs::path(args.cache);
  fs::create_directories(out);
  fs::create_directories(cache_dir);

  // Training side: histograms, and each model's Dice (from its cache where present).
  const std::string salt = "window=" + std::to_string(args.window) +
                           ";overlap=" + std::to_string(args.overlap);
  std::vector<fs::path> cache_paths;
  std::vector<DiceTable> dice_tables;
  for (const auto& model : models) {
    cache_paths.push_back(cache_dir / (fs::path(model->path).stem().string() + "-" +
                                       content_key(model->path, salt) + ".csv"));
    dice_tables.push_back(read_dice_cache(cache_paths.back()));
  }
  std::cout << "ensemble: " << models.size() << " models, " << train_cases.size()
            << " training case(s), " << test_cases.size() << " case(s) to predict\n";
  revox::data::LoadOptions load_options;
  load_options.nan_policy = revox::io::nan_policy_from_string(args.nan_policy);
  std::vector<std::vector<double>> train_histograms;
  std::vector<std::vector<double>> train_dice(models.size());
  for (std::size_t j = 0; j < train_cases.size(); ++j) {
    const auto& train_case = train_cases[j];
    revox::data::LoadedCase loaded = revox::data::load_brats_case(train_case, load_options);
    for (const auto& zeroed : loaded.zeroed) {
      std::cout << "ensemble: " << revox::data::describe_zeroed(loaded.id, zeroed) << "\n";
    }
    train_histograms.push_back(brats::intensity_histogram(loaded.image, histogram, loaded.id));
    revox::data::zscore_nonzero(loaded.image, loaded.id);
    for (std::size_t m = 0; m < models.size(); ++m) {
      auto found = dice_tables[m].find(train_case.id);
      if (found == dice_tables[m].end()) {
        const auto start = std::chrono::steady_clock::now();
        const revox::Tensor<float> probabilities =
            brats::predict_probabilities(models[m]->net, loaded.image, inference);
        const auto labels = revox::data::labels_from_regions(probabilities,
                                                             loaded.label_convention, 0.5f);
        const auto dice = brats::region_dice(labels, *loaded.labels, loaded.label_convention);
        found = dice_tables[m].emplace(train_case.id, dice).first;
        write_dice_cache(cache_paths[m], dice_tables[m]);
        char line[160];
        std::snprintf(line, sizeof line, "training case %s, model %zu: mean Dice %.4f (%.1f s)",
                      train_case.id.c_str(), m, (dice[0] + dice[1] + dice[2]) / 3.0,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                          .count());
        std::cout << line << "\n";
      }
      const auto& dice = found->second;
      train_dice[m].push_back((dice[0] + dice[1] + dice[2]) / 3.0);
    }
  }

  // Test side: choose a model per case and predict with it.
  std::ostringstream csv;
  csv << "case_id,chosen_model,checkpoint";
  for (std::size_t m = 0; m < models.size(); ++m) csv << ",score_model_" << m;
  csv << "\n";
  std::vector<std::size_t> chosen_count(models.size(), 0);
  for (std::size_t i = 0; i < test_cases.size(); ++i) {
    revox::data::LoadedCase loaded = revox::data::load_brats_case(test_cases[i], load_options);
    for (const auto& zeroed : loaded.zeroed) {
      std::cout << "ensemble: " << revox::data::describe_zeroed(loaded.id, zeroed) << "\n";
    }
    const std::vector<double> h = brats::intensity_histogram(loaded.image, histogram, loaded.id);
    std::vector<double> distances;
    for (const auto& train_h : train_histograms) {
      distances.push_back(brats::chi_squared_distance(h, train_h));
    }
    const brats::EnsembleChoice choice = brats::choose_model(distances, train_dice);
    ++chosen_count[choice.model];
    const brats::CasePrediction prediction = brats::predict_and_write_case(
        models[choice.model]->net, loaded, inference, outputs, out);
    csv << loaded.id << "," << choice.model << "," << models[choice.model]->path;
    for (double score : choice.scores) {
      char value[32];
      std::snprintf(value, sizeof value, ",%.10g", score);
      csv << value;
    }
    csv << "\n";
    std::cout << "[" << (i + 1) << "/" << test_cases.size() << "] " << loaded.id << ": model "
              << choice.model << " (" << models[choice.model]->path << ")";
    if (prediction.dice) {
      const auto& d = *prediction.dice;
      char text[96];
      std::snprintf(text, sizeof text, ", Dice WT %.4f  TC %.4f  ET %.4f", d[0], d[1], d[2]);
      std::cout << text;
    }
    std::cout << "\n";
  }
  {
    const fs::path temporary = choices_path.string() + ".tmp";
    std::ofstream file(temporary);
    file << csv.str();
    REVOX_CHECK(file.good(), "cannot write '", temporary.string(), "'");
    file.close();
    fs::rename(temporary, choices_path);
  }
  for (std::size_t m = 0; m < models.size(); ++m) {
    std::cout << "model " << m << " (" << models[m]->path << "): chosen for " << chosen_count[m]
              << " case(s)\n";
  }
  std::cout << "choices: " << choices_path.string() << "\n";
}

}  // namespace

void add_ensemble_command(CLI::App& app) {
  auto args = std::make_shared<EnsembleArgs>();
  CLI::App* command = app.add_subcommand(
      "ensemble",
      "The paper's per-image ensembling: each test case is predicted by the model whose "
      "training Dice, weighted by the chi-squared distance between the case's intensity "
      "histogram and each training case's, sums lowest. Writes predictions like `predict` and "
      "OUT/ensemble_choices.csv.");
  command->add_option("--checkpoints", args->checkpoints, "Two or more model checkpoints")
      ->required()
      ->expected(2, 64);
  command->add_option("--train-data", args->train_data,
                      "Training cases (with segmentations) the models were trained on")
      ->required();
  command->add_option("--data", args->data, "Cases to predict (a folder of cases or one case)")
      ->required();
  command->add_option("--out", args->out, "Output folder (created if missing)")->required();
  command->add_option("--cache", args->cache,
                      "Folder for the per-model training Dice (default OUT/train_dice_cache)");
  CLI::Option* window = command->add_option(
      "--sliding-window", args->window,
      "Sliding-window inference with SIZE^3 patches instead of the full volume");
  command->add_option("--overlap", args->overlap, "Sliding-window overlap, in [0, 1)")
      ->needs(window)
      ->capture_default_str();
  command->add_option("--bins", args->bins, "Histogram bins over z-scores in [-5, 5]")
      ->capture_default_str();
  command->add_option("--histogram", args->histogram,
                      "Modalities in the histogram: flair or all")
      ->capture_default_str();
  command->add_flag("--save-probabilities", args->save_probabilities,
                    "Also write the WT, TC and ET probability maps");
  command->add_flag("--overlays", args->overlays, "Also write PNG overlays through the tumour");
  command->add_flag("--overwrite", args->overwrite, "Replace existing outputs in --out");
  command->add_option("--threads", args->threads, "CPU threads (default: all)");
  command->add_option("--nan-policy", args->nan_policy,
                      "NaN/Inf voxels in the images: error (default: stop, naming the file) or "
                      "zero (set them to 0 and report the count per file)")
      ->check(CLI::IsMember({"error", "zero"}))
      ->capture_default_str();
  command->callback([args] { run_ensemble(*args); });
}
