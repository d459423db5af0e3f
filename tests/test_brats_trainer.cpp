// The revox-brats training loop (examples/brats/trainer.hpp) end to end at tiny sizes: exact
// --resume and runs refused before they start.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <system_error>

#include "support/brats_runs.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::brats;
using namespace revox_test;

TEST_CASE("trainer: an interrupted and resumed run repeats the uninterrupted one exactly",
          "[brats][trainer]") {
  const fs::path full_dir = fresh_dir("full"), part_dir = fresh_dir("part");
  std::ostringstream sink;
  TrainOptions full;
  full.data = phantom_data();
  full.out = full_dir;
  full.config = tiny_config();
  full.threads = 2;
  full.quiet = true;
  const TrainResult a = run_training(full, sink);

  TrainOptions part = full;
  part.out = part_dir;
  part.stop_after = 2;
  const TrainResult first = run_training(part, sink);
  REQUIRE(first.history.size() == 2);
  TrainOptions resume = full;
  resume.out = part_dir;
  resume.config.reset();
  resume.resume = true;
  const TrainResult b = run_training(resume, sink);

  REQUIRE(a.history.size() == 3);
  REQUIRE(b.history.size() == 3);
  for (std::size_t e = 0; e < 3; ++e) {
    INFO("epoch " << e + 1);
    CHECK(a.history[e].loss == b.history[e].loss);
    CHECK(a.history[e].dice == b.history[e].dice);
  }
  CHECK(a.best_metric == b.best_metric);
  for (const char* name : {"config.json", "log.csv", "learning_curve.png", "latest.safetensors",
                           "best.safetensors", "split.json", "holdout_scores.csv"}) {
    INFO(name);
    CHECK(fs::exists(part_dir / name));
  }
  // Incompatible config on resume: a clear error naming the key.
  TrainOptions changed = resume;
  changed.sets = {"learning_rate=0.5"};
  CHECK_THROWS_WITH(run_training(changed, sink), Catch::Contains("learning_rate"));
}

TEST_CASE("trainer: a run that fails to start writes nothing into RUN_DIR", "[brats][trainer]") {
  const fs::path dir = fresh_dir("refuse");
  fs::create_directories(dir);
  { std::ofstream(dir / "keep.txt") << "precious"; }
  std::ostringstream sink;
  TrainOptions options;
  options.data = phantom_data();
  options.out = dir;
  options.config = tiny_config();
  options.quiet = true;
  CHECK_THROWS_WITH(run_training(options, sink), Catch::Contains("is not empty"));
  // --resume without a checkpoint, and a damaged checkpoint.
  options.resume = true;
  CHECK_THROWS_WITH(run_training(options, sink), Catch::Contains("no checkpoint"));
  { std::ofstream(dir / "latest.safetensors") << "garbage"; }
  CHECK_THROWS_WITH(run_training(options, sink), Catch::Contains("damaged"));
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  CHECK(files == 2);
  // A bad data folder on a fresh run leaves a new RUN_DIR uncreated.
  const fs::path fresh = fresh_dir("never");
  TrainOptions bad;
  bad.data = fresh_dir("nodata");
  bad.out = fresh;
  bad.config = tiny_config();
  bad.quiet = true;
  CHECK_THROWS(run_training(bad, sink));
  CHECK_FALSE(fs::exists(fresh));
}
