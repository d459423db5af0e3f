// revox-brats training config: one JSON object, resolved from a preset or a file plus
// `--set key=value` overrides, validated, and written to RUN_DIR/config.json.
//
//   {
//     "model":            UNetConfig JSON (revox/models/unet_config.hpp), fully resolved;
//                         model.deep_supervision = K > 0 trains K auxiliary heads (the loss
//                         sums the levels, losses/deep_supervision.hpp)
//     "epochs":           30            epochs to run (an epoch = samples_per_epoch samples,
//                                       ceil(samples / global batch) optimizer steps)
//     "samples_per_epoch": 0            0: one pass over the training cases
//     "batch_size":       1             samples per optimizer step on EACH process (their
//                                       gradients are summed, then averaged over the step's
//                                       batch_size x processes samples: the global batch)
//     "learning_rate":    1e-3          Adam
//     "weight_decay":     0             Adam's L2 term
//     "schedule":         "multistep"   learning rate per step (scheduled_learning_rate below):
//                                       "multistep": MultiStepLR over epochs (milestones,
//                                       gamma); "cosine": cosine annealing from
//                                       learning_rate to 0; "poly": nnU-Net's
//                                       learning_rate * (1 - s / S)^0.9; cosine and poly run
//                                       over the optimizer steps after the warm-up
//     "warmup_epochs":    0             linear warm-up over the first N epochs' steps, from
//                                       learning_rate / (W + 1) up to learning_rate
//                                       (W = N x steps per epoch); 0: none; < epochs
//     "milestones":       [20]          MultiStepLR epochs ("multistep" only)
//     "gamma":            0.2           MultiStepLR factor ("multistep" only)
//     "loss":             "dice"        or "bce_dice" (BCE-with-logits + soft Dice, each
//                                       region WT, TC, ET its own sigmoid channel)
//     "batch_dice":       false         true: the soft Dice of each region over all the
//                                       samples of a process's step (nnU-Net's batch Dice)
//                                       instead of per sample; same as false at batch_size 1;
//                                       under mpirun over each process's batch_size samples;
//                                       keeps the step's batch_size forward states at once
//     "patch_size":       [32, 32, 32]  D, H, W of a training patch (multiples of 2^(levels-1))
//     "sampling":         "patch"       random patches; "full": the whole volume, centered
//                                       crop/pad to a multiple of 2^(levels-1)
//     "tumor_probability": 0.7          share of patches centered on a foreground voxel
//     "foreground":       "wt"          which: "wt" any tumor voxel; "regions" a voxel of one
//                                       of the regions WT, TC, ET present, chosen uniformly
//                                       (as nnU-Net samples classes; small ET is seen more)
//     "holdout_fraction": 0.2           share of cases held out for validation (seeded split)
//     "holdout_count":    0             > 0: exactly this many (BraTS 2020: 40 -> 329/40 of 369)
//     "validate_every":   1             epochs between hold-out validations (and the last one)
//     "folds":            0             cross-validation: K >= 2 splits the cases into K folds
//                                       (seeded, stratified by whether a case has ET) and holds
//                                       out fold "fold" (holdout_* are then ignored); 0 or 1:
//                                       the seeded hold-out split above
//     "fold":             0             the hold-out fold, 0 <= fold < folds
//     "augment": {"enabled": true, "rotation_degrees": 20, "scale": 0.1,
//                 "flip_probability": 0.5, "intensity": 0.1, "intensity_shift": 0,
//                 "elastic_sigma": 10, "elastic_control_points": 3,
//                 "probability": 1}     share of samples given rotation, scale, elastic and
//                                       intensity change; the others are only flipped
//                                       (flip_probability per axis), as nnU-Net applies its
//                                       spatial transforms to a share of the samples
//     "seed":             1             split, initialisation, order, patches, augmentation
//     "threads":          2             OpenMP threads
//     "loader": {"workers": 1,          threads cutting and augmenting the next samples while
//                                       the model computes (0: in the training thread); the
//                                       results do not depend on it
//                "depth": 2,            samples made ahead at most
//                "cache_mb": 1024}      preprocessed data: MB of mapped cases kept open
//   threads and loader may change on --resume (with epochs and validate_every).
//   }
// Unknown keys (at any level) are rejected by name. Presets (training_preset):
//   small        the README's default run: model "small" widths 16,32,64,128 on realistic
//                phantom data, with the recipe the ablation in docs/results.md chose (45
//                epochs, milestones [30], foreground "regions", augment.probability 0.3,
//                model.deep_supervision 2), validated every 5 epochs
//   tiny         model "tiny", 16^3 patches, 2 epochs (tests)
//   mbconv-base, mbconv-deeper, mbconv-wider, baseline   the paper's models with its
//                settings: full volumes (sampling "full"), lr 1e-4, milestones [250, 400],
//                gamma 0.2, 500 epochs, hold-out 40 cases (BraTS 2020: 329 train / 40)
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"
#include "revox/data/augment.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/optim/schedule.hpp"

namespace revox::brats {

struct RunConfig {
  nlohmann::json json;  // the resolved config, as written to config.json
  UNetConfig model;
  int epochs = 30;
  int samples_per_epoch = 0;
  int batch_size = 1;  // per process
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  std::string schedule = "multistep";
  int warmup_epochs = 0;
  std::vector<int> milestones;
  double gamma = 0.2;
  std::string loss = "dice";
  bool batch_dice = false;
  std::array<index_t, 3> patch_size{32, 32, 32};
  std::string sampling = "patch";
  double tumor_probability = 0.7;
  std::string foreground = "wt";
  double holdout_fraction = 0.2;
  int holdout_count = 0;
  int validate_every = 1;
  int folds = 0;
  int fold = 0;
  bool augment_enabled = true;
  data::AugmentOptions augment;
  double augment_probability = 1.0;
  std::uint64_t seed = 1;
  int threads = 2;
  int loader_workers = 1;
  int loader_depth = 2;
  std::uint64_t cache_mb = 1024;
};

inline std::vector<std::string> training_preset_names() {
  return {"small", "tiny", "mbconv-base", "mbconv-deeper", "mbconv-wider", "baseline"};
}

// Every key with its default value (model: the "small" preset).
inline nlohmann::json default_run_json() {
  nlohmann::json j;
  j["model"] = to_json(unet_preset("small"));
  j["epochs"] = 30;
  j["samples_per_epoch"] = 0;
  j["batch_size"] = 1;
  j["learning_rate"] = 1e-3;
  j["weight_decay"] = 0.0;
  j["schedule"] = "multistep";
  j["warmup_epochs"] = 0;
  j["milestones"] = std::vector<int>{20};
  j["gamma"] = 0.2;
  j["loss"] = "dice";
  j["batch_dice"] = false;
  j["patch_size"] = std::vector<int>{32, 32, 32};
  j["sampling"] = "patch";
  j["tumor_probability"] = 0.7;
  j["foreground"] = "wt";
  j["holdout_fraction"] = 0.2;
  j["holdout_count"] = 0;
  j["validate_every"] = 1;
  j["folds"] = 0;
  j["fold"] = 0;
  j["augment"] = {{"enabled", true},         {"rotation_degrees", 20.0},
                  {"scale", 0.1},            {"flip_probability", 0.5},
                  {"intensity", 0.1},        {"intensity_shift", 0.0},
                  {"elastic_sigma", 10.0},   {"elastic_control_points", 3},
                  {"probability", 1.0}};
  j["seed"] = 1;
  j["threads"] = 2;
  j["loader"] = {{"workers", 1}, {"depth", 2}, {"cache_mb", 1024}};
  return j;
}

namespace detail {

inline std::string valid_keys(const nlohmann::json& object) {
  std::string keys;
  for (const auto& item : object.items()) keys += (keys.empty() ? "" : ", ") + item.key();
  return keys;
}

// Overlays `patch` onto `base`, rejecting keys `base` does not have (the model object is
// checked by unet_config_from_json instead).
inline void merge_checked(nlohmann::json& base, const nlohmann::json& patch,
                          const std::string& where) {
  REVOX_CHECK(patch.is_object(), "training config: ", where.empty() ? "the config" : where,
              " must be a JSON object, got ", patch.dump());
  for (const auto& item : patch.items()) {
    const std::string key = where.empty() ? item.key() : where + "." + item.key();
    if (where.empty() && item.key() == "model") {
      REVOX_CHECK(item.value().is_object(), "training config: 'model' must be a JSON object");
      // A preset inside "model" replaces the model, then the other keys apply.
      nlohmann::json model = item.value().contains("preset") ? nlohmann::json::object()
                                                             : base["model"];
      for (const auto& m : item.value().items()) model[m.key()] = m.value();
      base["model"] = to_json(unet_config_from_json(model));
      continue;
    }
    if (!base.contains(item.key())) {
      throw Error("training config: unknown key '" + key + "'; valid keys: " +
                  valid_keys(base));
    }
    if (base[item.key()].is_object()) {
      merge_checked(base[item.key()], item.value(), key);
    } else {
      base[item.key()] = item.value();
    }
  }
}

inline double number(const nlohmann::json& j, const char* key, double low, double high) {
  const auto& v = j.at(key);
  REVOX_CHECK(v.is_number(), "training config: '", key, "' must be a number, got ", v.dump());
  const double x = v.get<double>();
  REVOX_CHECK(x >= low && x <= high, "training config: '", key, "' must be in [", low, ", ",
              high, "], got ", x);
  return x;
}

inline long long integer(const nlohmann::json& j, const char* key, long long low) {
  const auto& v = j.at(key);
  REVOX_CHECK(v.is_number_integer() && v.get<long long>() >= low, "training config: '", key,
              "' must be an integer >= ", low, ", got ", v.dump());
  return v.get<long long>();
}

}  // namespace detail

// The config of a training preset (see the top of this file).
inline nlohmann::json training_preset(const std::string& name) {
  nlohmann::json j = default_run_json();
  if (name == "small") {
    // The README's default run (scripts/run-default.sh: 40 realistic phantom cases of
    // 96x96x64, 2 CPU threads, about 100 s of training). Chosen from the recipe ablation in
    // docs/results.md ("Segmentation quality on the realistic phantom"), one change at a time
    // at that budget: 45 epochs of 32^3 patches (larger patches get too few steps), patches
    // centred on each region in turn, augmentation (rotation, scale, elastic, intensity) on
    // 30% of the samples (flips on all), deep supervision on two decoder levels. The other
    // keys keep their defaults (the paper's recipe: Dice loss, MultiStepLR, Adam 1e-3).
    j["model"]["deep_supervision"] = 2;
    j["epochs"] = 45;
    j["milestones"] = std::vector<int>{30};
    j["foreground"] = "regions";
    j["augment"]["probability"] = 0.3;
    j["validate_every"] = 5;  // a hold-out validation costs about one epoch's time here
    return j;
  }
  if (name == "tiny") {
    j["model"] = to_json(unet_preset("tiny"));
    j["epochs"] = 2;
    j["milestones"] = std::vector<int>{};
    j["patch_size"] = std::vector<int>{16, 16, 16};
    j["validate_every"] = 1;
    return j;
  }
  for (const char* paper : {"mbconv-base", "mbconv-deeper", "mbconv-wider", "baseline"}) {
    if (name == paper) {
      j["model"] = to_json(unet_preset(name));
      j["epochs"] = 500;
      j["learning_rate"] = 1e-4;
      j["milestones"] = std::vector<int>{250, 400};
      j["gamma"] = 0.2;
      j["sampling"] = "full";
      j["holdout_count"] = 40;
      j["validate_every"] = 10;
      return j;
    }
  }
  std::string valid;
  for (const auto& n : training_preset_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw Error("training config: unknown preset '" + name + "'; valid presets: " + valid);
}

// Applies "a.b.c=value": value is parsed as JSON when it is valid JSON (numbers, true,
// [1,2], "text"), else taken as a string. Unknown keys are rejected by name.
inline void apply_set(nlohmann::json& config, const std::string& assignment) {
  // Error messages show values through nlohmann's dump(), which throws on invalid UTF-8.
  bool utf8 = true;
  try {
    (void)nlohmann::json(assignment).dump();
  } catch (const nlohmann::json::type_error&) {
    utf8 = false;
  }
  REVOX_CHECK(utf8, "--set '", assignment, "': not valid UTF-8");
  const auto eq = assignment.find('=');
  REVOX_CHECK(eq != std::string::npos && eq > 0, "--set '", assignment,
              "': expected key=value, e.g. epochs=10 or model.expand_ratio=4");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    value = text;
  }
  revox::detail::check_json_depth(value, ("--set '" + key + "'").c_str());
  // Build {"a": {"b": {"c": value}}} and merge it (which checks every level).
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts) REVOX_CHECK(!p.empty(), "--set '", assignment, "': empty key part");
  REVOX_CHECK(parts.size() <= 8, "--set: key '", key, "' has ", parts.size(),
              " parts; config keys have at most 3");
  if (parts[0] == "model" && parts.size() == 2) {
    bool known = false;
    for (const auto& k : unet_config_keys()) known = known || parts[1] == k;
    if (!known) {
      std::string valid;
      for (const auto& k : unet_config_keys()) valid += (valid.empty() ? "" : ", ") + k;
      throw Error("training config: unknown key '" + key + "'; valid model keys: " + valid);
    }
  }
  nlohmann::json patch = value;
  for (std::size_t i = parts.size(); i-- > 0;) patch = nlohmann::json{{parts[i], patch}};
  detail::merge_checked(config, patch, "");
}

// Validates a resolved config and converts it to a RunConfig.
inline RunConfig parse_run_config(const nlohmann::json& input) {
  revox::detail::check_json_depth(input, "training config");
  nlohmann::json j = default_run_json();
  detail::merge_checked(j, input, "");
  RunConfig c;
  c.model = unet_config_from_json(j["model"]);
  c.epochs = static_cast<int>(detail::integer(j, "epochs", 1));
  c.samples_per_epoch = static_cast<int>(detail::integer(j, "samples_per_epoch", 0));
  c.batch_size = static_cast<int>(detail::integer(j, "batch_size", 1));
  c.learning_rate = detail::number(j, "learning_rate", 0.0, 10.0);
  c.weight_decay = detail::number(j, "weight_decay", 0.0, 10.0);
  REVOX_CHECK(j["milestones"].is_array(), "training config: 'milestones' must be an array of "
              "epochs, got ", j["milestones"].dump());
  for (const auto& m : j["milestones"]) {
    REVOX_CHECK(m.is_number_integer() && m.get<long long>() >= 0,
                "training config: 'milestones' must hold integers >= 0, got ", m.dump());
    c.milestones.push_back(m.get<int>());
  }
  c.gamma = detail::number(j, "gamma", 1e-12, 1e12);
  REVOX_CHECK(j["schedule"] == "multistep" || j["schedule"] == "cosine" || j["schedule"] == "poly",
              "training config: 'schedule' must be \"multistep\", \"cosine\" or \"poly\", got ",
              j["schedule"].dump());
  c.schedule = j["schedule"].get<std::string>();
  c.warmup_epochs = static_cast<int>(detail::integer(j, "warmup_epochs", 0));
  REVOX_CHECK(c.warmup_epochs == 0 || c.warmup_epochs < c.epochs, "training config: "
              "'warmup_epochs' (", c.warmup_epochs, ") must be less than 'epochs' (", c.epochs,
              ")");
  REVOX_CHECK(j["loss"] == "dice" || j["loss"] == "bce_dice",
              "training config: 'loss' must be \"dice\" or \"bce_dice\", got ", j["loss"].dump());
  c.loss = j["loss"].get<std::string>();
  REVOX_CHECK(j["batch_dice"].is_boolean(), "training config: 'batch_dice' must be true or "
              "false, got ", j["batch_dice"].dump());
  c.batch_dice = j["batch_dice"].get<bool>();
  REVOX_CHECK(j["sampling"] == "patch" || j["sampling"] == "full",
              "training config: 'sampling' must be \"patch\" or \"full\", got ",
              j["sampling"].dump());
  c.sampling = j["sampling"].get<std::string>();
  const auto& patch = j["patch_size"];
  REVOX_CHECK(patch.is_array() && patch.size() == 3, "training config: 'patch_size' must be "
              "[D, H, W], got ", patch.dump());
  for (std::size_t a = 0; a < 3; ++a) {
    REVOX_CHECK(patch[a].is_number_integer() && patch[a].get<long long>() >= 1 &&
                    patch[a].get<index_t>() % c.model.size_divisor() == 0,
                "training config: 'patch_size' ", patch.dump(), " must hold positive multiples "
                "of ", c.model.size_divisor(), " (the model has ", c.model.levels(), " levels)");
    c.patch_size[a] = patch[a].get<index_t>();
  }
  c.tumor_probability = detail::number(j, "tumor_probability", 0.0, 1.0);
  REVOX_CHECK(j["foreground"] == "wt" || j["foreground"] == "regions",
              "training config: 'foreground' must be \"wt\" or \"regions\", got ",
              j["foreground"].dump());
  c.foreground = j["foreground"].get<std::string>();
  c.holdout_fraction = detail::number(j, "holdout_fraction", 0.0, 0.9);
  c.holdout_count = static_cast<int>(detail::integer(j, "holdout_count", 0));
  c.validate_every = static_cast<int>(detail::integer(j, "validate_every", 1));
  c.folds = static_cast<int>(detail::integer(j, "folds", 0));
  c.fold = static_cast<int>(detail::integer(j, "fold", 0));
  REVOX_CHECK(c.folds <= 1 || c.fold < c.folds, "training config: 'fold' must be below 'folds' (",
              c.folds, "), got ", c.fold);
  REVOX_CHECK(c.folds > 1 || c.fold == 0, "training config: 'fold' ", c.fold, " needs 'folds' "
              ">= 2 (cross-validation); 'folds' is ", c.folds);
  const auto& a = j["augment"];
  REVOX_CHECK(a["enabled"].is_boolean(), "training config: 'augment.enabled' must be true or "
              "false, got ", a["enabled"].dump());
  c.augment_enabled = a["enabled"].get<bool>();
  c.augment.rotation_degrees = detail::number(a, "rotation_degrees", 0.0, 180.0);
  c.augment.scale = detail::number(a, "scale", 0.0, 0.9);
  c.augment.flip_probability = detail::number(a, "flip_probability", 0.0, 1.0);
  c.augment.intensity = detail::number(a, "intensity", 0.0, 0.9);
  c.augment.intensity_shift = detail::number(a, "intensity_shift", 0.0, 10.0);
  c.augment.elastic_sigma = detail::number(a, "elastic_sigma", 0.0, 100.0);
  c.augment.elastic_control_points = detail::integer(a, "elastic_control_points", 2);
  c.augment_probability = detail::number(a, "probability", 0.0, 1.0);
  c.seed = static_cast<std::uint64_t>(detail::integer(j, "seed", 0));
  c.threads = static_cast<int>(detail::integer(j, "threads", 1));
  const auto& loader = j["loader"];
  c.loader_workers = static_cast<int>(detail::integer(loader, "workers", 0));
  REVOX_CHECK(c.loader_workers <= 64, "training config: 'loader.workers' must be <= 64, got ",
              c.loader_workers);
  c.loader_depth = static_cast<int>(detail::integer(loader, "depth", 1));
  c.cache_mb = static_cast<std::uint64_t>(detail::integer(loader, "cache_mb", 1));
  c.json = j;
  return c;
}

// The learning rate of step `step` (from 0) of epoch `epoch` (from 0) of a run with
// `steps_per_epoch` optimizer steps per epoch. Steps are counted over the whole run,
// s = epoch x steps_per_epoch + step (skipped steps included), so the position follows from
// the checkpoint's epoch and a resumed run continues exactly. With W = warmup_epochs x
// steps_per_epoch warm-up steps and S = epochs x steps_per_epoch steps in all:
//   s < W:  learning_rate * (s + 1) / (W + 1)                (optim::LinearWarmup)
//   else    "multistep": MultiStepLR(learning_rate, milestones, gamma) at `epoch` (milestones
//                        count epochs from the start of the run, warm-up included)
//           "cosine":    CosineAnnealingLR(learning_rate, S - W) at s - W   (0 at the end)
//           "poly":      PolyLR(learning_rate, S - W, 0.9) at s - W
// Extending a cosine or poly run with --resume --epochs N changes S and so the rest of its
// schedule.
inline double scheduled_learning_rate(const RunConfig& c, int epoch, long long step,
                                      long long steps_per_epoch) {
  REVOX_CHECK(steps_per_epoch >= 1 && step >= 0 && step < steps_per_epoch && epoch >= 0,
              "scheduled_learning_rate: step ", step, " of epoch ", epoch, " with ",
              steps_per_epoch, " steps per epoch");
  const long long total = static_cast<long long>(c.epochs) * steps_per_epoch;
  REVOX_CHECK(total <= 1000000000LL, "training config: ", c.epochs, " epochs of ",
              steps_per_epoch, " steps are more steps than the schedule counts (10^9)");
  const int warmup = static_cast<int>(c.warmup_epochs * steps_per_epoch);
  const int s = static_cast<int>(static_cast<long long>(epoch) * steps_per_epoch + step);
  const double start_factor = 1.0 / static_cast<double>(warmup + 1);
  if (c.schedule == "multistep") {
    const optim::MultiStepLR multistep(c.learning_rate, c.milestones, c.gamma);
    if (s >= warmup) return multistep.lr_at_epoch(epoch);
    return optim::LinearWarmup<optim::MultiStepLR>(multistep, warmup, start_factor)
        .lr_at_epoch(s);
  }
  // Clamped to the run's last step (the trainer never asks beyond it).
  const int after = std::max(1, static_cast<int>(total) - warmup);
  const int position = std::min(s, warmup + after);
  if (c.schedule == "cosine") {
    return optim::LinearWarmup<optim::CosineAnnealingLR>(
               optim::CosineAnnealingLR(c.learning_rate, after), warmup, start_factor)
        .lr_at_epoch(position);
  }
  return optim::LinearWarmup<optim::PolyLR>(optim::PolyLR(c.learning_rate, after, 0.9), warmup,
                                            start_factor)
      .lr_at_epoch(position);
}

}  // namespace revox::brats
