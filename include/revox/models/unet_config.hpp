// revox/models/unet_config.hpp — UNetConfig, the run-time description of a revox::UNet
// (revox/models/unet.hpp): its widths, blocks and normalisation; JSON in and out; and the
// presets of the paper's Table 1 plus small ones for CPU experiments.
//
// JSON (nlohmann::json), every key optional except as noted:
//   {
//     "preset":           "mbconv-base",  // start from this preset, then apply the keys below
//     "in_channels":      4,              // image channels (T1, T1ce, T2, FLAIR)
//     "out_channels":     3,              // logits: WT, TC, ET
//     "widths":           [30, 60, 120, 180, 240],  // channels per level; required without preset
//     "expand_ratio":     2,              // MBConv expansion (ignored by "standard" blocks)
//     "blocks_per_level": 1,              // reversible blocks (each one F and one G) per level
//     "decoder_blocks":   1,              // ConvBlocks per decoder level (0 allowed)
//     "num_groups":       5,              // GroupNorm groups; required without preset
//     "block":            "mbconv",       // or "standard" (3x3x3 ConvBlocks for F and G)
//     "reversible":       true,           // false: the stored-activation twin
//     "decoder_memory":   "stored",       // or "lean": what the decoder keeps for backward
//     "block_memory":     "stored",       // or "lean": what MBConv F and G keep (mbconv only)
//     "input_size":       [160, 256, 256] // D, H, W of the training input (informational)
//     "deep_supervision": 0               // extra 1x1x1 output heads on the decoder levels
//                                         // 1 .. N below full resolution (0: none; at most
//                                         // levels - 2); written only when > 0
//   }
// unet_config_from_json rejects unknown keys, wrong types and bad values with a revox::Error
// that names the key, e.g. "UNet config: 'expand_ratio' must be an integer >= 1, got 0".
//
// Validity (validate_unet_config): at least one level; every width even (F and G each get
// half the channels) and its half divisible by num_groups (that divides every GroupNorm'd
// channel count in the net: C/2 and C/2 * expand_ratio in the encoder blocks, C in the
// decoder blocks); every input_size extent divisible by 2^(levels - 1).
//
// Presets (unet_preset; Table 1 of Pendse, Thangarasa et al., arXiv 2104.09648). "Each level has two blocks" in the paper is read
// as one reversible block per level, whose F and G are the two blocks (the encoder's
// pointwise conv being the level's other piece would also fit, but either reading gives
// blocks_per_level = 1 here, the setting PRU uses for its encoder). input_size is D, H, W in
// revox's NCDHW order: the paper's "256x256x160" is x, y, z with z the axial axis, so D = 160.
//   baseline       standard blocks, widths 60,120,180,240,480 @ 160x256x256, num_groups 10
//                  (halves 30..240 all divisible by 10: 3 to 24 channels per group)
//   mbconv-base    MBConv e=2, widths 30,60,120,180,240 @ 160x256x256, num_groups 5
//                  (halves 15..120 are multiples of 15, so 1, 3, 5 or 15 groups divide them;
//                   5 keeps at least 3 channels per group)
//   mbconv-deeper  MBConv e=2, widths 30,60,120,180,240,480 @ 128^3, num_groups 5
//   mbconv-wider   MBConv e=8, widths 30,60,120,180,240 @ 128^3, num_groups 5
//   small          MBConv e=2, widths 16,32,64,128 @ 32^3, num_groups 4 (CPU: minutes)
//   tiny           MBConv e=2, widths 8,16,32 @ 16^3, num_groups 2 (CPU: seconds; tests)
// The four paper presets set decoder_memory and block_memory to "lean" (at 160x256x256:
// MBConv-Base 6.4 GB instead of 13.8 GB, Baseline 12.3 instead of 24.6); small and tiny keep
// the faster "stored" default.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"

namespace revox {

struct UNetConfig {
  index_t in_channels = 4;
  index_t out_channels = 3;
  std::vector<index_t> widths;  // channels of each encoder level, shallowest first
  index_t expand_ratio = 2;     // MBConv only
  index_t blocks_per_level = 1;
  index_t decoder_blocks = 1;
  index_t num_groups = 0;  // 0 = not set (invalid)
  std::string block = "mbconv";  // "mbconv" or "standard"
  bool reversible = true;
  // "lean": each decoder level keeps only its ConvBlocks' outputs (and GroupNorm statistics)
  // and recomputes the upsampled sum and each convolution in backward; "stored": it keeps
  // the sum and every block's convolution and norm outputs. Same outputs and gradients.
  // "stored" unless a paper preset sets "lean" (measured on a 2-core CPU: lean halves the
  // step's memory and costs about 26% of its time at 128^3, 20% at 32^3; docs/results.md).
  std::string decoder_memory = "stored";
  // "lean": the encoder's MBConv blocks (F and G) keep only their GroupNorm statistics and
  // their projection's output, and recompute the rest one GroupNorm group of the expanded
  // channels at a time in backward; "stored": they keep every intermediate. Same outputs,
  // gradients equal up to float rounding (revox/layers/mbconv.hpp). "standard" blocks
  // (ConvBlock F and G) ignore it. "stored" unless a paper preset sets "lean" (lean costs
  // about 9% of the step's time at 128^3, 20% at 32^3, on a 2-core CPU).
  std::string block_memory = "stored";
  std::array<index_t, 3> input_size{0, 0, 0};  // D, H, W; all 0 = not given
  // Auxiliary output heads (nnU-Net's deep supervision) on decoder levels 1 .. N: trained,
  // not used by inference (UNet::forward without aux outputs runs the main head only).
  index_t deep_supervision = 0;

  index_t levels() const { return static_cast<index_t>(widths.size()); }
  // Every spatial extent of the input must be divisible by this: 2^(levels - 1).
  index_t size_divisor() const { return index_t{1} << (widths.empty() ? 0 : levels() - 1); }

  friend bool operator==(const UNetConfig& a, const UNetConfig& b) {
    return a.in_channels == b.in_channels && a.out_channels == b.out_channels &&
           a.widths == b.widths && a.expand_ratio == b.expand_ratio &&
           a.blocks_per_level == b.blocks_per_level && a.decoder_blocks == b.decoder_blocks &&
           a.num_groups == b.num_groups && a.block == b.block && a.reversible == b.reversible &&
           a.decoder_memory == b.decoder_memory && a.block_memory == b.block_memory &&
           a.input_size == b.input_size && a.deep_supervision == b.deep_supervision;
  }
  friend bool operator!=(const UNetConfig& a, const UNetConfig& b) { return !(a == b); }
};

// Throws revox::Error naming the first invalid field.
inline void validate_unet_config(const UNetConfig& config) {
  REVOX_CHECK(config.in_channels >= 1, "UNet config: 'in_channels' must be an integer >= 1, got ",
              config.in_channels);
  REVOX_CHECK(config.out_channels >= 1,
              "UNet config: 'out_channels' must be an integer >= 1, got ", config.out_channels);
  REVOX_CHECK(!config.widths.empty(), "UNet config: 'widths' must list at least one level");
  REVOX_CHECK(config.widths.size() <= 16, "UNet config: 'widths' has ", config.widths.size(),
              " levels; at most 16 are supported");
  REVOX_CHECK(config.expand_ratio >= 1,
              "UNet config: 'expand_ratio' must be an integer >= 1, got ", config.expand_ratio);
  REVOX_CHECK(config.blocks_per_level >= 1,
              "UNet config: 'blocks_per_level' must be an integer >= 1, got ",
              config.blocks_per_level);
  REVOX_CHECK(config.decoder_blocks >= 0,
              "UNet config: 'decoder_blocks' must be an integer >= 0, got ",
              config.decoder_blocks);
  REVOX_CHECK(config.num_groups >= 1, "UNet config: 'num_groups' must be an integer >= 1, got ",
              config.num_groups);
  REVOX_CHECK(config.block == "mbconv" || config.block == "standard",
              "UNet config: 'block' must be \"mbconv\" or \"standard\", got \"", config.block,
              "\"");
  REVOX_CHECK(config.decoder_memory == "lean" || config.decoder_memory == "stored",
              "UNet config: 'decoder_memory' must be \"lean\" or \"stored\", got \"",
              config.decoder_memory, "\"");
  REVOX_CHECK(config.block_memory == "lean" || config.block_memory == "stored",
              "UNet config: 'block_memory' must be \"lean\" or \"stored\", got \"",
              config.block_memory, "\"");
  const index_t max_heads = config.levels() >= 2 ? config.levels() - 2 : 0;
  REVOX_CHECK(config.deep_supervision >= 0 && config.deep_supervision <= max_heads,
              "UNet config: 'deep_supervision' must be an integer in [0, levels - 2] = [0, ",
              max_heads, "] (one head per decoder level below full resolution, the deepest "
              "excluded), got ", config.deep_supervision);
  for (std::size_t i = 0; i < config.widths.size(); ++i) {
    const index_t width = config.widths[i];
    REVOX_CHECK(width >= 2 && width % 2 == 0, "UNet config: 'widths[", i,
                "]' must be an even integer >= 2 (the reversible blocks split channels into "
                "halves), got ", width);
    REVOX_CHECK((width / 2) % config.num_groups == 0, "UNet config: level ", i, " width ",
                width, ": its half (", width / 2, ") must be divisible by 'num_groups' (",
                config.num_groups, ")");
  }
  const bool size_given = config.input_size != std::array<index_t, 3>{0, 0, 0};
  if (size_given) {
    const char* axes[3] = {"D", "H", "W"};
    for (std::size_t a = 0; a < 3; ++a) {
      const index_t extent = config.input_size[a];
      REVOX_CHECK(extent >= 1 && extent % config.size_divisor() == 0, "UNet config: ",
                  "'input_size' ", axes[a], " (", extent, ") must be a positive multiple of ",
                  config.size_divisor(), " (", config.levels(), " levels)");
    }
  }
}

inline nlohmann::json to_json(const UNetConfig& config) {
  nlohmann::json j;
  j["in_channels"] = config.in_channels;
  j["out_channels"] = config.out_channels;
  j["widths"] = config.widths;
  j["expand_ratio"] = config.expand_ratio;
  j["blocks_per_level"] = config.blocks_per_level;
  j["decoder_blocks"] = config.decoder_blocks;
  j["num_groups"] = config.num_groups;
  j["block"] = config.block;
  j["reversible"] = config.reversible;
  j["decoder_memory"] = config.decoder_memory;
  j["block_memory"] = config.block_memory;
  if (config.input_size != std::array<index_t, 3>{0, 0, 0}) j["input_size"] = config.input_size;
  if (config.deep_supervision > 0) j["deep_supervision"] = config.deep_supervision;
  return j;
}

inline std::vector<std::string> unet_preset_names() {
  return {"baseline", "mbconv-base", "mbconv-deeper", "mbconv-wider", "small", "tiny"};
}

inline UNetConfig unet_preset(const std::string& name) {
  UNetConfig c;
  // The paper's networks are for the paper's full-size inputs, where memory decides: lean.
  const bool paper = name == "baseline" || name == "mbconv-base" || name == "mbconv-deeper" ||
                     name == "mbconv-wider";
  if (paper) {
    c.decoder_memory = "lean";
    c.block_memory = "lean";
  }
  if (name == "baseline") {
    c.block = "standard";
    c.widths = {60, 120, 180, 240, 480};
    c.num_groups = 10;
    c.input_size = {160, 256, 256};
  } else if (name == "mbconv-base") {
    c.widths = {30, 60, 120, 180, 240};
    c.expand_ratio = 2;
    c.num_groups = 5;
    c.input_size = {160, 256, 256};
  } else if (name == "mbconv-deeper") {
    c.widths = {30, 60, 120, 180, 240, 480};
    c.expand_ratio = 2;
    c.num_groups = 5;
    c.input_size = {128, 128, 128};
  } else if (name == "mbconv-wider") {
    c.widths = {30, 60, 120, 180, 240};
    c.expand_ratio = 8;
    c.num_groups = 5;
    c.input_size = {128, 128, 128};
  } else if (name == "small") {
    c.widths = {16, 32, 64, 128};
    c.num_groups = 4;
    c.input_size = {32, 32, 32};
  } else if (name == "tiny") {
    c.widths = {8, 16, 32};
    c.num_groups = 2;
    c.input_size = {16, 16, 16};
  } else {
    std::string valid;
    for (const auto& n : unet_preset_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw Error("UNet config: unknown preset '" + name + "'; valid presets: " + valid);
  }
  validate_unet_config(c);
  return c;
}

namespace detail {

// Configs nest a few levels. Deeper JSON is rejected first, without recursion: nlohmann's
// copy and dump() recurse once per level, so 100000 nested arrays overflowed the stack
// (found by fuzz/fuzz_config.cpp). Throws revox::Error naming `what`.
inline constexpr int kMaxConfigJsonDepth = 32;
inline void check_json_depth(const nlohmann::json& j, const char* what) {
  std::vector<std::pair<const nlohmann::json*, int>> pending{{&j, 0}};
  while (!pending.empty()) {
    const auto [value, depth] = pending.back();
    pending.pop_back();
    if (!value->is_structured()) continue;
    REVOX_CHECK(depth < kMaxConfigJsonDepth, what, ": JSON nested more than ",
                kMaxConfigJsonDepth, " levels deep");
    for (const auto& child : *value) pending.emplace_back(&child, depth + 1);
  }
}

inline index_t unet_json_integer(const nlohmann::json& value, const char* key, index_t minimum) {
  REVOX_CHECK(value.is_number_integer(), "UNet config: '", key, "' must be an integer >= ",
              minimum, ", got ", value.dump());
  if (value.is_number_unsigned()) {  // nlohmann parses every non-negative integer as unsigned
    REVOX_CHECK(value.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX),
                "UNet config: '", key, "' is too large: ", value.dump());
  }
  const auto v = value.get<std::int64_t>();
  REVOX_CHECK(v >= minimum, "UNet config: '", key, "' must be an integer >= ", minimum,
              ", got ", v);
  return v;
}

}  // namespace detail

// Every key unet_config_from_json accepts, in the order of the JSON description above.
inline const std::vector<std::string>& unet_config_keys() {
  static const std::vector<std::string> keys = {
      "preset",         "in_channels", "out_channels", "widths",         "expand_ratio",
      "blocks_per_level", "decoder_blocks", "num_groups", "block", "reversible",
      "decoder_memory", "block_memory", "input_size", "deep_supervision"};
  return keys;
}

inline UNetConfig unet_config_from_json(const nlohmann::json& j) {
  detail::check_json_depth(j, "UNet config");
  REVOX_CHECK(j.is_object(), "UNet config: expected a JSON object, got ", j.type_name());
  const std::vector<std::string>& keys = unet_config_keys();
  for (const auto& item : j.items()) {
    bool known = false;
    for (const auto& key : keys) known = known || item.key() == key;
    if (!known) {
      std::string valid;
      for (const auto& key : keys) valid += (valid.empty() ? "" : ", ") + key;
      throw Error("UNet config: unknown key '" + item.key() + "'; valid keys: " + valid);
    }
  }
  UNetConfig c;
  bool has_preset = false;
  if (j.contains("preset")) {
    REVOX_CHECK(j["preset"].is_string(), "UNet config: 'preset' must be a string, got ",
                j["preset"].dump());
    c = unet_preset(j["preset"].get<std::string>());
    has_preset = true;
  }
  using detail::unet_json_integer;
  if (j.contains("in_channels")) c.in_channels = unet_json_integer(j["in_channels"], "in_channels", 1);
  if (j.contains("out_channels")) {
    c.out_channels = unet_json_integer(j["out_channels"], "out_channels", 1);
  }
  if (j.contains("expand_ratio")) {
    c.expand_ratio = unet_json_integer(j["expand_ratio"], "expand_ratio", 1);
  }
  if (j.contains("blocks_per_level")) {
    c.blocks_per_level = unet_json_integer(j["blocks_per_level"], "blocks_per_level", 1);
  }
  if (j.contains("decoder_blocks")) {
    c.decoder_blocks = unet_json_integer(j["decoder_blocks"], "decoder_blocks", 0);
  }
  if (j.contains("num_groups")) c.num_groups = unet_json_integer(j["num_groups"], "num_groups", 1);
  if (j.contains("widths")) {
    const auto& widths = j["widths"];
    REVOX_CHECK(widths.is_array() && !widths.empty(),
                "UNet config: 'widths' must be a non-empty array of integers, got ",
                widths.dump());
    c.widths.clear();
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string key = "widths[" + std::to_string(i) + "]";
      c.widths.push_back(unet_json_integer(widths[i], key.c_str(), 2));
    }
  } else {
    REVOX_CHECK(has_preset, "UNet config: 'widths' is required (or name a 'preset')");
  }
  if (!j.contains("num_groups")) {
    REVOX_CHECK(has_preset, "UNet config: 'num_groups' is required (or name a 'preset')");
  }
  if (j.contains("block")) {
    REVOX_CHECK(j["block"].is_string(),
                "UNet config: 'block' must be the string \"mbconv\" or \"standard\", got ",
                j["block"].dump());
    c.block = j["block"].get<std::string>();
  }
  if (j.contains("reversible")) {
    REVOX_CHECK(j["reversible"].is_boolean(), "UNet config: 'reversible' must be true or false, got ",
                j["reversible"].dump());
    c.reversible = j["reversible"].get<bool>();
  }
  if (j.contains("decoder_memory")) {
    REVOX_CHECK(j["decoder_memory"].is_string(),
                "UNet config: 'decoder_memory' must be the string \"lean\" or \"stored\", got ",
                j["decoder_memory"].dump());
    c.decoder_memory = j["decoder_memory"].get<std::string>();
  }
  if (j.contains("block_memory")) {
    REVOX_CHECK(j["block_memory"].is_string(),
                "UNet config: 'block_memory' must be the string \"lean\" or \"stored\", got ",
                j["block_memory"].dump());
    c.block_memory = j["block_memory"].get<std::string>();
  }
  if (j.contains("input_size")) {
    const auto& size = j["input_size"];
    REVOX_CHECK(size.is_array() && size.size() == 3,
                "UNet config: 'input_size' must be an array of 3 integers [D, H, W], got ",
                size.dump());
    for (std::size_t a = 0; a < 3; ++a) {
      const std::string key = "input_size[" + std::to_string(a) + "]";
      c.input_size[a] = unet_json_integer(size[a], key.c_str(), 1);
    }
  }
  if (j.contains("deep_supervision")) {
    c.deep_supervision = unet_json_integer(j["deep_supervision"], "deep_supervision", 0);
  }
  validate_unet_config(c);
  return c;
}

}  // namespace revox
