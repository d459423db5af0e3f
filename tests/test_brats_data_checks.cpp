// The trainer's data pipeline (examples/brats/training_data.hpp): stale, damaged or oversized
// data is named before a step runs, and "regions" foreground sampling centres patches on
// every region present.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

#include "support/brats_runs.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::brats;
using namespace revox_test;

TEST_CASE("train data: stale, damaged or oversized data is refused before the first step, "
          "naming the file", "[brats][data]") {
  const revox_test::TempDir scratch("revox_test_brats_data_refuse");
  const fs::path raw = scratch.path() / "raw", pre = scratch.path() / "pre";
  write_phantoms(raw, 4);
  data::PreprocessOptions options;
  revox_test::preprocess_dataset(raw, pre, options);
  const data::CaseIndex index = data::read_case_index(pre);

  // A changed source file: the case is stale; the message says how to refresh it.
  const std::string source = index.cases[0].sources[1].path;
  fs::last_write_time(source, fs::last_write_time(source) + std::chrono::seconds(3));
  CHECK_THROWS_WITH(train(pre, scratch.path() / "r1", config_with({})),
                    Catch::Contains(source) && Catch::Contains("changed") &&
                        Catch::Contains("revox-brats preprocess"));
  CHECK_FALSE(fs::exists(scratch.path() / "r1"));
  revox_test::preprocess_dataset(raw, pre, options);  // redoes that case only

  // A damaged (truncated) case file.
  const fs::path file = pre / "cases" / index.cases[2].file;
  const auto bytes = fs::file_size(file);
  fs::resize_file(file, bytes - 10);
  CHECK_THROWS_WITH(train(pre, scratch.path() / "r2", config_with({})),
                    Catch::Contains(file.string()) && Catch::Contains("damaged"));
  revox_test::preprocess_dataset(raw, pre, options);

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
