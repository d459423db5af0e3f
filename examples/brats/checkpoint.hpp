// revox-brats checkpoints: one safetensors file (revox/io/safetensors.hpp) per checkpoint,
// written atomically (temporary file, fsync, verify, rename), readable by PyTorch's
// `safetensors.torch.load_file`.
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
//   plus any extra entries the writer passes (the trainer stores "history": the per-epoch
//   log rows so far, as JSON, and "processes": the number of data-parallel processes of the
//   run that wrote it).
//
// Every reader error is a revox::Error naming the file and the problem: not a safetensors
// file / damaged, not a revox checkpoint, missing tensor, shape or dtype mismatch.
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
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
  io::SafetensorsFile file;  // every tensor and metadata entry, as read
};

namespace detail {

template <class... Parts>
[[noreturn]] void checkpoint_fail(const std::filesystem::path& path, Parts&&... parts) {
  throw Error(revox::detail::concat("checkpoint '", path.string(), "': ",
                                    std::forward<Parts>(parts)...));
}

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

inline std::vector<std::int64_t> shape_of(const ParamShape& shape) {
  std::vector<std::int64_t> out;
  for (int i = 0; i < shape.rank; ++i) out.push_back(shape.dims[static_cast<std::size_t>(i)]);
  return out;
}

inline std::string format_double(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

inline io::SafeTensor slice_tensor(const float* data, const ParamShape& shape) {
  std::vector<float> values(data, data + shape.numel());
  return io::make_safetensor<float>(shape_of(shape), values);
}

// Copies the tensor `name` into dst (numel(shape) floats), checking dtype and shape.
inline void copy_tensor(const io::SafetensorsFile& file, const std::string& name,
                        const ParamShape& shape, float* dst) {
  if (!file.contains(name)) {
    checkpoint_fail(file.path, "missing tensor '", name,
                    "' (the checkpoint was written by a different model or is incomplete)");
  }
  const io::SafeTensor& tensor = file.at(name);
  if (tensor.shape != shape_of(shape)) {
    checkpoint_fail(file.path, "tensor '", name, "' has shape ", shape_text(tensor.shape),
                    ", the model expects ", shape_text(shape_of(shape)));
  }
  if (tensor.dtype != io::Dtype::F32 && tensor.dtype != io::Dtype::F64) {
    checkpoint_fail(file.path, "tensor '", name, "' has dtype ", io::dtype_name(tensor.dtype),
                    ", expected F32");
  }
  const std::vector<float> values = tensor.values<float>();
  std::copy(values.begin(), values.end(), dst);
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
  return ck;
}

// The model's UNetConfig, from the checkpoint's config["model"].
inline UNetConfig model_config_of(const Checkpoint& ck) {
  try {
    return unet_config_from_json(ck.config.at("model"));
  } catch (const std::exception& e) {
    detail::checkpoint_fail(ck.file.path, "model config: ", e.what());
  }
}

// Copies "model.<name>" into every parameter, checking every name and shape; tensors in the
// file that the model does not have are an error too.
inline void load_model_weights(const Checkpoint& ck, Parameters<float>& params) {
  float* values = params.values().data;
  std::size_t model_tensors = 0;
  for (const auto& entry : params.entries()) {
    detail::copy_tensor(ck.file, "model." + entry.name, entry.shape, values + entry.offset);
  }
  for (const auto& [name, tensor] : ck.file.tensors) {
    if (name.rfind("model.", 0) == 0) ++model_tensors;
  }
  if (model_tensors != params.entries().size()) {
    for (const auto& [name, tensor] : ck.file.tensors) {
      if (name.rfind("model.", 0) != 0) continue;
      bool known = false;
      for (const auto& entry : params.entries()) known = known || name == "model." + entry.name;
      if (!known) {
        detail::checkpoint_fail(ck.file.path, "tensor '", name,
                                "' is not a parameter of the configured model");
      }
    }
  }
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
    for (const auto& entry : params.entries()) {
      detail::copy_tensor(ck.file, std::string("optimizer.") + state + "." + entry.name,
                          entry.shape, buffer.data + entry.offset);
    }
  });
  adam.set_steps(ck.step);
}

// Writes a checkpoint atomically. `adam` may be null (weights only).
inline void write_checkpoint(const std::filesystem::path& path, const Parameters<float>& params,
                             const optim::Adam<float>* adam, const nlohmann::json& config,
                             int epoch, long long step, double best_metric,
                             const std::map<std::string, std::string>& extra_metadata = {}) {
  std::map<std::string, io::SafeTensor> tensors;
  const float* values = params.values().data;
  for (const auto& entry : params.entries()) {
    tensors.emplace("model." + entry.name, detail::slice_tensor(values + entry.offset, entry.shape));
  }
  std::map<std::string, std::string> meta = extra_metadata;
  if (adam != nullptr) {
    adam->visit_state([&](const char* state, TensorView<const float> buffer) {
      for (const auto& entry : params.entries()) {
        tensors.emplace(std::string("optimizer.") + state + "." + entry.name,
                        detail::slice_tensor(buffer.data + entry.offset, entry.shape));
      }
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
  io::write_safetensors(path, tensors, meta);
}

}  // namespace revox::brats
