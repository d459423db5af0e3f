// tests/support/metric_fixtures.hpp — reading the metric fixtures (tests/fixtures/metrics and
// metrics_lesion, written by tests/fixtures/make_metric_fixtures.py and
// make_lesion_fixtures.py): the files of a fixture folder and the label volumes they hold.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"

namespace revox::test {

// The .safetensors files of tests/fixtures/<folder>, sorted.
inline std::vector<std::filesystem::path> fixture_files(const std::string& folder) {
  std::vector<std::filesystem::path> paths;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(REVOX_FIXTURE_DIR) / folder)) {
    if (entry.path().extension() == ".safetensors") paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// The uint8 volume (a mask or a label map) stored under `key`, of rank 5.
inline Tensor<std::uint8_t> load_mask(const io::SafetensorsFile& file, const std::string& key) {
  const auto& t = file.at(key);
  REQUIRE(t.shape.size() == 5);
  Tensor<std::uint8_t> out(Shape5{t.shape[0], t.shape[1], t.shape[2], t.shape[3], t.shape[4]});
  const auto values = t.values<std::uint8_t>();
  std::copy(values.begin(), values.end(), out.data());
  return out;
}

}  // namespace revox::test
