// The trainer's data pipeline at scale (examples/brats/training_data.hpp): training from a
// preprocessed dataset gives the same weights as from the raw folder, the background loader
// changes nothing whatever its number of workers, and a tiny case cache forces evictions and
// its own counters stay under the limit.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

#include "support/brats_runs.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::brats;
using namespace revox_test;

namespace {

// The tensors (weights and Adam state) of a checkpoint, without its metadata (which holds
// the config, where loader settings differ).
std::map<std::string, io::SafeTensor> tensors_of(const fs::path& file) {
  return io::read_safetensors(file).tensors;
}

void check_same_tensors(const fs::path& a, const fs::path& b) {
  const auto ta = tensors_of(a), tb = tensors_of(b);
  REQUIRE(ta.size() == tb.size());
  for (const auto& [name, tensor] : ta) {
    INFO(name);
    REQUIRE(tb.count(name) == 1);
    CHECK(tensor.bytes == tb.at(name).bytes);
  }
}

}  // namespace

TEST_CASE("train data: preprocessed == raw, and 0, 1 and 3 loader workers give identical "
          "weights, a tiny cache evicts and stays under its limit", "[brats][data]") {
  const revox_test::TempDir scratch("revox_test_brats_data_same");
  const fs::path raw = scratch.path() / "raw", pre = scratch.path() / "pre";
  write_phantoms(raw, 5);
  data::PreprocessOptions options;
  options.threads = 2;
  revox_test::preprocess_dataset(raw, pre, options);

  const TrainResult from_raw = train(raw, scratch.path() / "raw_run", config_with({"loader.workers=0"}));
  CHECK_FALSE(from_raw.preprocessed);
  for (int workers : {0, 1, 3}) {
    INFO(workers << " loader workers");
    const fs::path run = scratch.path() / ("pre_run_" + std::to_string(workers));
    // cache_mb=1: these cases (about 40 kB each) all fit; eviction is the next test's.
    const TrainResult r = train(pre, run, config_with({"loader.workers=" + std::to_string(workers),
                                                       "loader.depth=3", "loader.cache_mb=1"}));
    CHECK(r.preprocessed);
    check_same_tensors(scratch.path() / "raw_run" / "latest.safetensors", run / "latest.safetensors");
    REQUIRE(r.history.size() == from_raw.history.size());
    for (std::size_t e = 0; e < r.history.size(); ++e) {
      CHECK(r.history[e].loss == from_raw.history[e].loss);
      CHECK(r.history[e].dice == from_raw.history[e].dice);
    }
    CHECK(r.cache_limit_bytes == (1u << 20));
    CHECK(r.cache_peak_cached_bytes <= r.cache_limit_bytes + r.largest_case_bytes);
    CHECK(r.cache_opens >= 5);  // every case mapped at least once (4 training + 1 hold-out)
    // hold-out scores in the original grid: the same file from both runs
    std::ifstream a(scratch.path() / "raw_run" / "holdout_scores.csv"), b(run / "holdout_scores.csv");
    const std::string sa((std::istreambuf_iterator<char>(a)), {}),
        sb((std::istreambuf_iterator<char>(b)), {});
    CHECK(sa == sb);
  }
}

TEST_CASE("train data: a cache smaller than the data evicts, its peaks stay under the limit "
          "plus the cases in use", "[brats][data]") {
  const revox_test::TempDir scratch("revox_test_brats_data_evict");
  const fs::path raw = scratch.path() / "raw", pre = scratch.path() / "pre";
  data::PhantomSize size;
  size.width = 72;
  size.height = 72;
  size.depth = 56;  // about 0.9 MB per preprocessed case: a 1 MB cache holds one
  revox_test::write_phantom_dataset(raw, 5, size);
  data::PreprocessOptions options;
  options.threads = 2;
  revox_test::preprocess_dataset(raw, pre, options);
  const data::CaseIndex index = data::read_case_index(pre);
  std::uint64_t largest = 0, total = 0;
  for (const auto& c : index.cases) {
    largest = std::max(largest, c.bytes);
    total += c.bytes;
  }
  REQUIRE(total > 2 * (1u << 20));  // the data is larger than the cache
  const TrainResult r = train(pre, scratch.path() / "run",
                              config_with({"loader.workers=2", "loader.cache_mb=1", "epochs=3"}));
  CHECK(r.cache_evictions > 0);
  CHECK(r.cache_peak_cached_bytes <= r.cache_limit_bytes + largest);
  // The cache, the step's case and one per loader worker at most.
  CHECK(r.cache_peak_live_bytes <= r.cache_limit_bytes + largest + 3 * largest);
  CHECK(r.cache_peak_live_bytes < total);
}
