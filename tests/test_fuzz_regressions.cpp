// Regression tests for the findings of the fuzz targets in fuzz/ (benchmarks/fuzz.sh): each
// input that once crashed a reader or made it throw something other than revox::Error is a
// fixture in tests/fixtures/fuzz/, and the reader must now reject it with a clear message.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "../examples/brats/run_config.hpp"
#include "revox/core/error.hpp"

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
