// The trainer's data pipeline at scale (examples/brats/training_data.hpp): training from a
// preprocessed dataset gives the same weights as from the raw folder, the background loader
// changes nothing whatever its number of workers, a tiny case cache forces evictions and its
// own counters stay under the limit, and stale or damaged data is named before a step runs.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/brats/run_config.hpp"
#include "../examples/brats/trainer.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/phantom.hpp"
#include "revox/io/safetensors.hpp"

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::brats;

namespace {


void write_phantoms(const fs::path& raw, int cases) {
  data::PhantomSize size;
  size.width = 24;
  size.height = 24;
  size.depth = 16;
  data::write_phantom_dataset(raw, cases, size);
}

nlohmann::json config_with(const std::vector<std::string>& sets) {
  nlohmann::json c = training_preset("tiny");
  apply_set(c, "epochs=2");
  apply_set(c, "holdout_count=1");
  apply_set(c, "augment.elastic_sigma=2");
  for (const auto& s : sets) apply_set(c, s);
  return parse_run_config(c).json;
}

TrainResult train(const fs::path& data, const fs::path& out, const nlohmann::json& config) {
  std::ostringstream sink;
  TrainOptions options;
  options.data = data;
  options.out = out;
  options.config = config;
  options.threads = 2;
  options.quiet = true;
  return run_training(options, sink);
}

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
  data::preprocess_dataset(raw, pre, options);

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
  data::write_phantom_dataset(raw, 5, size);
  data::PreprocessOptions options;
  options.threads = 2;
  data::preprocess_dataset(raw, pre, options);
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

TEST_CASE("train data: stale, damaged or oversized data is refused before the first step, "
          "naming the file", "[brats][data]") {
  const revox_test::TempDir scratch("revox_test_brats_data_refuse");
  const fs::path raw = scratch.path() / "raw", pre = scratch.path() / "pre";
  write_phantoms(raw, 4);
  data::PreprocessOptions options;
  data::preprocess_dataset(raw, pre, options);
  const data::CaseIndex index = data::read_case_index(pre);

  // A changed source file: the case is stale; the message says how to refresh it.
  const std::string source = index.cases[0].sources[1].path;
  fs::last_write_time(source, fs::last_write_time(source) + std::chrono::seconds(3));
  CHECK_THROWS_WITH(train(pre, scratch.path() / "r1", config_with({})),
                    Catch::Contains(source) && Catch::Contains("changed") &&
                        Catch::Contains("revox-brats preprocess"));
  CHECK_FALSE(fs::exists(scratch.path() / "r1"));
  data::preprocess_dataset(raw, pre, options);  // redoes that case only

  // A damaged (truncated) case file.
  const fs::path file = pre / "cases" / index.cases[2].file;
  const auto bytes = fs::file_size(file);
  fs::resize_file(file, bytes - 10);
  CHECK_THROWS_WITH(train(pre, scratch.path() / "r2", config_with({})),
                    Catch::Contains(file.string()) && Catch::Contains("damaged"));
  data::preprocess_dataset(raw, pre, options);

  // Raw sources gone after preprocessing: a note, and training goes on from the copies.
  fs::remove_all(raw / index.cases[3].id);
  std::ostringstream log;
  TrainOptions o;
  o.data = pre;
  o.out = scratch.path() / "r3";
  o.config = config_with({"epochs=1"});
  o.threads = 2;
  run_training(o, log);
  CHECK_THAT(log.str(), Catch::Contains("no longer exist"));

  // A raw folder larger than the memory allowed for raw data: refused with the commands.
  ::setenv("REVOX_RAW_LIMIT_BYTES", "1000", 1);
  CHECK_THROWS_WITH(train(raw, scratch.path() / "r4", config_with({})),
                    Catch::Contains("revox-brats preprocess --data") &&
                        Catch::Contains("raw cases"));
  ::unsetenv("REVOX_RAW_LIMIT_BYTES");
  CHECK_FALSE(fs::exists(scratch.path() / "r4"));
}

TEST_CASE("train data: foreground \"regions\" centres patches on every region present, ET "
          "included", "[brats][data]") {
  // One case with a large WT (30^3 voxels), a TC of two voxels (one of them the ET voxel)
  // and an ET of one voxel. With "regions" and probability 1 each region is the centre a
  // third of the time: ET 1/3, TC's ET voxel 1/6, plus WT centres near it, about 0.51 of
  // the 8^3 patches hold ET; with "wt" only WT centres within 4 voxels of it, about 2%.
  data::LoadedCase c;
  c.id = "fg";
  c.image = Tensor<float>(Shape5{1, 4, 40, 40, 40});
  Rng rng(5);
  for (index_t i = 0; i < c.image.numel(); ++i) c.image[i] = static_cast<float>(1 + rng.uniform01());
  auto labels = Tensor<std::uint8_t>::zeros(Shape5{1, 1, 40, 40, 40});
  for (index_t d = 5; d < 35; ++d) {
    for (index_t h = 5; h < 35; ++h) {
      for (index_t w = 5; w < 35; ++w) labels.view().at(0, 0, d, h, w) = 2;
    }
  }
  labels.view().at(0, 0, 30, 30, 30) = 4;  // ET: one voxel, far from the centre
  labels.view().at(0, 0, 10, 10, 10) = 1;
  c.labels = std::move(labels);
  const data::PreparedCase p = data::prepare_case(std::move(c), 0);
  RunConfig config = parse_run_config(config_with({"tumor_probability=1",
                                                   "augment.enabled=false",
                                                   "patch_size=[8,8,8]"}));
  auto et_share = [&](const std::string& mode) {
    config.foreground = mode;
    int with_et = 0;
    for (std::uint64_t s = 0; s < 300; ++s) {
      Rng r(s);
      const Sample sample = make_sample(config, p.info, *p.arrays, r);
      const float* et = sample.targets.data() + 2 * sample.targets.shape().spatial();
      bool any = false;
      for (index_t i = 0; i < sample.targets.shape().spatial(); ++i) any = any || et[i] > 0.5f;
      with_et += any;
    }
    return with_et / 300.0;
  };
  const double regions = et_share("regions"), wt = et_share("wt");
  CHECK(regions > 0.4);
  CHECK(regions < 0.62);
  CHECK(wt < 0.06);
}
