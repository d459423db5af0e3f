// Regression tests for the findings of the fuzz targets in fuzz/ (benchmarks/fuzz.sh): each
// input that once crashed a reader or made it throw something other than revox::Error is a
// fixture in tests/fixtures/fuzz/, and the reader must now reject it with a clear message.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "../examples/brats/run_config.hpp"
#include "revox/core/error.hpp"
#include "revox/io/safetensors.hpp"

namespace {

std::string fixture(const std::string& name) {
  const std::filesystem::path path = std::filesystem::path(REVOX_FIXTURE_DIR) / "fuzz" / name;
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("fuzz regression: --set with a value that is not valid UTF-8 is a revox::Error",
          "[fuzz][brats][config]") {
  // fuzz_config found it: "epochs=\xb6" became the string "\xb6", and the message for a
  // non-integer epochs count called nlohmann's dump(), which threw json type_error 316.
  const std::string assignment = fixture("config_set_invalid_utf8.txt");
  REQUIRE(assignment == "epochs=\xb6");
  nlohmann::json config = revox::brats::training_preset("tiny");
  const nlohmann::json before = config;
  REQUIRE_THROWS_AS(revox::brats::apply_set(config, assignment), revox::Error);
  REQUIRE_THROWS_WITH(revox::brats::apply_set(config, assignment),
                      Catch::Contains("--set 'epochs=") && Catch::Contains("not valid UTF-8"));
  CHECK(config == before);
  // Invalid UTF-8 in a key is rejected the same way, before any key is looked at.
  REQUIRE_THROWS_WITH(revox::brats::apply_set(config, "augment.\xb6=1"),
                      Catch::Contains("not valid UTF-8"));
  // Valid UTF-8 strings still reach the usual checks.
  revox::brats::apply_set(config, "loss=d\xc3\xa9");
  REQUIRE_THROWS_WITH(revox::brats::parse_run_config(config), Catch::Contains("'loss' must be"));
}

TEST_CASE("fuzz regression: a safetensors header nested 200000 levels deep is a revox::Error",
          "[fuzz][safetensors]") {
  // A shape of 200000 nested arrays: its error message called nlohmann's dump(), which
  // recursed once per level and overflowed the stack (found with fuzz_safetensors).
  const std::filesystem::path path = std::filesystem::path(REVOX_FIXTURE_DIR) / "fuzz" /
                                     "safetensors_deep_nesting.safetensors";
  for (int whole = 0; whole < 2; ++whole) {
    const auto read = [&] {
      if (whole == 0) {
        revox::io::read_safetensors_header(path);
      } else {
        revox::io::read_safetensors(path);
      }
    };
    REQUIRE_THROWS_AS(read(), revox::Error);
    REQUIRE_THROWS_WITH(read(), Catch::Contains("safetensors_deep_nesting.safetensors") &&
                                    Catch::Contains("more than 64 levels deep"));
  }
  // Brackets inside strings do not count; 64 levels are still parsed (and rejected later
  // for what they are, here a shape that is not a list of integers).
  const auto dir = std::filesystem::temp_directory_path() / "revox_test_fuzz_regressions";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& header) {
    std::ofstream out(dir / name, std::ios::binary);
    std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header;
    return dir / name;
  };
  const auto strings = write("strings.safetensors",
                             "{\"__metadata__\":{\"k\":\"" + std::string(100, '[') + "\\\"\"}}");
  CHECK(revox::io::read_safetensors_header(strings).metadata.at("k") ==
        std::string(100, '[') + "\"");
  const std::string deep62 = std::string(62, '[') + std::string(62, ']');
  const auto at_limit = write("limit.safetensors",
                              "{\"a\":{\"dtype\":\"F32\",\"shape\":" + deep62 +
                                  ",\"data_offsets\":[0,0]}}");
  REQUIRE_THROWS_WITH(revox::io::read_safetensors_header(at_limit),
                      Catch::Contains("shape entries must be integers"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("fuzz regression: configs nested 100000 levels deep are a revox::Error",
          "[fuzz][brats][config]") {
  // nlohmann's copy and dump() recurse once per level: these inputs overflowed the stack
  // (found with fuzz_config).
  const std::string set = fixture("config_set_deep_nesting.txt");
  REQUIRE(set.size() > 200000);
  nlohmann::json config = revox::brats::training_preset("tiny");
  REQUIRE_THROWS_WITH(revox::brats::apply_set(config, set),
                      Catch::Contains("--set 'epochs'") &&
                          Catch::Contains("nested more than 32 levels deep"));
  const nlohmann::json file = nlohmann::json::parse(fixture("config_deep_nesting.json"));
  REQUIRE_THROWS_WITH(revox::unet_config_from_json(file),
                      Catch::Contains("UNet config: JSON nested more than 32 levels deep"));
  REQUIRE_THROWS_WITH(revox::brats::parse_run_config(file),
                      Catch::Contains("training config: JSON nested more than 32 levels deep"));
  // A key of 100000 parts would build as deep a patch.
  std::string long_key = "epochs";
  for (int i = 0; i < 100000; ++i) long_key += ".a";
  REQUIRE_THROWS_WITH(revox::brats::apply_set(config, long_key + "=1"),
                      Catch::Contains("100001 parts"));
  // 32 levels are fine as far as nesting goes (then rejected for what they are).
  const std::string deep31 = std::string(31, '[') + std::string(31, ']');
  REQUIRE_THROWS_WITH(revox::unet_config_from_json(nlohmann::json::parse(
                          "{\"preset\": \"tiny\", \"widths\": " + deep31 + "}")),
                      Catch::Contains("'widths[0]' must be an integer"));
}
