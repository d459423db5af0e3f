// fuzz/fuzz_config.cpp — libFuzzer target for the JSON configs: the U-Net config
// (include/revox/models/unet_config.hpp) and revox-brats' training config
// (examples/brats/run_config.hpp: parse_run_config, apply_set).
//
// Input: text. As JSON (nlohmann::json::parse's own exceptions, e.g. a syntax error or a
// number too large, are expected: revox-brats turns them into a message), it goes to
// unet_config_from_json and parse_run_config. As a `--set key=value` assignment, it is applied to the "tiny" training preset, which is
// then resolved. revox::Error is the expected outcome for bad input. A config that is
// accepted must come back unchanged through to_json / the resolved JSON. Anything else is a
// finding (see fuzz_common.hpp).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "revox/models/unet_config.hpp"
#include "run_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  nlohmann::json j;
  bool parsed = true;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    parsed = false;  // revox-brats reports it as "--config '...' is not valid JSON: ..."
  }
  if (parsed) {
    revox_fuzz::expect_only_revox_errors("unet_config_from_json", [&] {
      const revox::UNetConfig config = revox::unet_config_from_json(j);
      if (revox::unet_config_from_json(revox::to_json(config)) != config) {
        revox_fuzz::finding("UNetConfig does not round-trip through to_json");
      }
    });
    revox_fuzz::expect_only_revox_errors("parse_run_config", [&] {
      const auto config = revox::brats::parse_run_config(j);
      if (revox::brats::parse_run_config(config.json).json != config.json) {
        revox_fuzz::finding("a resolved training config changes when resolved again");
      }
    });
  }

  revox_fuzz::expect_only_revox_errors("apply_set", [&] {
    nlohmann::json config = revox::brats::training_preset("tiny");
    revox::brats::apply_set(config, text);
    revox::brats::parse_run_config(config);
  });
  revox_fuzz::expect_only_revox_errors("unet_preset", [&] { revox::unet_preset(text); });
  return 0;
}
