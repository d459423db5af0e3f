// Tests for revox/models/unet_config.hpp: JSON round trip, every rejection, presets.
#include <catch2/catch.hpp>

#include <string>

#include "revox/models/unet_config.hpp"

using revox::UNetConfig;
using nlohmann::json;

namespace {

json tiny_json() {
  return json{{"widths", {8, 16, 32}}, {"num_groups", 2}};
}

// Parses `base` with `key` replaced by `value` and expects a revox::Error containing `text`.
void expect_rejected(const std::string& key, const json& value, const std::string& text) {
  json j = tiny_json();
  j[key] = value;
  INFO("key " << key << " = " << value.dump());
  CHECK_THROWS_WITH(revox::unet_config_from_json(j), Catch::Contains(text));
}

}  // namespace

TEST_CASE("unet config: JSON round trip of every preset and a custom config",
          "[unet][config]") {
  for (const auto& name : revox::unet_preset_names()) {
    INFO("preset " << name);
    const UNetConfig preset = revox::unet_preset(name);
    const json j = revox::to_json(preset);
    CHECK(revox::unet_config_from_json(j) == preset);
    CHECK(revox::unet_config_from_json(json::parse(j.dump())) == preset);
  }
  UNetConfig custom;
  custom.in_channels = 2;
  custom.out_channels = 5;
  custom.widths = {12, 24};
  custom.expand_ratio = 3;
  custom.blocks_per_level = 4;
  custom.decoder_blocks = 0;
  custom.num_groups = 3;
  custom.block = "standard";
  custom.reversible = false;
  const UNetConfig back = revox::unet_config_from_json(revox::to_json(custom));
  CHECK(back == custom);
  CHECK_FALSE(revox::to_json(custom).contains("input_size"));  // not given, not written
}

TEST_CASE("unet config: defaults, preset base and overrides", "[unet][config]") {
  const UNetConfig c = revox::unet_config_from_json(tiny_json());
  CHECK(c.in_channels == 4);
  CHECK(c.out_channels == 3);
  CHECK(c.expand_ratio == 2);
  CHECK(c.blocks_per_level == 1);
  CHECK(c.decoder_blocks == 1);
  CHECK(c.block == "mbconv");
  CHECK(c.reversible);
  CHECK(c.decoder_memory == "stored");  // also what a config written before the key existed gets
  CHECK(c.block_memory == "stored");
  // The paper presets are lean; small and tiny keep the faster stored default.
  for (const char* preset : {"baseline", "mbconv-base", "mbconv-deeper", "mbconv-wider"}) {
    INFO(preset);
    CHECK(revox::unet_preset(preset).decoder_memory == "lean");
    CHECK(revox::unet_preset(preset).block_memory == "lean");
  }
  CHECK(revox::unet_preset("small").decoder_memory == "stored");
  CHECK(revox::unet_preset("tiny").block_memory == "stored");
  CHECK(c.levels() == 3);
  CHECK(c.size_divisor() == 4);

  const UNetConfig o = revox::unet_config_from_json(
      json{{"preset", "mbconv-base"}, {"reversible", false}, {"blocks_per_level", 2},
           {"decoder_memory", "stored"}, {"block_memory", "stored"}});
  UNetConfig expected = revox::unet_preset("mbconv-base");
  expected.reversible = false;
  expected.decoder_memory = "stored";  // the preset's "lean", overridden
  expected.block_memory = "stored";
  expected.blocks_per_level = 2;
  CHECK(o == expected);
}

TEST_CASE("unet config: rejects unknown keys, wrong types and bad values", "[unet][config]") {
  CHECK_THROWS_WITH(revox::unet_config_from_json(json::array()),
                    Catch::Contains("expected a JSON object"));
  {
    json j = tiny_json();
    j["widht"] = 3;
    CHECK_THROWS_WITH(revox::unet_config_from_json(j),
                      Catch::Contains("unknown key 'widht'") && Catch::Contains("widths"));
  }
  CHECK_THROWS_WITH(revox::unet_config_from_json(json{{"num_groups", 2}}),
                    Catch::Contains("'widths' is required"));
  CHECK_THROWS_WITH(revox::unet_config_from_json(json{{"widths", {8}}}),
                    Catch::Contains("'num_groups' is required"));

  expect_rejected("expand_ratio", 0,
                  "UNet config: 'expand_ratio' must be an integer >= 1, got 0");
  expect_rejected("expand_ratio", 2.5, "'expand_ratio' must be an integer");
  expect_rejected("expand_ratio", "2", "'expand_ratio' must be an integer");
  expect_rejected("in_channels", 0, "'in_channels' must be an integer >= 1, got 0");
  expect_rejected("in_channels", -3, "'in_channels' must be an integer >= 1, got -3");
  expect_rejected("out_channels", true, "'out_channels' must be an integer");
  expect_rejected("blocks_per_level", 0, "'blocks_per_level' must be an integer >= 1");
  expect_rejected("decoder_blocks", -1, "'decoder_blocks' must be an integer >= 0, got -1");
  expect_rejected("num_groups", 0, "'num_groups' must be an integer >= 1, got 0");
  expect_rejected("num_groups", 3, "level 0 width 8: its half (4) must be divisible by "
                                   "'num_groups' (3)");
  expect_rejected("widths", json::array(), "'widths' must be a non-empty array");
  expect_rejected("widths", 8, "'widths' must be a non-empty array");
  expect_rejected("widths", {8, 15}, "'widths[1]' must be an even integer >= 2");
  expect_rejected("widths", {8, 1}, "'widths[1]' must be an integer >= 2, got 1");
  expect_rejected("widths", {8, "16"}, "'widths[1]' must be an integer");
  expect_rejected("block", "mbconf", "'block' must be \"mbconv\" or \"standard\", got \"mbconf\"");
  expect_rejected("block", 1, "'block' must be the string");
  expect_rejected("reversible", 1, "'reversible' must be true or false, got 1");
  expect_rejected("decoder_memory", "fast",
                  "'decoder_memory' must be \"lean\" or \"stored\", got \"fast\"");
  expect_rejected("decoder_memory", false, "'decoder_memory' must be the string");
  expect_rejected("block_memory", "none",
                  "'block_memory' must be \"lean\" or \"stored\", got \"none\"");
  expect_rejected("block_memory", 1, "'block_memory' must be the string");
  expect_rejected("input_size", {16, 16}, "'input_size' must be an array of 3 integers");
  expect_rejected("input_size", {16, 0, 16}, "'input_size[1]' must be an integer >= 1, got 0");
  expect_rejected("input_size", {16, 18, 16},
                  "'input_size' H (18) must be a positive multiple of 4 (3 levels)");
  expect_rejected("preset", 3, "'preset' must be a string");
  expect_rejected("preset", "huge", "unknown preset 'huge'");
}

TEST_CASE("unet config: presets are valid and unknown names list the valid ones",
          "[unet][config]") {
  const auto names = revox::unet_preset_names();
  REQUIRE(names.size() == 6);
  for (const auto& name : names) {
    INFO("preset " << name);
    const UNetConfig c = revox::unet_preset(name);
    CHECK_NOTHROW(revox::validate_unet_config(c));
    for (revox::index_t extent : c.input_size) CHECK(extent % c.size_divisor() == 0);
  }
  CHECK(revox::unet_preset("baseline").block == "standard");
  CHECK(revox::unet_preset("baseline").widths == std::vector<revox::index_t>{60, 120, 180, 240, 480});
  CHECK(revox::unet_preset("mbconv-base").widths ==
        std::vector<revox::index_t>{30, 60, 120, 180, 240});
  CHECK(revox::unet_preset("mbconv-deeper").widths.size() == 6);
  CHECK(revox::unet_preset("mbconv-wider").expand_ratio == 8);
  CHECK(revox::unet_preset("mbconv-base").input_size == std::array<revox::index_t, 3>{160, 256, 256});
  CHECK(revox::unet_preset("mbconv-wider").input_size == std::array<revox::index_t, 3>{128, 128, 128});
  CHECK_THROWS_WITH(revox::unet_preset("MBConv-Base"),
                    Catch::Contains("unknown preset 'MBConv-Base'") &&
                        Catch::Contains("baseline, mbconv-base, mbconv-deeper, mbconv-wider, "
                                        "small, tiny"));
}

TEST_CASE("unet config: deep_supervision, written only when on", "[unet][config][deep_supervision]") {
  const UNetConfig plain = revox::unet_preset("small");
  CHECK(plain.deep_supervision == 0);
  CHECK_FALSE(revox::to_json(plain).contains("deep_supervision"));
  json j = revox::to_json(plain);
  j["deep_supervision"] = 2;
  const UNetConfig heads = revox::unet_config_from_json(j);
  CHECK(heads.deep_supervision == 2);
  CHECK(heads != plain);
  CHECK(revox::to_json(heads)["deep_supervision"] == 2);
  CHECK(revox::unet_config_from_json(revox::to_json(heads)) == heads);
  j["deep_supervision"] = 3;  // small has 4 levels: heads on decoder levels 1 and 2 at most
  CHECK_THROWS_WITH(revox::unet_config_from_json(j),
                    Catch::Contains("'deep_supervision' must be an integer in [0, levels - 2] = "
                                    "[0, 2]"));
  j["deep_supervision"] = -1;
  CHECK_THROWS_WITH(revox::unet_config_from_json(j),
                    Catch::Contains("'deep_supervision' must be an integer >= 0, got -1"));
}
