// The BraTS trainer tests' shared setup: scratch folders, a small phantom dataset made once
// per process, the tiny training config and a quiet training run (the test_brats_*.cpp files).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../examples/brats/run_config.hpp"
#include "revox/data/phantom.hpp"
#include "brats_training.hpp"

namespace revox_test {

namespace fs = std::filesystem;

// ctest runs each test case in its own process, possibly at the same time: directories are
// per process, and removed when the process ends.
struct ScratchDirs {
  std::vector<fs::path> made;
  ~ScratchDirs() {
    std::error_code ignored;
    for (const auto& dir : made) fs::remove_all(dir, ignored);
  }
};

inline fs::path fresh_dir(const std::string& name) {
  static ScratchDirs scratch;
  const fs::path dir = fs::temp_directory_path() /
                       ("revox_test_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  scratch.made.push_back(dir);
  return dir;
}

inline const fs::path& phantom_data() {
  static const fs::path root = [] {
    const fs::path dir = fresh_dir("data");
    revox::data::PhantomSize size;
    size.width = 24;
    size.height = 24;
    size.depth = 16;
    revox_test::write_phantom_dataset(dir, 4, size);
    return dir;
  }();
  return root;
}

inline nlohmann::json tiny_config() {
  nlohmann::json c = revox::brats::training_preset("tiny");
  revox::brats::apply_set(c, "epochs=3");
  revox::brats::apply_set(c, "holdout_count=1");
  revox::brats::apply_set(c, "augment.elastic_sigma=2");
  return revox::brats::parse_run_config(c).json;
}

// The data tests' phantom cases (24 x 24 x 16) and their config: the tiny preset for 2 epochs
// with `sets` applied; `train` runs it quietly on 2 threads.
inline void write_phantoms(const fs::path& raw, int cases) {
  revox::data::PhantomSize size;
  size.width = 24;
  size.height = 24;
  size.depth = 16;
  revox_test::write_phantom_dataset(raw, cases, size);
}

inline nlohmann::json config_with(const std::vector<std::string>& sets) {
  nlohmann::json c = revox::brats::training_preset("tiny");
  revox::brats::apply_set(c, "epochs=2");
  revox::brats::apply_set(c, "holdout_count=1");
  revox::brats::apply_set(c, "augment.elastic_sigma=2");
  for (const auto& s : sets) revox::brats::apply_set(c, s);
  return revox::brats::parse_run_config(c).json;
}

inline revox::brats::TrainResult train(const fs::path& data, const fs::path& out,
                                       const nlohmann::json& config) {
  std::ostringstream sink;
  revox::brats::TrainOptions options;
  options.data = data;
  options.out = out;
  options.config = config;
  options.threads = 2;
  options.quiet = true;
  return revox::brats::run_training(options, sink);
}

}  // namespace revox_test
