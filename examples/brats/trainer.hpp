// revox-brats training loop (the `train` subcommand; train_command.cpp parses the command
// line and calls run_training).
//
// Data: every case under --data is loaded once, z-scored per modality over brain voxels and
// kept in memory. A seeded shuffle splits the cases into training and hold-out sets
// (holdout_count, or holdout_fraction of them); the split is written to RUN_DIR/split.json and
// RUN_DIR/holdout/ gets one symlink per hold-out case folder (so `predict --data
// RUN_DIR/holdout` and `evaluate --data RUN_DIR/holdout` see exactly the hold-out cases).
//
// Randomness is stateless: epoch e visits the training cases in the order of a shuffle seeded
// by mix(seed, e), and sample i of epoch e draws its patch window and augmentation from
// Rng(mix(seed, e, i)). Model initialisation uses Rng(mix(seed, "init")). So a checkpoint
// after epoch e holds everything needed to continue exactly (weights, Adam state and step
// count, the schedule's epoch): on CPU with the same thread count an interrupted and resumed
// run gives the same loss sequence as an uninterrupted one, bit for bit.
//
// Step: patch (tumor-centered with probability tumor_probability, else uniform; or the whole
// volume with sampling "full") -> augmentation (revox::data::augment, one resampling pass) ->
// region targets WT, TC, ET -> UNet<float> forward -> soft Dice (or BCE + Dice) -> backward
// -> Adam (lr from MultiStepLR at the epoch). Validation (every validate_every epochs and
// after the last): the full hold-out volumes (centered pad to a multiple of 2^(levels-1)),
// threshold 0.5, labels back in the original grid, Dice per region (BraTS rules); after the
// last epoch also HD95, written to RUN_DIR/holdout_scores.csv.
//
// RUN_DIR after a run:
//   config.json              the resolved training config
//   split.json, holdout/     the split (ids) and hold-out symlinks
//   log.csv                  epoch,loss,dice_wt,dice_tc,dice_et,lr,seconds,peak_memory_bytes
//                            (dice empty for epochs without validation; peak = the tracking
//                            allocator's peak during the epoch, dataset included)
//   learning_curve.png       loss and hold-out Dice per epoch
//   latest.safetensors       after every epoch (atomic), best.safetensors at each new best
//                            hold-out mean Dice (checkpoint.hpp)
//   holdout_scores.csv       per hold-out case Dice and HD95 of the final model
// A run that fails to start (bad config, data, or checkpoint; non-empty RUN_DIR without
// --resume) writes nothing into RUN_DIR.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
// The including .cpp defines the stb implementation (STB_IMAGE_WRITE_STATIC) before this.
#ifndef INCLUDE_STB_IMAGE_WRITE_H
#include <stb/stb_image_write.h>
#endif

#include "checkpoint.hpp"
#include "inference.hpp"
#include "overlay.hpp"
#include "progress.hpp"
#include "revox/core/memory.hpp"
#include "revox/core/random.hpp"
#include "revox/data/augment.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/losses/dice.hpp"
#include "revox/metrics/segmentation.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/schedule.hpp"
#include "run_config.hpp"

namespace revox::brats {

namespace fs = std::filesystem;

struct TrainOptions {
  fs::path data;
  fs::path out;
  // The resolved config of a fresh run; on --resume, if set, it must match the checkpoint's
  // (except epochs, threads and validate_every).
  std::optional<nlohmann::json> config;
  bool resume = false;
  std::vector<std::string> sets;  // --set overrides; on --resume applied to the checkpoint's
                                  // config when no config is given
  std::optional<int> epochs;     // overrides config epochs (also on resume: extends the run)
  std::optional<int> threads;    // overrides config threads
  std::optional<int> stop_after; // stop after this many epochs of this invocation (tests)
  bool quiet = false;            // no progress output (tests)
};

struct EpochRecord {
  int epoch = 0;  // 1-based
  double loss = 0.0;
  bool validated = false;
  std::array<double, 3> dice{0, 0, 0};  // WT, TC, ET hold-out mean
  double lr = 0.0;
  double seconds = 0.0;
  std::size_t peak_memory_bytes = 0;
};

inline nlohmann::json to_json(const EpochRecord& r) {
  nlohmann::json j{{"epoch", r.epoch},   {"loss", r.loss}, {"validated", r.validated},
                   {"dice", r.dice},     {"lr", r.lr},     {"seconds", r.seconds},
                   {"peak_memory_bytes", r.peak_memory_bytes}};
  return j;
}

inline EpochRecord epoch_record_from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.loss = j.at("loss").get<double>();
  r.validated = j.at("validated").get<bool>();
  r.dice = j.at("dice").get<std::array<double, 3>>();
  r.lr = j.at("lr").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.peak_memory_bytes = j.at("peak_memory_bytes").get<std::size_t>();
  return r;
}

struct TrainResult {
  std::vector<EpochRecord> history;  // every epoch of the run, resumed ones included
  double best_metric = -1.0;
  std::array<double, 3> final_dice{0, 0, 0};
  std::vector<std::string> holdout_ids;
};

namespace detail {

inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

inline std::uint64_t mix3(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  return mix(mix(seed, a), b);
}

constexpr std::uint64_t kSplitStream = 0x5350u, kInitStream = 0x494eu, kOrderStream = 0x4f52u,
                        kSampleStream = 0x5341u;

template <class V>
void shuffle(std::vector<V>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

inline void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    REVOX_CHECK(out.good(), "cannot write '", tmp.string(), "'");
    out << text;
    out.flush();
    REVOX_CHECK(out.good(), "cannot write '", tmp.string(), "'");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  REVOX_CHECK(!ec, "cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message());
}

struct CaseData {
  std::string id;
  fs::path folder;
  Tensor<float> image;            // (1, 4, D, H, W), z-scored
  Tensor<std::uint8_t> labels;    // (1, 1, D, H, W)
  data::LabelConvention convention = data::LabelConvention::brats2017;
  std::vector<index_t> tumor;     // flat indices of tumor voxels
  std::array<double, 3> spacing{1, 1, 1};
};

inline data::Size3 round_up(const data::Size3& s, index_t divisor) {
  data::Size3 out{};
  for (int a = 0; a < 3; ++a) out[a] = brats::round_up(s[a], divisor);
  return out;
}

// A window of `patch` size centered on flat voxel `center`, clamped into the volume (axes
// where the volume is smaller than the patch are padded, centered).
inline data::CropPad window_around(const data::Size3& source, const data::Size3& patch,
                                   index_t center) {
  data::CropPad plan = data::centered_crop_pad(source, patch);
  const index_t c[3] = {center / (source[1] * source[2]), (center / source[2]) % source[1],
                        center % source[2]};
  for (int a = 0; a < 3; ++a) {
    if (source[a] > patch[a]) {
      const index_t start = std::clamp<index_t>(c[a] - patch[a] / 2, 0, source[a] - patch[a]);
      plan.offset[a] = -start;
    }
  }
  return plan;
}

// Region masks (WT, TC, ET) of raw labels.
inline std::array<std::vector<std::uint8_t>, 3> region_masks(const Tensor<std::uint8_t>& labels,
                                                             data::LabelConvention convention) {
  const std::uint8_t et = data::enhancing_label(convention);
  std::array<std::vector<std::uint8_t>, 3> masks;
  for (auto& m : masks) m.resize(static_cast<std::size_t>(labels.numel()));
  for (index_t i = 0; i < labels.numel(); ++i) {
    const std::uint8_t v = labels[i];
    const auto k = static_cast<std::size_t>(i);
    masks[0][k] = v != 0;
    masks[1][k] = v == 1 || v == et;
    masks[2][k] = v == et;
  }
  return masks;
}

// Hard Dice per region of logits (> 0) against region targets, BraTS empty rule.
inline std::array<double, 3> patch_dice(const Tensor<float>& logits, const Tensor<float>& targets) {
  std::array<double, 3> out{};
  const index_t voxels = logits.shape().spatial();
  for (index_t c = 0; c < 3; ++c) {
    double tp = 0, fp = 0, fn = 0;
    const float* x = logits.data() + c * voxels;
    const float* t = targets.data() + c * voxels;
    for (index_t i = 0; i < voxels; ++i) {
      const bool p = x[i] > 0.0f, g = t[i] > 0.5f;
      tp += p && g;
      fp += p && !g;
      fn += !p && g;
    }
    out[static_cast<std::size_t>(c)] = tp + fp + fn == 0 ? 1.0 : 2 * tp / (2 * tp + fp + fn);
  }
  return out;
}

// Runs the model on a whole case (the same full-volume inference as `predict`) and returns
// its labels in the original grid.
inline Tensor<std::uint8_t> predict_case(const UNet<float>& net, const CaseData& c) {
  return data::labels_from_regions(predict_probabilities(net, c.image, InferenceOptions{}),
                                   c.convention);
}

// ---- learning-curve PNG ---------------------------------------------------------------

// Loss (black) and hold-out Dice WT (blue), TC (green), ET (red) against the epoch, y in
// [0, 1], grid lines every 0.1, labelled axes and legend. Returns RGB rows for
// stbi_write_png (defined by the including .cpp).
inline std::vector<std::uint8_t> plot_learning_curve(const std::vector<EpochRecord>& history,
                                                     int& width, int& height) {
  width = 640;
  height = 400;
  RgbImage image(width, height, Rgb{255, 255, 255});
  const Rgb black{0, 0, 0}, grey{220, 220, 220};
  const int left = 60, right = width - 20, top = 20, bottom = height - 50;
  for (int i = 0; i <= 10; ++i) {
    const double y = bottom - (bottom - top) * i / 10.0;
    draw_line(image, left, y, right, y, grey, 1);
  }
  draw_line(image, left, top, left, bottom, black, 1);
  draw_line(image, left, bottom, right, bottom, black, 1);
  auto py = [&](double v) { return bottom - (bottom - top) * std::clamp(v, 0.0, 1.0); };
  for (int i = 0; i <= 10; i += 2) {
    draw_line(image, left - 5, py(i / 10.0), left, py(i / 10.0), black, 1);
    draw_text(image, left - 46, static_cast<int>(py(i / 10.0)) - 8,
              i == 10 ? "1.0" : "0." + std::to_string(i), black, 2);
  }
  draw_text(image, (left + right) / 2 - 30, bottom + 28, "epoch", black, 2);
  if (history.empty()) return image.pixels;
  const int last = history.back().epoch;
  const int first = history.front().epoch;
  auto px = [&](int epoch) {
    return last == first ? (left + right) / 2.0
                         : left + (right - left) * double(epoch - first) / double(last - first);
  };
  draw_text(image, left - 4, bottom + 8, std::to_string(first), black, 2);
  draw_text(image, right - 24, bottom + 8, std::to_string(last), black, 2);
  const Rgb colours[3] = {{40, 80, 230}, {30, 170, 60}, {220, 40, 40}};
  for (std::size_t i = 1; i < history.size(); ++i) {
    draw_line(image, px(history[i - 1].epoch), py(history[i - 1].loss), px(history[i].epoch),
              py(history[i].loss), black);
  }
  for (std::size_t r = 0; r < 3; ++r) {
    const EpochRecord* prev = nullptr;
    for (const auto& rec : history) {
      if (!rec.validated) continue;
      if (prev != nullptr) {
        draw_line(image, px(prev->epoch), py(prev->dice[r]), px(rec.epoch), py(rec.dice[r]),
                  colours[r]);
      } else {
        draw_line(image, px(rec.epoch) - 2, py(rec.dice[r]), px(rec.epoch) + 2, py(rec.dice[r]),
                  colours[r], 3);
      }
      prev = &rec;
    }
  }
  const Rgb legend_colours[4] = {black, colours[0], colours[1], colours[2]};
  const char* legend_names[4] = {"training loss", "hold-out Dice WT", "hold-out Dice TC",
                                 "hold-out Dice ET"};
  // The legend sits in a framed white box in the lower middle, over the curves.
  const int box_x0 = left + 150, box_x1 = box_x0 + 262, box_y0 = bottom - 104,
            box_y1 = bottom - 8;
  for (int y = box_y0; y <= box_y1; ++y) {
    for (int x = box_x0; x <= box_x1; ++x) {
      const bool edge = y == box_y0 || y == box_y1 || x == box_x0 || x == box_x1;
      image.set(x, y, edge ? grey : Rgb{255, 255, 255});
    }
  }
  for (int i = 0; i < 4; ++i) {
    const int y = box_y0 + 14 + 22 * i;
    draw_line(image, box_x0 + 8, y, box_x0 + 36, y, legend_colours[i], 4);
    draw_text(image, box_x0 + 44, y - 8, legend_names[i], black, 2);
  }
  return image.pixels;
}

inline std::string log_csv(const std::vector<EpochRecord>& history) {
  std::ostringstream out;
  out << "epoch,loss,dice_wt,dice_tc,dice_et,lr,seconds,peak_memory_bytes\n";
  char buffer[256];
  for (const auto& r : history) {
    std::snprintf(buffer, sizeof buffer, "%d,%.9g,", r.epoch, r.loss);
    out << buffer;
    for (double d : r.dice) {
      if (r.validated) {
        std::snprintf(buffer, sizeof buffer, "%.6f,", d);
        out << buffer;
      } else {
        out << ",";
      }
    }
    std::snprintf(buffer, sizeof buffer, "%.9g,%.3f,%zu\n", r.lr, r.seconds, r.peak_memory_bytes);
    out << buffer;
  }
  return out.str();
}

// Keys whose change keeps a run compatible on resume.
inline bool resume_may_change(const std::string& key) {
  return key == "epochs" || key == "threads" || key == "validate_every";
}

inline void check_resume_compatible(const nlohmann::json& checkpoint, const nlohmann::json& now,
                                    const fs::path& file) {
  auto compare = [&](const nlohmann::json& a, const nlohmann::json& b, const std::string& prefix,
                     auto& self) -> void {
    std::vector<std::string> keys;
    for (const auto& item : a.items()) keys.push_back(item.key());
    for (const auto& item : b.items()) {
      if (!a.contains(item.key())) keys.push_back(item.key());
    }
    for (const auto& key : keys) {
      const std::string name = prefix + key;
      if (prefix.empty() && resume_may_change(key)) continue;
      const nlohmann::json va = a.contains(key) ? a.at(key) : nlohmann::json();
      const nlohmann::json vb = b.contains(key) ? b.at(key) : nlohmann::json();
      if (va.is_object() && vb.is_object()) {
        self(va, vb, name + ".", self);
      } else if (va != vb) {
        throw Error("cannot resume from '" + file.string() + "': the config differs at '" +
                    name + "' (checkpoint " + va.dump() + ", now " + vb.dump() +
                    "); only epochs, threads and validate_every may change on --resume");
      }
    }
  };
  compare(checkpoint, now, "", compare);
}

}  // namespace detail

// The training loop; see the top of this file. `print` receives every plain-text line.
inline TrainResult run_training(const TrainOptions& options, std::ostream& log = std::cout) {
  using namespace detail;
  Progress progress;
  auto say = [&](const std::string& line) {
    if (!options.quiet) log << line << std::endl;
  };

  // ---- everything that can fail is checked before RUN_DIR is touched -------------------
  std::error_code ec;
  const bool out_exists = fs::exists(options.out, ec);
  REVOX_CHECK(!out_exists || fs::is_directory(options.out, ec), "--out '",
              options.out.string(), "' exists and is not a directory");
  const bool out_empty = !out_exists || fs::is_empty(options.out, ec);
  std::optional<Checkpoint> resume_from;
  nlohmann::json config_json;
  if (options.resume) {
    const fs::path latest = options.out / "latest.safetensors";
    REVOX_CHECK(out_exists, "--resume: run directory '", options.out.string(), "' does not exist");
    REVOX_CHECK(fs::exists(latest, ec), "--resume: no checkpoint '", latest.string(),
                "' (start the run without --resume)");
    resume_from = read_checkpoint(latest);
    nlohmann::json wanted = options.config ? *options.config : resume_from->config;
    for (const auto& set : options.sets) apply_set(wanted, set);
    if (options.epochs) wanted["epochs"] = *options.epochs;
    if (options.threads) wanted["threads"] = *options.threads;
    wanted = parse_run_config(wanted).json;
    check_resume_compatible(resume_from->config, wanted, latest);
    config_json = wanted;
  } else {
    REVOX_CHECK(out_empty, "run directory '", options.out.string(),
                "' is not empty; pass --resume to continue the run in it, or choose a new "
                "--out (nothing was written)");
    REVOX_CHECK(options.config.has_value(), "train: no config given");
    config_json = *options.config;
  }
  if (options.epochs) config_json["epochs"] = *options.epochs;
  if (options.threads) config_json["threads"] = *options.threads;
  const RunConfig config = parse_run_config(config_json);
  config_json = config.json;
  if (resume_from) (void)model_config_of(*resume_from);

  omp_set_num_threads(config.threads);

  data::DiscoverOptions discover;
  discover.require_segmentation = true;
  const auto cases = data::discover_brats_cases(options.data, discover);
  REVOX_CHECK(cases.size() >= 2, "train: need at least 2 cases with segmentations under '",
              options.data.string(), "' (found ", cases.size(), ")");

  // Seeded split.
  std::vector<std::size_t> order(cases.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  {
    Rng rng(mix(config.seed, kSplitStream));
    shuffle(order, rng);
  }
  std::size_t holdout = config.holdout_count > 0
                            ? static_cast<std::size_t>(config.holdout_count)
                            : static_cast<std::size_t>(std::lround(config.holdout_fraction *
                                                                   static_cast<double>(cases.size())));
  if (config.holdout_fraction > 0 && holdout == 0) holdout = 1;
  REVOX_CHECK(holdout < cases.size(), "train: the hold-out set (", holdout,
              " cases) leaves no training case out of ", cases.size());
  std::vector<std::size_t> holdout_idx(order.begin(), order.begin() + static_cast<long>(holdout));
  std::vector<std::size_t> train_idx(order.begin() + static_cast<long>(holdout), order.end());
  std::sort(holdout_idx.begin(), holdout_idx.end());
  std::sort(train_idx.begin(), train_idx.end());

  say("train: " + std::to_string(cases.size()) + " cases under " + options.data.string() + ": " +
      std::to_string(train_idx.size()) + " training, " + std::to_string(holdout_idx.size()) +
      " hold-out; loading...");
  auto load = [&](std::size_t index) {
    CaseData c;
    data::LoadedCase loaded = data::load_brats_case(cases[index]);
    c.id = loaded.id;
    c.folder = cases[index].folder;
    data::zscore_nonzero(loaded.image, loaded.id);
    c.image = std::move(loaded.image);
    c.labels = std::move(*loaded.labels);
    c.convention = loaded.label_convention;
    c.spacing = loaded.geometry.spacing;
    for (index_t i = 0; i < c.labels.numel(); ++i) {
      if (c.labels[i] != 0) c.tumor.push_back(i);
    }
    return c;
  };
  std::vector<CaseData> train_set, holdout_set;
  for (auto i : train_idx) train_set.push_back(load(i));
  for (auto i : holdout_idx) holdout_set.push_back(load(i));

  UNet<float> net(config.model);
  Parameters<float> params(net);
  {
    Rng rng(mix(config.seed, kInitStream));
    net.reset_parameters(rng);
  }
  optim::AdamOptions adam_options;
  adam_options.lr = config.learning_rate;
  adam_options.weight_decay = config.weight_decay;
  optim::Adam<float> adam(params, adam_options);
  const optim::MultiStepLR schedule(config.learning_rate, config.milestones, config.gamma);

  TrainResult result;
  int start_epoch = 0;
  long long step = 0;
  if (resume_from) {
    REVOX_CHECK(model_config_of(*resume_from) == config.model, "cannot resume: the model config "
                "of '", resume_from->file.path.string(), "' differs from the run's");
    load_model_weights(*resume_from, params);
    load_optimizer_state(*resume_from, params, adam);
    start_epoch = resume_from->epoch;
    step = resume_from->step;
    result.best_metric = resume_from->best_metric;
    const auto it = resume_from->file.metadata.find("history");
    if (it != resume_from->file.metadata.end()) {
      try {
        for (const auto& j : nlohmann::json::parse(it->second)) {
          result.history.push_back(epoch_record_from_json(j));
        }
      } catch (const std::exception& e) {
        throw Error("checkpoint '" + resume_from->file.path.string() +
                    "': metadata 'history' is damaged: " + e.what());
      }
    }
    REVOX_CHECK(static_cast<int>(result.history.size()) == start_epoch, "checkpoint '",
                resume_from->file.path.string(), "': history has ", result.history.size(),
                " epochs, metadata 'epoch' says ", start_epoch);
  }

  // ---- from here on the run directory is written ---------------------------------------
  fs::create_directories(options.out);
  write_text_atomic(options.out / "config.json", config_json.dump(2) + "\n");
  {
    nlohmann::json split{{"seed", config.seed}, {"train", nlohmann::json::array()},
                         {"holdout", nlohmann::json::array()}};
    for (const auto& c : train_set) split["train"].push_back(c.id);
    for (const auto& c : holdout_set) split["holdout"].push_back(c.id);
    write_text_atomic(options.out / "split.json", split.dump(2) + "\n");
    const fs::path links = options.out / "holdout";
    fs::remove_all(links, ec);
    fs::create_directories(links);
    for (const auto& c : holdout_set) {
      fs::create_directory_symlink(fs::absolute(c.folder), links / c.id, ec);
      REVOX_CHECK(!ec, "cannot create '", (links / c.id).string(), "': ", ec.message());
      result.holdout_ids.push_back(c.id);
    }
  }

  auto write_logs = [&] {
    write_text_atomic(options.out / "log.csv", log_csv(result.history));
    int w = 0, h = 0;
    const auto rgb = plot_learning_curve(result.history, w, h);
    const fs::path tmp = options.out / "learning_curve.png.tmp";
    REVOX_CHECK(stbi_write_png(tmp.string().c_str(), w, h, 3, rgb.data(), w * 3) != 0,
                "cannot write '", tmp.string(), "'");
    fs::rename(tmp, options.out / "learning_curve.png");
  };

  const int samples = config.samples_per_epoch > 0 ? config.samples_per_epoch
                                                   : static_cast<int>(train_set.size());
  const int epochs = config.epochs;
  if (start_epoch >= epochs) {
    say("train: the run already has " + std::to_string(start_epoch) + " of " +
        std::to_string(epochs) + " epochs; pass --epochs N to extend it");
  }
  auto validate = [&](bool with_hd95) {
    std::array<double, 3> mean{0, 0, 0};
    std::ostringstream csv;
    csv << "case,dice_wt,dice_tc,dice_et,hd95_wt,hd95_tc,hd95_et\n";
    for (const auto& c : holdout_set) {
      const Tensor<std::uint8_t> pred = predict_case(net, c);
      std::array<double, 3> dice{};
      std::array<double, 3> hd95{};
      if (with_hd95) {
        const auto scores = metrics::score_brats(pred, c.labels, data::enhancing_label(c.convention),
                                                 metrics::Spacing{c.spacing[0], c.spacing[1], c.spacing[2]});
        for (std::size_t r = 0; r < 3; ++r) {
          dice[r] = scores[r].dice;
          hd95[r] = scores[r].hd95;
        }
      } else {
        const auto p = region_masks(pred, c.convention);
        const auto t = region_masks(c.labels, c.convention);
        for (std::size_t r = 0; r < 3; ++r) {
          dice[r] = metrics::dice(metrics::count_confusion(p[r].data(), t[r].data(),
                                                           static_cast<index_t>(p[r].size())));
        }
      }
      for (std::size_t r = 0; r < 3; ++r) mean[r] += dice[r] / static_cast<double>(holdout_set.size());
      char buffer[256];
      std::snprintf(buffer, sizeof buffer, "%s,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f\n", c.id.c_str(),
                    dice[0], dice[1], dice[2], hd95[0], hd95[1], hd95[2]);
      csv << buffer;
    }
    if (with_hd95) write_text_atomic(options.out / "holdout_scores.csv", csv.str());
    return mean;
  };

  const auto run_start = std::chrono::steady_clock::now();
  int epochs_this_run = 0;
  double step_time_sum = 0.0;
  long long steps_timed = 0;
  for (int epoch = start_epoch; epoch < epochs; ++epoch) {
    if (options.stop_after && epochs_this_run >= *options.stop_after) break;
    const auto epoch_start = std::chrono::steady_clock::now();
    cpu_allocator().reset_peak();
    adam.set_lr(schedule.lr_at_epoch(epoch));
    std::vector<std::size_t> visit;
    for (int s = 0; s < samples; ++s) visit.push_back(static_cast<std::size_t>(s) % train_set.size());
    {
      Rng rng(mix3(config.seed, kOrderStream, static_cast<std::uint64_t>(epoch)));
      shuffle(visit, rng);
    }
    double loss_sum = 0.0;
    std::array<double, 3> dice_sum{0, 0, 0};
    for (int s = 0; s < samples; ++s) {
      const auto step_start = std::chrono::steady_clock::now();
      const CaseData& c = train_set[visit[static_cast<std::size_t>(s)]];
      Rng rng(mix3(mix(config.seed, kSampleStream), static_cast<std::uint64_t>(epoch),
                   static_cast<std::uint64_t>(s)));
      const data::Size3 source = data::spatial_size(c.image.shape());
      data::CropPad window;
      if (config.sampling == "full") {
        window = data::centered_crop_pad(source, round_up(source, config.model.size_divisor()));
      } else if (!c.tumor.empty() && rng.uniform01() < config.tumor_probability) {
        const index_t voxel = c.tumor[static_cast<std::size_t>(rng.below(c.tumor.size()))];
        window = window_around(source, config.patch_size, voxel);
      } else {
        window = data::random_crop_window(source, config.patch_size, rng);
      }
      Tensor<float> image = data::crop_or_pad(c.image, window);
      Tensor<std::uint8_t> labels = data::crop_or_pad(c.labels, window);
      if (config.augment_enabled) {
        const auto sample = data::draw_augmentation(config.augment, rng, image.shape());
        data::augment(image, &labels, sample);
      }
      const Tensor<float> targets = data::region_targets(labels, c.convention, c.id);
      Tensor<float> logits(net.output_shape(image.shape()));
      Tensor<float> dlogits(logits.shape());
      UNet<float>::Saved<Cpu> saved;
      net.forward(Cpu{}, image.cview(), logits.view(), &saved);
      const double loss =
          config.loss == "dice"
              ? losses::soft_dice_loss<float>(logits.cview(), targets.cview(), dlogits.view())
              : losses::bce_dice_loss<float>(logits.cview(), targets.cview(), dlogits.view());
      params.zero_grad();
      net.backward(Cpu{}, saved, dlogits.cview(), TensorView<float>{});
      adam.step();
      ++step;
      loss_sum += loss;
      const auto d = patch_dice(logits, targets);
      for (std::size_t r = 0; r < 3; ++r) dice_sum[r] += d[r];
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
      step_time_sum += seconds;
      ++steps_timed;
      if (!options.quiet) {
        const double mean_step = step_time_sum / static_cast<double>(steps_timed);
        const double left = static_cast<double>((epochs - epoch - 1) * samples + (samples - s - 1));
        progress.step(epoch + 1, epochs, s + 1, samples, loss_sum / (s + 1),
                      (dice_sum[0] + dice_sum[1] + dice_sum[2]) / (3.0 * (s + 1)), seconds,
                      mean_step * left);
      }
    }
    EpochRecord record;
    record.epoch = epoch + 1;
    record.loss = loss_sum / samples;
    record.lr = adam.lr();
    const bool last = epoch + 1 == epochs;
    if (!holdout_set.empty() && ((epoch + 1) % config.validate_every == 0 || last)) {
      record.validated = true;
      record.dice = validate(last);
    }
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    record.peak_memory_bytes = cpu_allocator().peak_bytes();
    result.history.push_back(record);
    const double mean_dice = (record.dice[0] + record.dice[1] + record.dice[2]) / 3.0;
    nlohmann::json history = nlohmann::json::array();
    for (const auto& r : result.history) history.push_back(to_json(r));
    const std::map<std::string, std::string> extra{{"history", history.dump()}};
    if (record.validated && mean_dice > result.best_metric) {
      result.best_metric = mean_dice;
      write_checkpoint(options.out / "best.safetensors", params, &adam, config_json, epoch + 1,
                       step, result.best_metric, extra);
    }
    write_checkpoint(options.out / "latest.safetensors", params, &adam, config_json, epoch + 1,
                     step, result.best_metric, extra);
    write_logs();
    char line[512];
    if (record.validated) {
      std::snprintf(line, sizeof line,
                    "epoch %d/%d  loss %.4f  hold-out Dice WT %.3f TC %.3f ET %.3f (mean %.3f)"
                    "  lr %.3g  %.1f s  peak %.1f MiB",
                    epoch + 1, epochs, record.loss, record.dice[0], record.dice[1],
                    record.dice[2], mean_dice, record.lr, record.seconds,
                    static_cast<double>(record.peak_memory_bytes) / (1 << 20));
    } else {
      std::snprintf(line, sizeof line, "epoch %d/%d  loss %.4f  lr %.3g  %.1f s  peak %.1f MiB",
                    epoch + 1, epochs, record.loss, record.lr, record.seconds,
                    static_cast<double>(record.peak_memory_bytes) / (1 << 20));
    }
    if (!options.quiet) progress.end_epoch(line);
    if (record.validated) result.final_dice = record.dice;
    ++epochs_this_run;
  }
  if (result.history.empty()) write_logs();
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  say("train: done in " + format_duration(total) + "; checkpoints in " + options.out.string() +
      " (latest.safetensors, best.safetensors), log.csv, learning_curve.png");
  return result;
}

}  // namespace revox::brats
