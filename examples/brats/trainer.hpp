// revox-brats training loop (the `train` subcommand; train_command.cpp parses the command
// line and calls run_training).
//
// Data (training_data.hpp): --data is a preprocessed folder (`revox-brats preprocess`;
// cases mapped on use, a bounded CaseCache) or a raw BraTS folder (cases prepared in memory
// by the same code). Either way a case is cropped to the head and z-scored per modality
// over its non-zero voxels. A seeded shuffle splits the cases into training and hold-out
// sets (holdout_count, or holdout_fraction of them; with "folds" K >= 2, fold "fold" of a
// seeded K-fold split stratified by whether a case has ET); the split is written to
// RUN_DIR/split.json and RUN_DIR/holdout/ gets one symlink per hold-out case's raw folder
// (so `predict --data RUN_DIR/holdout` and `evaluate --data RUN_DIR/holdout` see exactly the
// hold-out cases).
//
// Randomness is stateless: epoch e visits the training cases in the order of a shuffle seeded
// by mix(seed, e), and sample i of epoch e draws its patch window and augmentation from
// Rng(mix(seed, e, i)). Model initialisation uses Rng(mix(seed, "init")). So a checkpoint
// after epoch e holds everything needed to continue exactly (weights, Adam state and step
// count, the schedule's epoch): on CPU with the same thread count an interrupted and resumed
// run gives the same loss sequence as an uninterrupted one, bit for bit.
//
// Step: a sample made by the background loader's workers (make_sample: patch centred on a
// foreground voxel with probability tumor_probability, else uniform, or the whole volume with
// sampling "full" -> augmentation, one resampling pass -> region targets WT, TC, ET; the
// sample depends only on its index, not on the workers) -> UNet<float> forward -> soft Dice (or BCE + Dice) -> backward
// (batch_size samples per process, gradients summed; with batch_dice all of them are run
// forward first and the Dice is taken over the batch; with model.deep_supervision the loss
// is the weighted sum over the output levels, the patch Dice the full-resolution one's) ->
// gradient all-reduce over the processes, scaled to the mean over the step's samples ->
// Adam (lr per step from scheduled_learning_rate, run_config.hpp: the schedule's position
// is the step's index in the run, so it follows from the checkpoint's epoch). Validation
// (every validate_every epochs and after the last): one hold-out case at a time, its stored
// (cropped) volume (centered pad to a multiple of 2^(levels-1)), threshold 0.5, labels back
// in the original grid, Dice per region (BraTS rules); after the last epoch also HD95,
// written to RUN_DIR/holdout_scores.csv.
//
// Data parallelism (revox/dist/communicator.hpp; train_command.cpp picks MPI when started by
// mpirun): every process holds a replica of the model and opens the dataset itself
// (preprocessed: maps only the cases its samples and hold-out cases touch; raw: prepares all). An epoch visits
// ceil(samples / global batch) * global batch entries of the shared seeded order (the list
// wraps when the global batch does not divide the sample count); step t covers entries
// [t * G, (t + 1) * G) with G = batch_size x processes, and process r trains entries
// [t * G + r * batch_size, ... + batch_size): disjoint shards. The sample index (the entry)
// seeds the patch and the augmentation, so the processes draw different augmentations and a
// run with P processes x batch b trains the same samples as one process with batch P * b,
// the gradient sum of a step being the same sum: same weights (the all-reduce of 2 ranks
// adds the same two terms; more ranks may add in another order). Only rank 0 reads and
// writes RUN_DIR (checks, checkpoint reading, config, logs, pictures, checkpoints) and
// prints; the resolved config, the resume state, the weights and the Adam state come from
// rank 0 by broadcast. Every rank checks that it sees the same cases as rank 0 before the
// first step. Hold-out validation is spread over the ranks (case j on rank j % processes) and
// summed. After every epoch (and every step with --check-replicas) a checksum of the weights
// is compared across the ranks. The checkpoint's metadata "processes" records the number of
// processes; resuming with another number continues with another global batch (a note says
// so).
//
// Devices (--device cpu|cuda, device.hpp): run_training<Dev> trains on the CPU or, in a
// CUDA build, on one GPU per process (brats_cuda.cu; data-parallel over NCCL under mpirun).
// Loading, augmentation, the split and the metrics stay on the host; per sample the image and
// targets are copied to the GPU and the logits back (patch Dice); validation runs the forward
// pass on the GPU (inference.hpp). Checkpoints are written from, and resumed into, a host copy
// of the weights and Adam state, so they are the same files on both devices.
//
// RUN_DIR after a run:
//   config.json              the resolved training config
//   split.json, holdout/     the split (ids) and hold-out symlinks
//   log.csv                  epoch,loss,dice_wt,dice_tc,dice_et,lr,seconds,peak_memory_bytes,
//                            skipped_steps (dice empty for epochs without validation; lr = the
//                            epoch's last step's learning rate; peak = the training
//                            device's tracking allocator's peak during the epoch: on the CPU
//                            a raw dataset prepared in memory included (mapped cases are
//                            not), on a GPU the GPU memory only; seconds and
//                            peak are rank 0's in a data-parallel run)
//   learning_curve.png       loss and hold-out Dice per epoch
//   latest.safetensors       after every epoch (atomic), best.safetensors at each new best
//                            hold-out mean Dice (checkpoint.hpp)
//   holdout_scores.csv       per hold-out case Dice and HD95 of the final model
//                            (after the last validation the ET post-processing threshold is
//                            chosen on the hold-out cases, postprocess.hpp, printed and stored
//                            as metadata "et_threshold" in latest and best.safetensors)
//   train.lock               the run's lock (run_lock.hpp): the pid of the training process
// A run that fails to start (bad config, data, or checkpoint; non-empty RUN_DIR without
// --resume; RUN_DIR locked by another run) writes nothing into RUN_DIR.
//
// Crash safety (docs/trainer.md, "Crash safety"): checkpoints are replaced atomically, so a
// run killed at any moment (kill -9, power loss) resumes with --resume from the last complete
// checkpoint, exactly; leftover temporary files of a killed writer are removed on resume; a
// run killed before its first checkpoint restarts from epoch 1 on --resume. A non-finite loss
// or gradient stops the run before the step is applied (on_nonfinite "error", the default) or
// skips the step (no update, counted in log.csv's skipped_steps); checkpoints are never
// written with non-finite weights. Test-only hook: REVOX_TEST_NONFINITE_AT_STEP=K (or K:loss)
// makes the gradient of the last parameter (or the loss of the step's first sample) NaN at
// the K-th step of the schedule (counted from 1 over all epochs, skipped steps included);
// REVOX_TEST_KILL_IN_VALIDATION=N (below) and REVOX_TEST_KILL_IN_CHECKPOINT_WRITE=N
// (checkpoint.hpp) kill the process at those moments.
#pragma once

#include <omp.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
#include "device.hpp"
#include "inference.hpp"
#include "overlay.hpp"
#include "plots.hpp"
#include "postprocess.hpp"
#include "progress.hpp"
#include "revox/core/memory.hpp"
#include "revox/core/random.hpp"
#include "revox/data/augment.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/loader.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/losses/deep_supervision.hpp"
#include "revox/losses/dice.hpp"
#include "revox/metrics/segmentation.hpp"
#include "revox/models/unet.hpp"
#include "revox/ops/add.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/schedule.hpp"
#include "run_config.hpp"
#include "run_lock.hpp"
#include "training_data.hpp"

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
  bool check_replicas = false;   // compare the weights of all processes after every step
  std::string on_nonfinite = "error";  // a non-finite loss or gradient: "error" stops the run,
                                       // "skip" skips the step (no update applied)
  io::NanPolicy nan_policy = io::NanPolicy::error;  // --nan-policy: NaN/Inf image voxels
};

struct EpochRecord {
  int epoch = 0;  // 1-based
  double loss = 0.0;
  bool validated = false;
  std::array<double, 3> dice{0, 0, 0};  // WT, TC, ET hold-out mean
  double lr = 0.0;
  double seconds = 0.0;
  std::size_t peak_memory_bytes = 0;
  long long skipped_steps = 0;  // steps skipped for a non-finite loss or gradient
};

inline nlohmann::json to_json(const EpochRecord& r) {
  nlohmann::json j{{"epoch", r.epoch},   {"loss", r.loss}, {"validated", r.validated},
                   {"dice", r.dice},     {"lr", r.lr},     {"seconds", r.seconds},
                   {"peak_memory_bytes", r.peak_memory_bytes},
                   {"skipped_steps", r.skipped_steps}};
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
  r.skipped_steps = j.value("skipped_steps", 0LL);  // absent in older checkpoints
  return r;
}

struct TrainResult {
  std::vector<EpochRecord> history;  // every epoch of the run, resumed ones included
  double best_metric = -1.0;
  std::array<double, 3> final_dice{0, 0, 0};
  std::vector<std::string> holdout_ids;
  // The data pipeline of this invocation: seconds the steps waited for samples, and for a
  // preprocessed dataset the case cache's counters (revox/data/loader.hpp).
  double data_wait_seconds = 0.0;
  bool preprocessed = false;
  std::uint64_t cache_limit_bytes = 0, cache_peak_cached_bytes = 0, cache_peak_live_bytes = 0,
                cache_opens = 0, cache_evictions = 0, largest_case_bytes = 0;
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
  auto why = [](int error) {
    return error != 0 ? io::detail::describe_write_error(error) : std::string("write failed");
  };
  {
    errno = 0;
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    REVOX_CHECK(out.good(), "cannot write '", tmp.string(), "': ", why(errno));
    out << text;
    out.flush();
    if (!out.good()) {
      const int error = errno;
      out.close();
      fs::remove(tmp);
      throw Error("cannot write '" + tmp.string() + "': " + why(error) + " ('" +
                  path.filename().string() +
                  "' is left as it was)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  REVOX_CHECK(!ec, "cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message());
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

inline std::string log_csv(const std::vector<EpochRecord>& history) {
  std::ostringstream out;
  out << "epoch,loss,dice_wt,dice_tc,dice_et,lr,seconds,peak_memory_bytes,skipped_steps\n";
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
    std::snprintf(buffer, sizeof buffer, "%.9g,%.3f,%zu,%lld\n", r.lr, r.seconds,
                  r.peak_memory_bytes, r.skipped_steps);
    out << buffer;
  }
  return out.str();
}

// Keys whose change keeps a run compatible on resume.
inline bool resume_may_change(const std::string& key) {
  return key == "epochs" || key == "threads" || key == "validate_every" || key == "loader";
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
                    "); only epochs, threads, validate_every and loader may change on --resume");
      }
    }
  };
  compare(checkpoint, now, "", compare);
}

// Rank 0, after taking RUN_DIR's lock: the run's config and starting point from the options
// and RUN_DIR — a fresh run (RUN_DIR empty), a resumed one (latest.safetensors), or one
// restarted from epoch 1 because it was stopped before its first checkpoint. Everything
// that can be wrong (a non-empty RUN_DIR, no or a damaged checkpoint, an incompatible
// config) throws here, before anything is written.
struct RunStart {
  nlohmann::json start;  // config, epoch, step, best_metric, history, processes
  std::optional<Checkpoint> resume_from;
};

inline RunStart resolve_run_start(const TrainOptions& options, bool out_exists, bool out_empty,
                                  int world,
                                  const std::function<void(const std::string&)>& say) {
  std::error_code ec;
  RunStart result;
  std::optional<Checkpoint>& resume_from = result.resume_from;
  nlohmann::json& start = result.start;
  nlohmann::json config_json;
  const fs::path latest = options.out / "latest.safetensors";
  const fs::path config_file = options.out / "config.json";
  const bool has_config_file = fs::exists(config_file, ec);
  if (options.resume && !fs::exists(latest, ec) &&
      (has_config_file || (out_exists && out_empty && options.config))) {
    // The run was stopped (killed) before its first checkpoint: start it again from epoch 1
    // with the config it was started with (or, when it had not even written config.json,
    // with the one given now).
    nlohmann::json started_with = options.config ? *options.config : nlohmann::json();
    if (has_config_file) {
      try {
        std::ifstream in(config_file);
        started_with = nlohmann::json::parse(in);
      } catch (const std::exception& e) {
        throw Error("--resume: '" + config_file.string() + "' is damaged: " + e.what());
      }
    }
    nlohmann::json wanted = options.config ? *options.config : started_with;
    for (const auto& set : options.sets) apply_set(wanted, set);
    if (options.epochs) wanted["epochs"] = *options.epochs;
    if (options.threads) wanted["threads"] = *options.threads;
    wanted = parse_run_config(wanted).json;
    check_resume_compatible(parse_run_config(started_with).json, wanted, config_file);
    say("train: --resume: '" + options.out.string() + "' has no checkpoint yet (the run "
        "stopped before its first epoch ended): starting it again from epoch 1");
    config_json = wanted;
  } else if (options.resume) {
    REVOX_CHECK(out_exists, "--resume: run directory '", options.out.string(),
                "' does not exist");
    REVOX_CHECK(fs::exists(latest, ec), "--resume: no checkpoint '", latest.string(),
                "' (start the run without --resume)");
    resume_from = read_checkpoint(latest);
    nlohmann::json wanted = options.config ? *options.config : resume_from->config;
    for (const auto& set : options.sets) apply_set(wanted, set);
    if (options.epochs) wanted["epochs"] = *options.epochs;
    if (options.threads) wanted["threads"] = *options.threads;
    wanted = parse_run_config(wanted).json;
    // Keys added to the config after the checkpoint was written take their defaults.
    check_resume_compatible(parse_run_config(resume_from->config).json, wanted, latest);
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
  config_json = parse_run_config(config_json).json;
  start = {{"config", config_json},  {"epoch", 0},
           {"step", 0},              {"best_metric", -1.0},
           {"history", nlohmann::json::array()}, {"processes", world}};
  if (resume_from) {
    (void)model_config_of(*resume_from);
    start["epoch"] = resume_from->epoch;
    start["step"] = resume_from->step;
    start["best_metric"] = resume_from->best_metric;
    const auto it = resume_from->file.metadata.find("history");
    std::size_t epochs_logged = 0;
    if (it != resume_from->file.metadata.end()) {
      try {
        for (const auto& j : nlohmann::json::parse(it->second)) {
          start["history"].push_back(to_json(epoch_record_from_json(j)));
          ++epochs_logged;
        }
      } catch (const std::exception& e) {
        throw Error("checkpoint '" + resume_from->file.path.string() +
                    "': metadata 'history' is damaged: " + e.what());
      }
    }
    REVOX_CHECK(static_cast<int>(epochs_logged) == resume_from->epoch, "checkpoint '",
                resume_from->file.path.string(), "': history has ", epochs_logged,
                " epochs, metadata 'epoch' says ", resume_from->epoch);
    const auto processes = resume_from->file.metadata.find("processes");
    start["processes"] = processes == resume_from->file.metadata.end()
                             ? 1LL
                             : parse_integer(resume_from->file.path, "processes",
                                             processes->second);
  }
  return result;
}

// The seeded split of `count` cases into training and hold-out indices, each sorted.
struct CaseSplit {
  std::vector<std::size_t> train, holdout;
};

// Cross-validation: the fold (0 .. folds - 1) of each case, stratified by `has_et` (whether
// the case has enhancing tumour). The ET cases, then the others, each in a seeded shuffle,
// are dealt round robin over the folds in one sequence, so every fold gets the same number
// of ET cases and of cases, give or take one. Deterministic in (has_et, folds, seed).
inline std::vector<int> cross_validation_folds(const std::vector<bool>& has_et, int folds,
                                               std::uint64_t seed) {
  REVOX_CHECK(folds >= 2, "train: cross-validation needs folds >= 2, got ", folds);
  REVOX_CHECK(static_cast<std::size_t>(folds) <= has_et.size(), "train: ", folds,
              " folds need at least as many cases, found ", has_et.size());
  std::vector<std::size_t> with_et, without_et;
  for (std::size_t i = 0; i < has_et.size(); ++i) (has_et[i] ? with_et : without_et).push_back(i);
  Rng rng(mix(seed, kSplitStream));
  shuffle(with_et, rng);
  shuffle(without_et, rng);
  std::vector<int> fold(has_et.size(), 0);
  std::size_t position = 0;
  for (const auto* group : {&with_et, &without_et}) {
    for (std::size_t i : *group) fold[i] = static_cast<int>(position++ % static_cast<std::size_t>(folds));
  }
  return fold;
}

// config.folds >= 2: fold config.fold of cross_validation_folds(has_et) is the hold-out set
// (`has_et` must then have `count` entries); else the seeded hold-out split below.
inline CaseSplit split_cases(std::size_t count, const RunConfig& config,
                             const std::vector<bool>& has_et = {}) {
  if (config.folds > 1) {
    REVOX_CHECK(has_et.size() == count, "split_cases: cross-validation needs whether each of the ",
                count, " cases has ET");
    const std::vector<int> fold = cross_validation_folds(has_et, config.folds, config.seed);
    CaseSplit split;
    for (std::size_t i = 0; i < count; ++i) {
      (fold[i] == config.fold ? split.holdout : split.train).push_back(i);
    }
    return split;
  }
  std::vector<std::size_t> order(count);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  {
    Rng rng(mix(config.seed, kSplitStream));
    shuffle(order, rng);
  }
  std::size_t holdout = config.holdout_count > 0
                            ? static_cast<std::size_t>(config.holdout_count)
                            : static_cast<std::size_t>(std::lround(config.holdout_fraction *
                                                                   static_cast<double>(count)));
  if (config.holdout_fraction > 0 && holdout == 0) holdout = 1;
  REVOX_CHECK(holdout < count, "train: the hold-out set (", holdout,
              " cases) leaves no training case out of ", count);
  CaseSplit split;
  split.holdout.assign(order.begin(), order.begin() + static_cast<long>(holdout));
  split.train.assign(order.begin() + static_cast<long>(holdout), order.end());
  std::sort(split.holdout.begin(), split.holdout.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

// Rank 0, once the run has started: removes the temporary files of a checkpoint writer that
// was killed, writes config.json and split.json, and links the hold-out cases' raw folders
// under RUN_DIR/holdout.
inline void write_run_files(const fs::path& out, const nlohmann::json& config_json,
                            const RunConfig& config, const std::vector<data::CaseInfo>& cases,
                            const CaseSplit& split,
                            const std::function<void(const std::string&)>& say) {
  std::error_code ec;
  fs::create_directories(out);
  // Temporary files of a checkpoint writer that was killed (safetensors.hpp names them
  // .<target>.tmp.<pid>.<n>); the lock says no other run is writing them.
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if ((name.rfind(".latest.safetensors.tmp.", 0) == 0 ||
         name.rfind(".best.safetensors.tmp.", 0) == 0) &&
        fs::remove(entry.path(), ec)) {
      say("train: removed '" + entry.path().string() + "', left by a checkpoint write that "
          "was interrupted (the checkpoint it was replacing is intact)");
    }
  }
  write_text_atomic(out / "config.json", config_json.dump(2) + "\n");
  nlohmann::json json{{"seed", config.seed}, {"train", nlohmann::json::array()},
                      {"holdout", nlohmann::json::array()}};
  if (config.folds > 1) {
    json["folds"] = config.folds;  // cross-validation: the hold-out set is fold "fold"
    json["fold"] = config.fold;
  }
  for (auto i : split.train) json["train"].push_back(cases[i].id);
  for (auto i : split.holdout) json["holdout"].push_back(cases[i].id);
  write_text_atomic(out / "split.json", json.dump(2) + "\n");
  const fs::path links = out / "holdout";
  fs::remove_all(links, ec);
  fs::create_directories(links);
  std::size_t unlinked = 0;
  for (auto i : split.holdout) {
    const data::CaseInfo& c = cases[i];
    if (c.folder.empty() || !fs::is_directory(c.folder, ec)) {
      ++unlinked;  // a preprocessed case whose raw folder is gone
      continue;
    }
    fs::create_directory_symlink(c.folder, links / c.id, ec);
    REVOX_CHECK(!ec, "cannot create '", (links / c.id).string(), "': ", ec.message());
  }
  if (unlinked > 0) {
    say("train: note: " + std::to_string(unlinked) + " hold-out case folder(s) no longer "
        "exist, so " + links.string() + " lacks them (predict/evaluate need the raw cases)");
  }
}

// The first non-finite element of the (all-reduced) gradient: "" when every one is finite,
// else "the gradient of '<param>' (element i of n) is NaN" (or Inf).
template <class Dev>
std::string first_nonfinite_gradient(const Dev& dev, const Parameters<float, Dev>& params) {
  Tensor<float> copy;
  const float* g = nullptr;
  if constexpr (is_cpu_v<Dev>) {
    g = params.grads().data;
  } else {
    copy = host_copy(dev, TensorView<const float>(params.grads()));
    g = copy.data();
  }
  for (const auto& entry : params.entries()) {
    const index_t n = entry.shape.numel();
    for (index_t i = 0; i < n; ++i) {
      const float v = g[entry.offset + i];
      if (!std::isfinite(v)) {
        return "the gradient of '" + entry.name + "' (element " + std::to_string(i) + " of " +
               std::to_string(n) + ") is " + (std::isnan(v) ? "NaN" : "Inf");
      }
    }
  }
  return std::string();
}

// Hold-out validation: every hold-out case (indices into data.cases) predicted on its
// stored (cropped) volume, one case at a time, its labels put back into the original grid
// and scored there; case j by rank j % processes, the scores summed over the ranks (one
// non-zero term per entry, so the sums are exact). Returns the mean Dice of WT, TC, ET; with
// HD95 and a non-empty `scores_csv`, writes every case's Dice and HD95 there. With
// `et_counts`, also each case's predicted and true ET voxels and their overlap (for
// choose_et_threshold), on every rank.
// `kill_after_first_case`: the test hook REVOX_TEST_KILL_IN_VALIDATION.
template <class Dev>
std::array<double, 3> validate_holdout(const Dev& dev, const UNet<float>& net,
                                       const TrainingData& data,
                                       const std::vector<std::size_t>& holdout_set,
                                       dist::Communicator<Dev>& comm, bool with_hd95,
                                       bool kill_after_first_case, const fs::path& scores_csv,
                                       std::vector<EnhancingCounts>* et_counts = nullptr) {
  const auto& cases = data.cases;
  const int world = comm.size();
  const int rank = comm.rank();
  const std::size_t n = holdout_set.size();
  // Per case: Dice WT, TC, ET, HD95 WT, TC, ET, then ET voxels predicted, true, overlap.
  constexpr std::size_t kPerCase = 9;
  std::vector<double> scores(n * kPerCase, 0.0);
  for (std::size_t j = 0; j < n; ++j) {
    if (static_cast<int>(j % static_cast<std::size_t>(world)) != rank) continue;
    const data::CaseInfo& c = cases[holdout_set[j]];
    Tensor<std::uint8_t> pred, truth;
    {
      const auto arrays = data.get(holdout_set[j]);
      pred = data::undo_crop_or_pad(
          data::labels_from_regions(
              predict_probabilities(dev, net, case_image(*arrays), InferenceOptions{}),
              c.convention),
          c.crop());
      truth = original_labels(c, *arrays);
    }
    if (kill_after_first_case) ::raise(SIGKILL);
    double* out = scores.data() + kPerCase * j;
    if (et_counts != nullptr) {
      const EnhancingCounts counts = enhancing_counts(pred, truth, c.convention);
      out[6] = static_cast<double>(counts.predicted);
      out[7] = static_cast<double>(counts.truth);
      out[8] = static_cast<double>(counts.overlap);
    }
    if (with_hd95) {
      const auto s = metrics::score_brats(
          pred, truth, data::enhancing_label(c.convention),
          metrics::Spacing{c.geometry.spacing[0], c.geometry.spacing[1],
                           c.geometry.spacing[2]});
      for (std::size_t r = 0; r < 3; ++r) {
        out[r] = s[r].dice;
        out[3 + r] = s[r].hd95;
      }
    } else {
      const auto p = region_masks(pred, c.convention);
      const auto t = region_masks(truth, c.convention);
      for (std::size_t r = 0; r < 3; ++r) {
        out[r] = metrics::dice(metrics::count_confusion(p[r].data(), t[r].data(),
                                                        static_cast<index_t>(p[r].size())));
      }
    }
  }
  comm.all_reduce_sum_host(scores.data(), static_cast<index_t>(scores.size()));
  std::array<double, 3> mean{0, 0, 0};
  std::ostringstream csv;
  csv << "case,dice_wt,dice_tc,dice_et,hd95_wt,hd95_tc,hd95_et\n";
  if (et_counts != nullptr) et_counts->clear();
  for (std::size_t j = 0; j < n; ++j) {
    const double* v = scores.data() + kPerCase * j;
    if (et_counts != nullptr) {
      et_counts->push_back({static_cast<std::int64_t>(v[6]), static_cast<std::int64_t>(v[7]),
                            static_cast<std::int64_t>(v[8])});
    }
    for (std::size_t r = 0; r < 3; ++r) mean[r] += v[r] / static_cast<double>(n);
    char buffer[256];
    std::snprintf(buffer, sizeof buffer, "%s,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f\n",
                  cases[holdout_set[j]].id.c_str(), v[0], v[1], v[2], v[3], v[4], v[5]);
    csv << buffer;
  }
  if (with_hd95 && !scores_csv.empty()) write_text_atomic(scores_csv, csv.str());
  return mean;
}

// Never replace a good checkpoint with non-finite weights: throws naming the first
// non-finite weight of epoch `epoch` + 1 (host parameters).
inline void check_finite_weights(const Parameters<float>& params, int epoch, const fs::path& out) {
  const auto values = params.values();
  for (const auto& entry : params.entries()) {
    for (index_t i = 0; i < entry.shape.numel(); ++i) {
      REVOX_CHECK(std::isfinite(values.data[entry.offset + i]), "training diverged in "
                  "epoch ", epoch + 1, ": weight '", entry.name, "' (element ", i,
                  ") is not finite; no checkpoint written, '",
                  (out / "latest.safetensors").string(), "' still holds epoch ", epoch,
                  ". Try a lower learning rate (--set learning_rate=...)");
    }
  }
}

// ---- run_training's steps --------------------------------------------------------------
// run_training (below) reads as the sequence of its steps, each one function here. What the
// steps share: RunContext (which process, where lines go), RunDirClaim (RUN_DIR's lock),
// TrainingCases (the data and its split), TrainingModel (the net, its parameters, Adam and
// their host copy) and, once the run has started, TrainingLoop (the epochs).

// This process's place in the run and where its lines go: `say` prints a plain-text line to
// run_training's `log` (rank 0 only, and not with --quiet); `progress` draws the progress bar
// and prints the epoch lines.
template <class Dev>
struct RunContext {
  RunContext(const TrainOptions& train_options, std::ostream& log,
             dist::Communicator<Dev>& communicator, const Dev& device)
      : options(train_options),
        comm(communicator),
        dev(device),
        world(communicator.size()),
        rank(communicator.rank()),
        root(rank == 0),
        quiet(train_options.quiet || !root),
        say([&log, silent = quiet](const std::string& line) {
          if (!silent) log << line << std::endl;
        }) {}
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  const TrainOptions& options;
  dist::Communicator<Dev>& comm;
  const Dev& dev;
  const std::chrono::steady_clock::time_point invoked = std::chrono::steady_clock::now();
  const int world, rank;
  const bool root, quiet;
  Progress progress;
  const std::function<void(const std::string&)> say;
};

// RUN_DIR's lock (rank 0 only), held until run_training returns. Until the run has started
// (`started`), the destructor removes what taking it created (the lock file, and RUN_DIR
// itself when it did not exist), so a run that fails to start leaves nothing.
struct RunDirClaim {
  explicit RunDirClaim(const fs::path& run_dir) : out(run_dir) {}
  RunDirClaim(const RunDirClaim&) = delete;
  RunDirClaim& operator=(const RunDirClaim&) = delete;
  ~RunDirClaim() {
    if (started || !lock.held()) return;
    lock.remove_if_created();
    std::error_code ignored;
    if (created_out) fs::remove(out, ignored);  // only if empty
  }

  RunLock lock;
  const fs::path& out;
  bool created_out = false, started = false;
};

// Only rank 0 looks at RUN_DIR (it need not be visible to the other processes): it checks
// it, takes its lock, reads the checkpoint on --resume and resolves the config
// (resolve_run_start); the outcome's `start` goes to the other ranks by broadcast (their
// `resume_from` stays empty).
template <class Dev>
RunStart claim_run_directory(const RunContext<Dev>& run, RunDirClaim& claim) {
  const TrainOptions& options = run.options;
  std::error_code ec;
  RunStart resolved;
  if (run.root) {
    const bool out_exists = fs::exists(options.out, ec);
    REVOX_CHECK(!out_exists || fs::is_directory(options.out, ec), "--out '",
                options.out.string(), "' exists and is not a directory");
    if (!out_exists) {
      fs::create_directories(options.out, ec);
      REVOX_CHECK(!ec, "cannot create the run directory '", options.out.string(), "': ",
                  ec.message());
      claim.created_out = true;
    }
    claim.lock.acquire(options.out, run.say);
    bool out_empty = true;  // the lock file aside
    for (const auto& entry : fs::directory_iterator(options.out)) {
      if (entry.path().filename() != kRunLockName) out_empty = false;
    }
    resolved = resolve_run_start(options, out_exists, out_empty, run.world, run.say);
  }
  std::string text = run.root ? resolved.start.dump() : std::string();
  dist::broadcast_string(run.comm, text);
  if (!run.root) resolved.start = nlohmann::json::parse(text);
  return resolved;
}

// The run's cases (indices into data.cases for the split).
struct TrainingCases {
  TrainingData data;
  CaseSplit split;
};

// Opens --data (training_data.hpp), checks that there are at least 2 cases and that every
// one has a segmentation, splits them (split_cases) and says so.
template <class Dev>
TrainingCases prepare_data(const RunContext<Dev>& run, const RunConfig& config) {
  const TrainOptions& options = run.options;
  TrainingDataOptions data_options;
  data_options.threads = config.threads;
  data_options.nan_policy = options.nan_policy;
  data_options.cache_bytes = config.cache_mb << 20;
  if (const char* limit = std::getenv("REVOX_RAW_LIMIT_BYTES")) {  // tests
    data_options.raw_limit_bytes = std::strtoull(limit, nullptr, 10);
  }
  const auto data_start = std::chrono::steady_clock::now();
  TrainingCases prepared{open_training_data(options.data, data_options, run.say), CaseSplit{}};
  const TrainingData& data = prepared.data;
  const auto& cases = data.cases;
  REVOX_CHECK(cases.size() >= 2, "train: need at least 2 cases with segmentations under '",
              options.data.string(), "' (found ", cases.size(), ")");
  for (const auto& c : cases) {
    REVOX_CHECK(c.has_labels, "train: case ", c.id, " of '", options.data.string(),
                "' has no segmentation");
  }

  // Seeded split (indices into `cases`).
  std::vector<bool> has_et;
  for (const auto& c : cases) has_et.push_back(c.foreground[2] > 0);
  prepared.split = split_cases(cases.size(), config, has_et);
  char line[400];
  std::snprintf(line, sizeof line, "train: %zu %s cases under %s: %zu training, %zu hold-out "
                "(ready in %.2f s%s)", cases.size(), data.preprocessed ? "preprocessed" : "raw",
                options.data.string().c_str(), prepared.split.train.size(),
                prepared.split.holdout.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start)
                    .count(),
                data.preprocessed
                    ? (", cases mapped on use, cache " + std::to_string(config.cache_mb) +
                       " MB").c_str()
                    : "");
  run.say(line);
  return prepared;
}

// Every process must train the same run on the same cases: compares the config and the
// split with rank 0's (nothing to compare with one process).
template <class Dev>
void check_same_cases(const RunContext<Dev>& run, const RunConfig& config,
                      const TrainingCases& prepared) {
  if (run.world <= 1) return;
  const auto& cases = prepared.data.cases;
  const std::vector<std::size_t>& train_set = prepared.split.train;
  const std::vector<std::size_t>& holdout_set = prepared.split.holdout;
  std::string fingerprint = config.json.dump();
  for (auto i : train_set) fingerprint += "\ntrain " + cases[i].id;
  for (auto i : holdout_set) fingerprint += "\nholdout " + cases[i].id;
  const std::uint64_t mine = dist::checksum(fingerprint);
  std::uint64_t theirs[3] = {mine, train_set.size(), holdout_set.size()};
  run.comm.broadcast_host(theirs, sizeof theirs, 0);
  REVOX_CHECK(mine == theirs[0], "train: process ", run.rank, " of ", run.world, " sees other "
              "cases than process 0 under --data '", run.options.data.string(), "' (here ",
              train_set.size(), " training + ", holdout_set.size(), " hold-out cases, on "
              "process 0 ", theirs[1], " + ", theirs[2], ", or other case ids); every process "
              "must see the same data");
}

// The model, its parameters on the device and Adam, with the weights and Adam state in host
// memory for initialisation, checkpoints and replica checks (HostState, device.hpp: the
// training buffers themselves on the CPU, a mirror on a GPU). The weights start from
// Rng(mix(seed, "init")).
template <class Dev>
struct TrainingModel {
  // Defined below, out of the class (so not inline: a build can compile it once per device).
  TrainingModel(const Dev& dev, const RunConfig& config);
  TrainingModel(const TrainingModel&) = delete;
  TrainingModel& operator=(const TrainingModel&) = delete;

  static optim::AdamOptions adam_options_of(const RunConfig& config) {
    optim::AdamOptions options;
    options.lr = config.learning_rate;
    options.weight_decay = config.weight_decay;
    return options;
  }

  UNet<float> net;
  Parameters<float, Dev> params;
  optim::AdamOptions adam_options;
  optim::Adam<float, Dev> adam;
  HostState<Dev> host;
};

template <class Dev>
TrainingModel<Dev>::TrainingModel(const Dev& dev, const RunConfig& config)
    : net(config.model),
      params(net),
      adam_options(adam_options_of(config)),
      adam(dev, params, adam_options),
      host(dev, config.model, net, params, &adam, adam_options) {
  Rng rng(mix(config.seed, kInitStream));
  host.net().reset_parameters(rng);
  host.push();
}

// The run's history and best metric so far (none for a fresh run) and, on --resume, the
// checkpoint's weights and Adam state (rank 0); then rank 0's weights and Adam state (fresh
// or resumed) on every rank. Notes when the checkpoint was written by another number of
// processes.
template <class Dev>
TrainResult resume_from_checkpoint(const RunContext<Dev>& run, const RunStart& start,
                                   const RunConfig& config, TrainingModel<Dev>& model) {
  const nlohmann::json& state = start.start;
  const std::optional<Checkpoint>& resume_from = start.resume_from;
  TrainResult result;
  result.best_metric = state.at("best_metric").get<double>();
  for (const auto& j : state.at("history")) result.history.push_back(epoch_record_from_json(j));
  if (resume_from) {
    REVOX_CHECK(model_config_of(*resume_from) == config.model, "cannot resume: the model config "
                "of '", resume_from->file.path.string(), "' differs from the run's");
    load_model_weights(*resume_from, model.host.params());
    load_optimizer_state(*resume_from, model.host.params(), model.host.adam());
    model.host.push();
  }
  // Rank 0's weights and Adam state (fresh or resumed) on every rank.
  dist::broadcast_parameters(run.comm, model.params);
  dist::broadcast_optimizer_state(run.comm, model.adam);
  const int checkpoint_processes = state.at("processes").get<int>();
  if (resume_from && checkpoint_processes != run.world) {
    run.say("train: note: the checkpoint was written by " +
            std::to_string(checkpoint_processes) + " process(es), this run has " +
            std::to_string(run.world) + ": the global batch changes from " +
            std::to_string(config.batch_size * checkpoint_processes) + " to " +
            std::to_string(config.batch_size * run.world) + " samples per step, so the "
            "continuation differs from an uninterrupted run");
  }
  return result;
}

// Per epoch: every visited sample's loss and patch Dice WT, TC, ET (filled by the rank that
// trains it), this rank's running sums for the progress bar, and the skipped steps.
struct EpochTotals {
  explicit EpochTotals(long long visits)
      : sample_stats(static_cast<std::size_t>(visits) * 4, 0.0) {}
  std::vector<double> sample_stats;
  double local_loss = 0.0, local_dice = 0.0;
  long long local_count = 0, skipped_steps = 0;
};

// The U-Net's training forward and backward pass, as functions of their own: a build can
// compile them once per device and declare them extern elsewhere (the tests do, for the CPU:
// tests/support/brats_training.hpp), since they instantiate every block's forward and backward.
template <class Dev>
void unet_forward(const Dev& dev, const UNet<float>& net, TensorView<const float> x,
                  TensorView<float> y, UNet<float>::Saved<Dev>* saved,
                  const std::vector<TensorView<float>>& aux) {
  net.forward(dev, x, y, saved, aux);
}

template <class Dev>
void unet_backward(const Dev& dev, UNet<float>& net, UNet<float>::Saved<Dev>& saved,
                   TensorView<const float> dy, const std::vector<TensorView<const float>>& daux) {
  net.backward(dev, saved, dy, TensorView<float>{}, daux);
}

// One sample of a step between its forward and its backward pass.
template <class Dev>
struct PendingSample {
  long long s = 0;  // global sample index
  Sample sample;
  Staged<Dev> image_on, targets_on;
  Tensor<float, Dev> logits, dlogits;
  std::vector<Tensor<float>> aux_targets;  // [j - 1]: level j (deep supervision)
  std::vector<Staged<Dev>> aux_targets_on;
  std::vector<Tensor<float, Dev>> aux, daux;
  UNet<float>::Saved<Dev> saved;
  double loss = 0.0;
};

// A training step in progress (TrainingLoop::train_step).
template <class Dev>
struct StepState {
  int epoch = 0;                // 0-based
  long long t = 0;              // the step's index in the epoch
  long long schedule_step = 0;  // its number in the schedule (from 1; skipped steps count)
  bool inject = false;          // the test hook REVOX_TEST_NONFINITE_AT_STEP hits this step
  bool batch_loss = false;      // batch_dice with batch > 1
  index_t heads = 0;            // model.deep_supervision: extra output levels
  std::vector<double> level_weights;
  double bce_weight = 0.0;
  std::string bad_loss;  // this rank's first non-finite sample loss of the step
  std::vector<PendingSample<Dev>> pending;  // reserved: no reallocation moves what views
                                            // point to
};

// The epochs of a run that has started: the schedule, the steps, validation, checkpoints
// and logs (rank 0), and the timings of the closing lines.
template <class Dev>
class TrainingLoop {
 public:
  using Clock = std::chrono::steady_clock;

  // Data parallelism: a step takes global_batch consecutive entries of the epoch's shared,
  // seeded visiting order; rank r computes entries [r * batch, (r + 1) * batch) of them.
  TrainingLoop(RunContext<Dev>& run, const RunConfig& config, const TrainingCases& cases,
               TrainingModel<Dev>& model, const nlohmann::json& start, TrainResult& result)
      : run_(run),
        options_(run.options),
        comm_(run.comm),
        dev_(run.dev),
        config_(config),
        data_(cases.data),
        cases_(cases.data.cases),
        train_set_(cases.split.train),
        holdout_set_(cases.split.holdout),
        model_(model),
        result_(result),
        samples_(config.samples_per_epoch > 0 ? config.samples_per_epoch
                                              : static_cast<int>(train_set_.size())),
        batch_(config.batch_size),
        global_batch_(batch_ * run.world),
        steps_per_epoch_((samples_ + global_batch_ - 1) / global_batch_),
        visits_(steps_per_epoch_ * global_batch_),
        epochs_(config.epochs),
        start_epoch_(start.at("epoch").get<int>()),
        applied_steps_(start.at("step").get<long long>()) {
    if (start_epoch_ >= epochs_) {
      run_.say("train: the run already has " + std::to_string(start_epoch_) + " of " +
               std::to_string(epochs_) + " epochs; pass --epochs N to extend it");
    }
    if (run_.world > 1 || batch_ > 1) {
      run_.say("train: " + std::to_string(run_.world) + " process(es) (" + comm_.backend() +
               ") x batch " + std::to_string(batch_) + " = " + std::to_string(global_batch_) +
               " samples per step, " + std::to_string(steps_per_epoch_) + " steps per epoch");
    }
    // Test-only hook: REVOX_TEST_KILL_IN_VALIDATION=N sends SIGKILL to this process in its
    // N-th validation, after the first hold-out case is predicted (tests/e2e/crash_e2e.sh).
    const char* kill = std::getenv("REVOX_TEST_KILL_IN_VALIDATION");
    kill_in_validation_ = kill == nullptr ? 0L : std::atol(kill);
    // The gradient sum of this rank's samples when batch > 1 (each sample's backward starts
    // from zero gradients, then is added here, so the sum does not depend on how the samples
    // are spread over processes).
    if (batch_ > 1) grad_sum_ = Tensor<float, Dev>::zeros(model_.params.grads().shape);
    // The test-only hook REVOX_TEST_NONFINITE_AT_STEP (see the top of this file).
    if (const char* hook = std::getenv("REVOX_TEST_NONFINITE_AT_STEP")) {
      nonfinite_test_step_ = std::atoll(hook);
      nonfinite_test_in_loss_ = std::string(hook).find(":loss") != std::string::npos;
    }
    run_start_ = Clock::now();
  }

  // The epochs from the run's starting point to config.epochs (or --stop-after of them).
  void run_epochs() {
    for (int epoch = start_epoch_; epoch < epochs_; ++epoch) {
      if (options_.stop_after && epochs_this_run_ >= *options_.stop_after) break;
      run_epoch(epoch);
    }
  }

  // After the epochs: the logs when this invocation ran no epoch (a run without any, or a
  // --resume of a finished run: written again from the checkpoint's history, so that a run
  // killed between its last checkpoint and its log.csv gets that log back), the closing lines
  // (timings, data pipeline) and the data pipeline's counters in the result.
  void finish() {
    if (epochs_this_run_ == 0 && run_.root) write_logs();
    const double total = std::chrono::duration<double>(Clock::now() - run_start_).count();
    if (run_.world > 1 && steps_timed_ > 0) {
      const auto n = static_cast<double>(steps_timed_);
      char line[320];
      std::snprintf(line, sizeof line,
                    "train: per step on rank 0: %.3f s, of which %.2f ms waiting for the "
                    "slowest process and %.2f ms (%.2f%%) in the all-reduce of the %.2f MiB "
                    "gradient",
                    step_time_sum_ / n, 1e3 * wait_time_sum_ / n, 1e3 * reduce_time_sum_ / n,
                    100.0 * reduce_time_sum_ / step_time_sum_,
                    static_cast<double>(model_.params.size()) * sizeof(float) / (1 << 20));
      run_.say(line);
    }
    record_data_pipeline();
    if (steps_timed_ > 0) say_data_pipeline();
    run_.say("train: done in " + format_duration(total) + "; checkpoints in " +
             options_.out.string() +
             " (latest.safetensors, best.safetensors), log.csv, learning_curve.png");
  }

 private:
  // Epoch `epoch` (0-based): its steps, then end_epoch.
  void run_epoch(int epoch) {
    const auto epoch_start = Clock::now();
    DeviceTraits<Dev>::allocator().reset_peak();
    const std::vector<std::size_t> visit = visiting_order(epoch);
    // This rank's samples of the epoch, in the order it trains them (item j: step j / batch,
    // k = j % batch), cut and augmented by the loader's workers ahead of the step. Each
    // sample draws from its own Rng(seed, epoch, global index), so the workers' number and
    // timing change nothing.
    data::BackgroundLoader<Sample> loader(
        static_cast<std::size_t>(steps_per_epoch_ * batch_),
        [this, epoch, &visit](std::size_t j) { return make_epoch_sample(epoch, visit, j); },
        config_.loader_workers, static_cast<std::size_t>(config_.loader_depth));
    EpochTotals totals(visits_);
    for (long long t = 0; t < steps_per_epoch_; ++t) train_step(epoch, t, loader, totals);
    data_wait_sum_ += loader.wait_seconds();
    end_epoch(epoch, epoch_start, totals);
  }

  // The epoch's visiting order: `visits` entries over the training cases (wrapping), in a
  // shuffle seeded by mix(seed, epoch).
  std::vector<std::size_t> visiting_order(int epoch) const {
    std::vector<std::size_t> visit;
    for (long long s = 0; s < visits_; ++s) {
      visit.push_back(static_cast<std::size_t>(s) % train_set_.size());
    }
    Rng rng(mix3(config_.seed, kOrderStream, static_cast<std::uint64_t>(epoch)));
    shuffle(visit, rng);
    return visit;
  }

  // Item j of this rank's samples of the epoch (run by the loader's workers).
  Sample make_epoch_sample(int epoch, const std::vector<std::size_t>& visit,
                           std::size_t j) const {
    const long long t = static_cast<long long>(j) / batch_,
                    k = static_cast<long long>(j) % batch_;
    const long long s = t * global_batch_ + run_.rank * batch_ + k;  // global sample index
    const std::size_t index = train_set_[visit[static_cast<std::size_t>(s)]];
    Rng rng(mix3(mix(config_.seed, kSampleStream), static_cast<std::uint64_t>(epoch),
                 static_cast<std::uint64_t>(s)));
    const auto arrays = data_.get(index);
    return make_sample(config_, cases_[index], *arrays, rng);
  }

  // Step t of epoch `epoch`: this rank's samples forward and backward, the gradients
  // all-reduced and checked, then the Adam update, or for a non-finite loss or gradient an
  // error or a skipped step.
  void train_step(int epoch, long long t, data::BackgroundLoader<Sample>& loader,
                  EpochTotals& totals) {
    const auto step_start = Clock::now();
    StepState<Dev> step;
    step.epoch = epoch;
    step.t = t;
    step.schedule_step = static_cast<long long>(epoch) * steps_per_epoch_ + t + 1;
    model_.adam.set_lr(scheduled_learning_rate(config_, epoch, t, steps_per_epoch_));
    step.inject = nonfinite_test_step_ == step.schedule_step;
    // A sample runs forward, its loss gives dlogits, then backward: one sample at a time,
    // so one saved state is alive. With batch_dice (batch > 1) all the step's samples run
    // forward first, keeping their saved states, and one Dice over the batch gives each
    // its dlogits, scaled by batch (the step's gradient sum is divided by the batch later).
    // With deep supervision (model.deep_supervision = K) the net also outputs levels
    // 1 .. K, each scored against the area-downsampled targets; the loss is the weighted
    // sum (losses/deep_supervision.hpp), the patch Dice that of the full-resolution output.
    step.batch_loss = config_.batch_dice && batch_ > 1;
    step.heads = config_.model.deep_supervision;
    step.level_weights = losses::deep_supervision_weights(step.heads);
    step.bce_weight = config_.loss == "dice" ? 0.0 : 1.0;
    step.pending.reserve(static_cast<std::size_t>(step.batch_loss ? batch_ : 1));
    if (!step.batch_loss) {
      per_sample_losses(step, loader, totals);
    } else {
      batch_losses(step, loader, totals);
    }
    reduce_gradients(step);
    const std::string problem = nonfinite_problem(step);
    if (!problem.empty()) {
      skip_step(step, problem, totals);  // or throw (--on-nonfinite error)
      return;
    }
    apply_step(step, step_start, totals);
  }

  // Sample k of the step: staged on the device (on a GPU the image and targets are copied
  // there, the logits back for patch_dice) and run forward, its saved state kept.
  PendingSample<Dev>& forward_sample(StepState<Dev>& step,
                                     data::BackgroundLoader<Sample>& loader, long long k) {
    PendingSample<Dev>& p = step.pending.emplace_back();
    p.s = step.t * global_batch_ + run_.rank * batch_ + k;
    p.sample = loader.next();
    p.image_on = stage(dev_, p.sample.image);
    p.targets_on = stage(dev_, p.sample.targets);
    p.logits = Tensor<float, Dev>(model_.net.output_shape(p.sample.image.shape()));
    p.dlogits = Tensor<float, Dev>(p.logits.shape());
    std::vector<TensorView<float>> aux_views;
    for (index_t j = 1; j <= step.heads; ++j) {
      p.aux_targets.push_back(losses::downsample_targets(p.sample.targets, j));
      p.aux.emplace_back(model_.net.aux_output_shape(p.sample.image.shape(), j));
      p.daux.emplace_back(p.aux.back().shape());
      aux_views.push_back(p.aux.back().view());
    }
    for (const auto& target : p.aux_targets) p.aux_targets_on.push_back(stage(dev_, target));
    unet_forward(dev_, model_.net, p.image_on.view, p.logits.view(), &p.saved, aux_views);
    return p;
  }

  // Sample k's backward pass from its dlogits (into the step's gradient sum when batch > 1),
  // its loss and patch Dice into the epoch's totals.
  void backward_sample(StepState<Dev>& step, PendingSample<Dev>& p, long long k,
                       EpochTotals& totals) {
    if (step.inject && nonfinite_test_in_loss_ && k == 0) p.loss = std::nan("");
    if (!std::isfinite(p.loss) && step.bad_loss.empty()) {
      step.bad_loss = "the loss of sample " + std::to_string(p.s) + " (case " + p.sample.id +
                      ") is " + (std::isnan(p.loss) ? "NaN" : "Inf");
    }
    Parameters<float, Dev>& params = model_.params;
    params.zero_grad();
    std::vector<TensorView<const float>> daux_views;
    for (const auto& g : p.daux) daux_views.push_back(g.cview());
    unet_backward(dev_, model_.net, p.saved, p.dlogits.cview(), daux_views);
    if (batch_ > 1) {
      if (k == 0) {
        device_to_device(dev_, grad_sum_.data(), params.grads().data, grad_sum_.numel());
      } else {
        ops::add_inplace(dev_, grad_sum_.view(), TensorView<const float>(params.grads()));
      }
    }
    std::array<double, 3> d{};
    if constexpr (is_cpu_v<Dev>) {
      d = patch_dice(p.logits, p.sample.targets);
    } else {
      d = patch_dice(host_copy(dev_, p.logits.cview()), p.sample.targets);
    }
    double* stats = totals.sample_stats.data() + 4 * p.s;
    stats[0] = p.loss;
    for (std::size_t r = 0; r < 3; ++r) stats[1 + r] = d[r];
    totals.local_loss += p.loss;
    totals.local_dice += (d[0] + d[1] + d[2]) / 3.0;
    ++totals.local_count;
  }

  // Without batch_dice: each sample forward, its own loss, backward.
  void per_sample_losses(StepState<Dev>& step, data::BackgroundLoader<Sample>& loader,
                         EpochTotals& totals) {
    for (long long k = 0; k < batch_; ++k) {
      PendingSample<Dev>& p = forward_sample(step, loader, k);
      p.loss = sample_loss(step, p);
      backward_sample(step, p, k, totals);
      step.pending.clear();
    }
  }

  // One sample's loss (its dlogits, and with deep supervision its levels' too).
  double sample_loss(const StepState<Dev>& step, PendingSample<Dev>& p) const {
    if (step.heads == 0) {
      return config_.loss == "dice"
                 ? losses::soft_dice_loss(dev_, p.logits.cview(), p.targets_on.view,
                                          p.dlogits.view())
                 : losses::bce_dice_loss(dev_, p.logits.cview(), p.targets_on.view,
                                         p.dlogits.view());
    }
    // Each level's loss with its weight folded into the loss's own weights.
    const std::vector<double>& level_weights = step.level_weights;
    double loss = losses::bce_dice_loss(dev_, p.logits.cview(), p.targets_on.view,
                                        p.dlogits.view(), 1.0,
                                        step.bce_weight * level_weights[0], level_weights[0]);
    for (index_t j = 1; j <= step.heads; ++j) {
      const auto q = static_cast<std::size_t>(j - 1);
      const double w = level_weights[static_cast<std::size_t>(j)];
      loss += losses::bce_dice_loss(dev_, p.aux[q].cview(), p.aux_targets_on[q].view,
                                    p.daux[q].view(), 1.0, step.bce_weight * w, w);
    }
    return loss;
  }

  // With batch_dice: all the step's samples forward, one batch Dice per output level, then
  // each sample backward.
  void batch_losses(StepState<Dev>& step, data::BackgroundLoader<Sample>& loader,
                    EpochTotals& totals) {
    for (long long k = 0; k < batch_; ++k) forward_sample(step, loader, k);
    // The batch loss runs on the host (on a GPU: logits copied back, dlogits over), one
    // batch Dice per output level.
    double loss = 0.0;
    for (index_t j = 0; j <= step.heads; ++j) loss += batch_level_loss(step, j);
    for (PendingSample<Dev>& p : step.pending) p.loss = loss;
    for (long long k = 0; k < batch_; ++k) {
      backward_sample(step, step.pending[static_cast<std::size_t>(k)], k, totals);
    }
    step.pending.clear();
  }

  // Output level j (0: full resolution) of the batch Dice: every pending sample's dlogits of
  // that level, scaled by batch; returns the level's weighted loss.
  double batch_level_loss(StepState<Dev>& step, index_t j) {
    std::vector<PendingSample<Dev>>& pending = step.pending;
    const auto q = static_cast<std::size_t>(j - 1);  // for j >= 1
    std::vector<Tensor<float>> host_logits, host_dlogits;
    host_logits.reserve(pending.size());
    host_dlogits.reserve(pending.size());
    std::vector<TensorView<const float>> logit_views, target_views;
    std::vector<TensorView<float>> dlogit_views;
    for (PendingSample<Dev>& p : pending) {
      Tensor<float, Dev>& out = j == 0 ? p.logits : p.aux[q];
      Tensor<float, Dev>& dout = j == 0 ? p.dlogits : p.daux[q];
      if constexpr (is_cpu_v<Dev>) {
        logit_views.push_back(out.cview());
        dlogit_views.push_back(dout.view());
      } else {
        host_logits.push_back(host_copy(dev_, out.cview()));
        host_dlogits.emplace_back(out.shape());
        logit_views.push_back(host_logits.back().cview());
        dlogit_views.push_back(host_dlogits.back().view());
      }
      target_views.push_back(j == 0 ? p.sample.targets.cview() : p.aux_targets[q].cview());
    }
    const double w = step.level_weights[static_cast<std::size_t>(j)];
    const double loss =
        config_.loss == "dice" && step.heads == 0
            ? losses::batch_soft_dice_loss<float>(logit_views, target_views, dlogit_views)
            : losses::batch_bce_dice_loss<float>(logit_views, target_views, dlogit_views, 1.0,
                                                 step.bce_weight * w, w);
    for (std::size_t k = 0; k < pending.size(); ++k) {
      TensorView<float> g = dlogit_views[k];
      for (index_t i = 0; i < g.numel(); ++i) g.data[i] *= static_cast<float>(batch_);
      if constexpr (!is_cpu_v<Dev>) {
        Tensor<float, Dev>& dout = j == 0 ? pending[k].dlogits : pending[k].daux[q];
        host_to_device(dev_, dout.data(), g.data, g.numel());
      }
    }
    return loss;
  }

  // The step's gradient: this rank's sum (batch > 1) back in the parameters' gradients, then
  // all-reduced to the mean over the step's samples (dist::average_gradients).
  void reduce_gradients(const StepState<Dev>& step) {
    Parameters<float, Dev>& params = model_.params;
    if (batch_ > 1) {
      device_to_device(dev_, params.grads().data, grad_sum_.data(), grad_sum_.numel());
    }
    // The barrier only separates the two timings: the wait for the slowest process (it
    // would happen inside the all-reduce anyway) and the all-reduce's own time.
    if (run_.world > 1) {
      const auto wait_start = Clock::now();
      comm_.barrier();
      wait_time_sum_ += std::chrono::duration<double>(Clock::now() - wait_start).count();
    }
    const auto reduce_start = Clock::now();
    dist::average_gradients(comm_, params, batch_);
    reduce_time_sum_ += std::chrono::duration<double>(Clock::now() - reduce_start).count();
    if constexpr (is_cpu_v<Dev>) {
      if (step.inject && !nonfinite_test_in_loss_) {
        params.grads().data[params.grads().numel() - 1] = std::nanf("");
      }
    }
  }

  // Divergence guard: "" when the step may be applied, else what is not finite. The
  // gradient is the same on every rank after the all-reduce; a non-finite loss on any rank
  // is made known to all, so all take the same decision.
  std::string nonfinite_problem(const StepState<Dev>& step) {
    std::string problem = step.bad_loss;
    if (run_.world > 1) {
      double flag = step.bad_loss.empty() ? 0.0 : 1.0;
      comm_.all_reduce_sum_host(&flag, 1);
      if (flag > 0 && problem.empty()) {
        problem = "the loss of a sample on another process is not finite";
      }
    }
    if (problem.empty()) problem = first_nonfinite_gradient(dev_, model_.params);
    return problem;
  }

  // A step with a non-finite loss or gradient: stops the run (--on-nonfinite error) or is
  // skipped, its samples not counted in the epoch's loss and patch Dice.
  void skip_step(const StepState<Dev>& step, const std::string& problem, EpochTotals& totals) {
    const std::string where = "step " + std::to_string(step.schedule_step) + " (epoch " +
                              std::to_string(step.epoch + 1) + ", step " +
                              std::to_string(step.t + 1) + " of " +
                              std::to_string(steps_per_epoch_) + ")";
    if (options_.on_nonfinite == "error") {
      throw Error(
          "training diverged at " + where + ": " + problem + ". Stopped before applying "
          "the step; nothing was written for this epoch, so '" +
          (options_.out / "latest.safetensors").string() + "' still holds the last good "
          "state (after epoch " + std::to_string(step.epoch) + "). What to try: a lower "
          "learning rate (start a new run with --set learning_rate=" +
          format_number(model_.adam.lr() / 10) + "; this run's is " +
          format_number(model_.adam.lr()) + "), a smaller batch or patch, or --on-nonfinite "
          "skip to skip such steps (revox trains in float32; there is no lower precision to "
          "move away from)");
    }
    ++totals.skipped_steps;
    run_.say("train: skipped " + where + ": " + problem + " (no update applied; "
             "--on-nonfinite skip)");
    // The skipped samples do not count in the epoch's loss and patch Dice.
    for (long long k = 0; k < global_batch_; ++k) {
      double* stats = totals.sample_stats.data() + 4 * (step.t * global_batch_ + k);
      for (int q = 0; q < 4; ++q) stats[q] = 0.0;
    }
  }

  // The Adam update (with --check-replicas the weights compared across the ranks), then the
  // step's timing and progress.
  void apply_step(const StepState<Dev>& step, Clock::time_point step_start,
                  const EpochTotals& totals) {
    model_.adam.step();
    ++applied_steps_;
    if (options_.check_replicas) {
      model_.host.pull_weights();
      dist::check_replicas(comm_, TensorView<const float>(model_.host.params().values()),
                           "the weights after step " + std::to_string(applied_steps_));
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    step_time_sum_ += seconds;
    ++steps_timed_;
    if (steps_timed_ == 1) {
      char line[160];
      std::snprintf(line, sizeof line, "train: first step done %.2f s after the start (it "
                    "took %.2f s)",
                    std::chrono::duration<double>(Clock::now() - run_.invoked).count(),
                    seconds);
      if (run_.progress.terminal()) std::printf("\r\033[K");
      run_.say(line);
    }
    if (!run_.quiet) {
      const double mean_step = step_time_sum_ / static_cast<double>(steps_timed_);
      const double left = static_cast<double>((epochs_ - step.epoch - 1) * steps_per_epoch_ +
                                              (steps_per_epoch_ - step.t - 1));
      const auto count = static_cast<double>(totals.local_count);
      run_.progress.step(step.epoch + 1, epochs_, static_cast<int>(step.t + 1),
                         static_cast<int>(steps_per_epoch_), totals.local_loss / count,
                         totals.local_dice / count, seconds, mean_step * left);
    }
  }

  // After epoch `epoch`'s steps: its record (with validation), checkpoints and logs (rank
  // 0), its line.
  void end_epoch(int epoch, Clock::time_point epoch_start, EpochTotals& totals);

  // The epoch's record: the mean loss over its counted samples (every sample's numbers from
  // every rank, exact: one non-zero term per entry, summed in the visiting order, so the
  // loss does not depend on the number of processes), the hold-out Dice when validated.
  EpochRecord epoch_record(int epoch, Clock::time_point epoch_start, EpochTotals& totals) {
    std::vector<double>& sample_stats = totals.sample_stats;
    comm_.all_reduce_sum_host(sample_stats.data(), static_cast<index_t>(sample_stats.size()));
    double loss_sum = 0.0;
    for (long long s = 0; s < visits_; ++s) {
      loss_sum += sample_stats[static_cast<std::size_t>(4 * s)];
    }
    const long long counted = visits_ - totals.skipped_steps * global_batch_;
    if (run_.world > 1) {
      model_.host.pull_weights();
      dist::check_replicas(comm_, TensorView<const float>(model_.host.params().values()),
                           "the weights after epoch " + std::to_string(epoch + 1));
    }
    EpochRecord record;
    record.epoch = epoch + 1;
    record.loss = counted > 0 ? loss_sum / static_cast<double>(counted) : 0.0;
    record.skipped_steps = totals.skipped_steps;
    record.lr = model_.adam.lr();
    const bool last = epoch + 1 == epochs_;
    if (!holdout_set_.empty() && ((epoch + 1) % config_.validate_every == 0 || last)) {
      record.validated = true;
      record.dice = validate(last);
    }
    record.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    record.peak_memory_bytes = DeviceTraits<Dev>::allocator().peak_bytes();
    return record;
  }

  // Hold-out validation (validate_holdout): case j scored by rank j % world, the scores
  // summed over the ranks, rank 0 writing them. The final validation (with HD95) also
  // collects each hold-out case's ET voxel counts, from which the ET post-processing
  // threshold is chosen (postprocess.hpp).
  std::array<double, 3> validate(bool with_hd95) {
    ++validations_;
    return validate_holdout(
        dev_, model_.net, data_, holdout_set_, comm_, with_hd95,
        validations_ == kill_in_validation_,
        with_hd95 && run_.root ? options_.out / "holdout_scores.csv" : fs::path(),
        with_hd95 ? &final_et_counts_ : nullptr);
  }

  // After the last epoch's validation: the ET threshold with the best mean hold-out ET
  // Dice, into `extra` for latest.safetensors and best.safetensors ("et_threshold");
  // returns the line that says so.
  std::string store_et_threshold(std::map<std::string, std::string>& extra) const {
    const EtThresholdChoice choice = choose_et_threshold(final_et_counts_);
    extra["et_threshold"] = std::to_string(choice.threshold);
    char text[320];
    std::snprintf(text, sizeof text, "train: ET post-processing threshold %lld voxels (chosen "
                  "on the %zu hold-out cases: mean ET Dice %.4f without, %.4f with; predict "
                  "applies it unless --no-postprocess)",
                  static_cast<long long>(choice.threshold), final_et_counts_.size(),
                  choice.dice_without, choice.dice_with);
    return text;
  }

  // Rank 0 after epoch `epoch`: latest.safetensors (and best.safetensors at a new best)
  // from the host copy of the weights and Adam state, never with non-finite weights; then
  // log.csv and learning_curve.png.
  void save_checkpoints(int epoch, bool best, const std::map<std::string, std::string>& extra) {
    HostState<Dev>& host = model_.host;
    host.pull();  // the weights and Adam state in host memory (a no-op on the CPU)
    check_finite_weights(host.params(), epoch, options_.out);
    if (best) {
      write_checkpoint(options_.out / "best.safetensors", host.params(), &host.adam(),
                       config_.json, epoch + 1, applied_steps_, result_.best_metric, extra);
    }
    write_checkpoint(options_.out / "latest.safetensors", host.params(), &host.adam(),
                     config_.json, epoch + 1, applied_steps_, result_.best_metric, extra);
    // An earlier best checkpoint gets the threshold chosen on the final model.
    std::error_code ec;
    if (!best && extra.count("et_threshold") != 0 &&
        fs::exists(options_.out / "best.safetensors", ec)) {
      set_checkpoint_metadata(options_.out / "best.safetensors",
                              {{"et_threshold", extra.at("et_threshold")}});
    }
    write_logs();
  }

  // The epoch's line (in both progress modes).
  void say_epoch(int epoch, const EpochRecord& record, double mean_dice) {
    char line[512];
    if (record.validated) {
      std::snprintf(line, sizeof line,
                    "epoch %d/%d  loss %.4f  hold-out Dice WT %.3f TC %.3f ET %.3f (mean %.3f)"
                    "  lr %.3g  %.1f s  peak %.1f MiB",
                    epoch + 1, epochs_, record.loss, record.dice[0], record.dice[1],
                    record.dice[2], mean_dice, record.lr, record.seconds,
                    static_cast<double>(record.peak_memory_bytes) / (1 << 20));
    } else {
      std::snprintf(line, sizeof line, "epoch %d/%d  loss %.4f  lr %.3g  %.1f s  peak %.1f MiB",
                    epoch + 1, epochs_, record.loss, record.lr, record.seconds,
                    static_cast<double>(record.peak_memory_bytes) / (1 << 20));
    }
    if (!run_.quiet) run_.progress.end_epoch(line);
  }

  // Rank 0: log.csv and learning_curve.png of the history so far.
  void write_logs();

  // The data pipeline of this invocation into the result.
  void record_data_pipeline() {
    result_.data_wait_seconds = data_wait_sum_;
    result_.preprocessed = data_.preprocessed;
    if (const auto* cache = data_.cache()) {
      result_.cache_limit_bytes = cache->limit_bytes();
      result_.cache_peak_cached_bytes = cache->peak_cached_bytes();
      result_.cache_peak_live_bytes = cache->peak_live_bytes();
      result_.cache_opens = cache->opens();
      result_.cache_evictions = cache->evictions();
      for (const auto& c : cases_) {
        result_.largest_case_bytes = std::max(result_.largest_case_bytes, c.bytes);
      }
    }
  }

  // The closing line on the steps' time and their wait for data.
  void say_data_pipeline() {
    char line[400];
    std::snprintf(line, sizeof line,
                  "train: %.3f s per step; waiting for data %.1f ms per step (%.2f%% of step "
                  "time; %d loader worker(s))%s",
                  step_time_sum_ / static_cast<double>(steps_timed_),
                  1e3 * data_wait_sum_ / static_cast<double>(steps_timed_),
                  100.0 * data_wait_sum_ / step_time_sum_, config_.loader_workers,
                  data_.cache() == nullptr
                      ? ""
                      : (", case cache: peak " +
                         std::to_string(data_.cache()->peak_live_bytes() >> 20) +
                         " MiB mapped (limit " + std::to_string(config_.cache_mb) +
                         " MiB + cases in use), " + std::to_string(data_.cache()->opens()) +
                         " maps, " + std::to_string(data_.cache()->evictions()) +
                         " evictions").c_str());
    run_.say(line);
  }

  static std::string format_number(double v) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.3g", v);
    return std::string(buffer);
  }

  RunContext<Dev>& run_;
  const TrainOptions& options_;
  dist::Communicator<Dev>& comm_;
  const Dev& dev_;
  const RunConfig& config_;
  const TrainingData& data_;
  const std::vector<data::CaseInfo>& cases_;
  const std::vector<std::size_t>& train_set_;
  const std::vector<std::size_t>& holdout_set_;
  TrainingModel<Dev>& model_;
  TrainResult& result_;
  // The schedule.
  const int samples_;
  const long long batch_, global_batch_, steps_per_epoch_, visits_;
  const int epochs_, start_epoch_;
  long long applied_steps_;  // Adam steps of the run (resumed ones included): "step"
  // Validation.
  long kill_in_validation_ = 0;
  long validations_ = 0;
  std::vector<EnhancingCounts> final_et_counts_;
  Tensor<float, Dev> grad_sum_;
  long long nonfinite_test_step_ = 0;
  bool nonfinite_test_in_loss_ = false;
  // Timings.
  Clock::time_point run_start_;
  int epochs_this_run_ = 0;
  double step_time_sum_ = 0.0, wait_time_sum_ = 0.0, reduce_time_sum_ = 0.0,
         data_wait_sum_ = 0.0;
  long long steps_timed_ = 0;
};

// TrainingLoop's members defined out of the class (so not inline: a build can compile them
// apart from the rest of the loop).
template <class Dev>
void TrainingLoop<Dev>::end_epoch(int epoch, Clock::time_point epoch_start,
                                  EpochTotals& totals) {
  const EpochRecord record = epoch_record(epoch, epoch_start, totals);
  result_.history.push_back(record);
  const double mean_dice = (record.dice[0] + record.dice[1] + record.dice[2]) / 3.0;
  nlohmann::json history = nlohmann::json::array();
  for (const auto& r : result_.history) history.push_back(to_json(r));
  std::map<std::string, std::string> extra{{"history", history.dump()},
                                           {"processes", std::to_string(run_.world)}};
  const bool last = epoch + 1 == epochs_;
  const std::string et_line =
      record.validated && last ? store_et_threshold(extra) : std::string();
  const bool best = record.validated && mean_dice > result_.best_metric;
  if (best) result_.best_metric = mean_dice;
  if (run_.root) save_checkpoints(epoch, best, extra);
  say_epoch(epoch, record, mean_dice);
  if (!et_line.empty()) run_.say(et_line);
  if (record.validated) result_.final_dice = record.dice;
  ++epochs_this_run_;
}

template <class Dev>
void TrainingLoop<Dev>::write_logs() {
  write_text_atomic(options_.out / "log.csv", log_csv(result_.history));
  int w = 0, h = 0;
  const auto rgb = plot_learning_curve(result_.history, w, h);
  const fs::path tmp = options_.out / "learning_curve.png.tmp";
  REVOX_CHECK(stbi_write_png(tmp.string().c_str(), w, h, 3, rgb.data(), w * 3) != 0,
              "cannot write '", tmp.string(), "'");
  fs::rename(tmp, options_.out / "learning_curve.png");
}

}  // namespace detail

// The training loop; see the top of this file. `log` receives every plain-text line (rank 0
// only). `comm` connects the processes of a data-parallel run (dist::SingleProcess: one);
// `dev` is where the model trains (Cpu, or the Cuda of comm's GPU: the Cuda instantiation
// lives in brats_cuda.cu).
template <class Dev>
TrainResult run_training(const TrainOptions& options, std::ostream& log,
                         dist::Communicator<Dev>& comm, const Dev& dev = Dev{}) {
  using namespace detail;
  RunContext<Dev> run(options, log, comm, dev);

  // ---- everything that can fail is checked before RUN_DIR is touched -------------------
  REVOX_CHECK(options.on_nonfinite == "error" || options.on_nonfinite == "skip",
              "--on-nonfinite must be 'error' or 'skip', got '", options.on_nonfinite, "'");
  RunDirClaim claim(options.out);
  const RunStart start = claim_run_directory(run, claim);
  const RunConfig config = parse_run_config(start.start.at("config"));
  omp_set_num_threads(config.threads);
  const TrainingCases cases = prepare_data(run, config);
  check_same_cases(run, config, cases);
  TrainingModel<Dev> model(dev, config);
  TrainResult result = resume_from_checkpoint(run, start, config, model);

  // ---- from here on the run directory is written (by rank 0) ---------------------------
  claim.started = true;
  for (auto i : cases.split.holdout) result.holdout_ids.push_back(cases.data.cases[i].id);
  if (run.root) {
    write_run_files(options.out, config.json, config, cases.data.cases, cases.split, run.say);
  }
  TrainingLoop<Dev> loop(run, config, cases, model, start.start, result);
  loop.run_epochs();
  loop.finish();
  return result;
}

// One process (no data parallelism).
inline TrainResult run_training(const TrainOptions& options, std::ostream& log = std::cout) {
  dist::SingleProcess<Cpu> single;
  return run_training(options, log, single);
}

}  // namespace revox::brats
