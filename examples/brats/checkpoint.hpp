// revox-brats checkpoints: one safetensors file (revox/io/safetensors.hpp) per checkpoint,
// written atomically (temporary file, fsync, verify, rename), readable by PyTorch's
// `safetensors.torch.load_file`. The weights and the Adam state go through the library's
// parameter I/O (revox/io/parameters_io.hpp) under the prefixes below.
//
// Tensors (all F32, row-major, PyTorch layouts):
//   model.<param name>                     every UNet parameter under its revox name, e.g.
//                                          model.encoders.0.conv.weight [C1, C0, 1, 1, 1]
//   optimizer.<state>.<param name>         Adam state per parameter, same shape as the
//                                          parameter: optimizer.exp_avg.<name>,
//                                          optimizer.exp_avg_sq.<name>   (optional: a
//                                          weights-only checkpoint has none)
// __metadata__ (strings):
//   "format":       "revox-checkpoint-1"
//   "config":       the resolved training config (run_config.hpp) as JSON text; its "model"
//                   object is the UNetConfig JSON (unet_config_from_json)
//   "epoch":        epochs completed (the next epoch to run when resuming)
//   "step":         optimizer steps done (Adam's step count)
//   "best_metric":  best hold-out mean Dice so far (-1 when not yet validated), %.17g
//   "optimizer":    "Adam" when optimizer tensors are present
//   "rng":          how the trainer's randomness is derived (it is stateless: every draw
//                   comes from an Rng seeded by (seed, epoch, sample), so the seed in the
//                   config is the whole RNG state)
//   "revox_commit": the git commit the binary was built from, when known
//   "et_threshold": optional, the ET post-processing threshold in voxels (postprocess.hpp),
//                   chosen on the hold-out set at the end of training; a checkpoint without
//                   it reads as 0 (no suppression)
//   plus any extra entries the writer passes (the trainer stores "history": the per-epoch
//   log rows so far, as JSON, and "processes": the number of data-parallel processes of the
//   run that wrote it).
//
// Test-only hook (never set it in real runs): with REVOX_TEST_KILL_IN_CHECKPOINT_WRITE=N in
// the environment, the process sends itself SIGKILL during its N-th write of a file named
// latest.safetensors, after the temporary file is complete and verified and before it is
// renamed over the target: the moment a crash is most likely to leave a half-replaced
// checkpoint. tests/e2e/crash_e2e.sh uses it to check that the previous checkpoint survives.
//
// Every reader error is a revox::Error naming the file and the problem: not a safetensors
// file / damaged, not a revox checkpoint, missing tensor, shape or dtype mismatch.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/io/parameters_io.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/optim/adam.hpp"

#ifndef REVOX_GIT_COMMIT
#define REVOX_GIT_COMMIT ""
#endif

namespace revox::brats {

inline constexpr const char* kCheckpointFormat = "revox-checkpoint-1";

struct Checkpoint {
  nlohmann::json config;     // the resolved training config
  int epoch = 0;             // epochs completed
  long long step = 0;        // optimizer steps done
  double best_metric = -1;   // best hold-out mean Dice so far
  std::int64_t et_threshold = 0;  // metadata "et_threshold", 0 when absent
  bool has_et_threshold = false;  // whether the metadata has it
  io::SafetensorsFile file;  // every tensor and metadata entry, as read
};

namespace detail {

template <class... Parts>
[[noreturn]] void checkpoint_fail(const std::filesystem::path& path, Parts&&... parts) {
  throw Error(revox::detail::concat("checkpoint '", path.string(), "': ",
                                    std::forward<Parts>(parts)...));
}

inline std::string format_double(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

// Copies the tensors prefix + <param name> into `flat` (laid out like params) through
// io::load_parameter_tensors: strict, so every missing, unexpected, mis-shaped or mistyped
// tensor is named in one error and nothing is copied; F64 data is accepted and rounded to
// float, as the checkpoint reader always has.
inline void load_tensors(const io::SafetensorsFile& file, const std::string& prefix,
                         const std::vector<ParamEntry>& entries, float* flat,
                         const char* what) {
  io::LoadOptions options;
  options.prefix = prefix;
  options.allow_narrowing = true;
  try {
    io::load_parameter_tensors(file, entries, flat, options);
  } catch (const Error& e) {
    checkpoint_fail(file.path, "the ", what,
                    " tensors do not fit the configured model (the checkpoint was written by a "
                    "different model or is incomplete): ",
                    e.what());
  }
}

inline long long parse_integer(const std::filesystem::path& path, const std::string& key,
                               const std::string& text) {
  try {
    std::size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  checkpoint_fail(path, "metadata '", key, "' must be a non-negative integer, got '", text, "'");
}

// The test-only hook described at the top of this file.
inline void kill_in_checkpoint_write_hook(const std::filesystem::path& target) {
  static const long kill_at = [] {
    const char* value = std::getenv("REVOX_TEST_KILL_IN_CHECKPOINT_WRITE");
    return value == nullptr ? 0L : std::atol(value);
  }();
  static long latest_writes = 0;
  if (kill_at <= 0 || target.filename() != "latest.safetensors") return;
  if (++latest_writes == kill_at) ::raise(SIGKILL);
}

}  // namespace detail

// Reads and validates a checkpoint (format, metadata, config JSON). Tensors are checked
// against a model by load_model_weights / load_optimizer_state.
inline Checkpoint read_checkpoint(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) detail::checkpoint_fail(path, "no such file");
  if (std::filesystem::is_directory(path, ec)) {
    detail::checkpoint_fail(path, "is a directory, expected a .safetensors checkpoint file");
  }
  Checkpoint ck;
  try {
    ck.file = io::read_safetensors(path);
  } catch (const Error& e) {
    detail::checkpoint_fail(path, "damaged or not a safetensors file: ", e.what());
  }
  const auto& meta = ck.file.metadata;
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kCheckpointFormat) {
    detail::checkpoint_fail(path, "not a revox checkpoint (metadata 'format' is ",
                            format == meta.end() ? std::string("missing")
                                                 : "'" + format->second + "'",
                            ", expected '", kCheckpointFormat, "')");
  }
  for (const char* key : {"config", "epoch", "step", "best_metric"}) {
    if (meta.count(key) == 0) detail::checkpoint_fail(path, "metadata '", key, "' is missing");
  }
  try {
    ck.config = nlohmann::json::parse(meta.at("config"));
  } catch (const nlohmann::json::exception& e) {
    detail::checkpoint_fail(path, "metadata 'config' is not valid JSON: ", e.what());
  }
  if (!ck.config.is_object() || !ck.config.contains("model")) {
    detail::checkpoint_fail(path, "metadata 'config' has no \"model\" object");
  }
  ck.epoch = static_cast<int>(detail::parse_integer(path, "epoch", meta.at("epoch")));
  ck.step = detail::parse_integer(path, "step", meta.at("step"));
  try {
    ck.best_metric = std::stod(meta.at("best_metric"));
  } catch (const std::exception&) {
    detail::checkpoint_fail(path, "metadata 'best_metric' is not a number: '",
                            meta.at("best_metric"), "'");
  }
  const auto et = meta.find("et_threshold");
  if (et != meta.end()) {
    ck.et_threshold = detail::parse_integer(path, "et_threshold", et->second);
    ck.has_et_threshold = true;
  }
  return ck;
}

// Adds (or replaces) metadata entries of an existing checkpoint, rewriting it atomically with
// its tensors unchanged.
inline void set_checkpoint_metadata(const std::filesystem::path& path,
                                    const std::map<std::string, std::string>& entries) {
  Checkpoint ck = read_checkpoint(path);
  for (const auto& [key, value] : entries) ck.file.metadata[key] = value;
  io::write_safetensors(path, ck.file.tensors, ck.file.metadata);
}

// The model's UNetConfig, from the checkpoint's config["model"].
inline UNetConfig model_config_of(const Checkpoint& ck) {
  try {
    return unet_config_from_json(ck.config.at("model"));
  } catch (const std::exception& e) {
    detail::checkpoint_fail(ck.file.path, "model config: ", e.what());
  }
}

// Copies "model.<name>" into every parameter, checking every name, shape and dtype; tensors
// under "model." that the model does not have are an error too (io::load_parameters).
inline void load_model_weights(const Checkpoint& ck, Parameters<float>& params) {
  detail::load_tensors(ck.file, "model.", params.entries(), params.values().data,
                       "model weight");
}

// Restores Adam's state (exp_avg, exp_avg_sq, step count) written by write_checkpoint.
inline void load_optimizer_state(const Checkpoint& ck, const Parameters<float>& params,
                                 optim::Adam<float>& adam) {
  const auto it = ck.file.metadata.find("optimizer");
  if (it == ck.file.metadata.end() || it->second != "Adam") {
    detail::checkpoint_fail(ck.file.path,
                            "has no Adam optimizer state (a weights-only checkpoint cannot be "
                            "resumed)");
  }
  adam.visit_state([&](const char* state, TensorView<float> buffer) {
    detail::load_tensors(ck.file, std::string("optimizer.") + state + ".", params.entries(),
                         buffer.data, "optimizer state");
  });
  adam.set_steps(ck.step);
}

// Writes a checkpoint atomically. `adam` may be null (weights only).
inline void write_checkpoint(const std::filesystem::path& path, const Parameters<float>& params,
                             const optim::Adam<float>* adam, const nlohmann::json& config,
                             int epoch, long long step, double best_metric,
                             const std::map<std::string, std::string>& extra_metadata = {}) {
  std::map<std::string, io::SafeTensor> tensors;
  io::add_parameter_tensors(tensors, params.entries(), params.values().data, "model.");
  std::map<std::string, std::string> meta = extra_metadata;
  if (adam != nullptr) {
    adam->visit_state([&](const char* state, TensorView<const float> buffer) {
      io::add_parameter_tensors(tensors, params.entries(), buffer.data,
                                std::string("optimizer.") + state + ".");
    });
    meta["optimizer"] = "Adam";
  }
  meta["format"] = kCheckpointFormat;
  meta["config"] = config.dump();
  meta["epoch"] = std::to_string(epoch);
  meta["step"] = std::to_string(step);
  meta["best_metric"] = detail::format_double(best_metric);
  meta["rng"] = "stateless: Rng(mix(seed, epoch, sample)) per sample; the seed is in config";
  if (std::string(REVOX_GIT_COMMIT).size() > 0) meta["revox_commit"] = REVOX_GIT_COMMIT;
  io::write_safetensors(path, tensors, meta, [&](const std::filesystem::path&) {
    detail::kill_in_checkpoint_write_hook(path);
  });
}

}  // namespace revox::brats
