// The revox-brats trainer pieces (examples/brats): run config, checkpoints and the training
// loop, including exact --resume.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "../examples/brats/checkpoint.hpp"
#include "../examples/brats/run_config.hpp"
#include "../examples/brats/trainer.hpp"
#include "revox/data/phantom.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::brats;

namespace {

// ctest runs each test case in its own process, possibly at the same time: directories are
// per process, and removed when the process ends.
struct ScratchDirs {
  std::vector<fs::path> made;
  ~ScratchDirs() {
    std::error_code ignored;
    for (const auto& dir : made) fs::remove_all(dir, ignored);
  }
};

fs::path fresh_dir(const std::string& name) {
  static ScratchDirs scratch;
  const fs::path dir = fs::temp_directory_path() /
                       ("revox_test_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  scratch.made.push_back(dir);
  return dir;
}

const fs::path& phantom_data() {
  static const fs::path root = [] {
    const fs::path dir = fresh_dir("data");
    data::PhantomSize size;
    size.width = 24;
    size.height = 24;
    size.depth = 16;
    data::write_phantom_dataset(dir, 4, size);
    return dir;
  }();
  return root;
}

nlohmann::json tiny_config() {
  nlohmann::json c = training_preset("tiny");
  apply_set(c, "epochs=3");
  apply_set(c, "holdout_count=1");
  apply_set(c, "augment.elastic_sigma=2");
  return parse_run_config(c).json;
}

}  // namespace

TEST_CASE("run config: presets, --set with dotted keys, unknown keys rejected by name",
          "[brats][run_config]") {
  nlohmann::json c = training_preset("small");
  apply_set(c, "epochs=7");
  apply_set(c, "model.expand_ratio=4");
  apply_set(c, "augment.enabled=false");
  apply_set(c, "loss=bce_dice");
  CHECK(parse_run_config(c).model.decoder_memory == "stored");  // the small preset's
  apply_set(c, "model.decoder_memory=lean");
  apply_set(c, "model.block_memory=lean");
  const RunConfig r = parse_run_config(c);
  CHECK(r.epochs == 7);
  CHECK(r.model.expand_ratio == 4);
  CHECK(r.model.decoder_memory == "lean");
  CHECK(r.model.block_memory == "lean");
  CHECK_FALSE(r.augment_enabled);
  CHECK(r.loss == "bce_dice");
  CHECK(parse_run_config(training_preset("mbconv-base")).holdout_count == 40);
  CHECK_THROWS_WITH(apply_set(c, "bogus=1"), Catch::Contains("unknown key 'bogus'"));
  CHECK_THROWS_WITH(apply_set(c, "augment.bogus=1"), Catch::Contains("unknown key 'augment.bogus'"));
  CHECK_THROWS_WITH(apply_set(c, "model.bogus=1"), Catch::Contains("unknown key 'model.bogus'"));
  CHECK_THROWS_WITH(apply_set(c, "model.decoder_memory=tiny"),
                    Catch::Contains("'decoder_memory' must be \"lean\" or \"stored\""));
  CHECK_THROWS_WITH(apply_set(c, "epochs"), Catch::Contains("expected key=value"));
  CHECK_THROWS_WITH(training_preset("nope"), Catch::Contains("unknown preset 'nope'"));
  nlohmann::json bad = training_preset("small");
  bad["patch_size"] = {30, 32, 32};
  CHECK_THROWS_WITH(parse_run_config(bad), Catch::Contains("patch_size"));
  bad = training_preset("small");
  bad["loss"] = "l2";
  CHECK_THROWS_WITH(parse_run_config(bad), Catch::Contains("'loss'"));
}

TEST_CASE("checkpoint: round trip of weights and Adam state; clear errors",
          "[brats][checkpoint]") {
  const fs::path dir = fresh_dir("checkpoint");
  fs::create_directories(dir);
  const nlohmann::json config = tiny_config();
  UNet<float> net(unet_config_from_json(config["model"]));
  Parameters<float> params(net);
  Rng rng(3);
  net.reset_parameters(rng);
  optim::Adam<float> adam(params);
  fill_uniform(params.grads(), rng, -1, 1);
  adam.step();
  const fs::path file = dir / "ck.safetensors";
  write_checkpoint(file, params, &adam, config, 5, 1, 0.5);

  const Checkpoint ck = read_checkpoint(file);
  CHECK(ck.epoch == 5);
  CHECK(ck.step == 1);
  CHECK(ck.best_metric == 0.5);
  CHECK(ck.config == config);
  CHECK(model_config_of(ck) == net.config());
  CHECK(ck.file.contains("model.head.weight"));
  CHECK(ck.file.contains("optimizer.exp_avg.head.weight"));

  UNet<float> other(net.config());
  Parameters<float> other_params(other);
  optim::Adam<float> other_adam(other_params);
  load_model_weights(ck, other_params);
  load_optimizer_state(ck, other_params, other_adam);
  for (index_t i = 0; i < params.size(); ++i) REQUIRE(other_params.values()[i] == params.values()[i]);
  CHECK(other_adam.steps() == 1);

  // A different model: shape mismatch, named.
  UNetConfig wider = net.config();
  wider.widths = {12, 16, 32};
  wider.num_groups = 2;
  UNet<float> wide(wider);
  Parameters<float> wide_params(wide);
  CHECK_THROWS_WITH(load_model_weights(ck, wide_params),
                    Catch::Contains("model weight tensors do not fit the configured model") &&
                        Catch::Contains("tensor 'model.encoders.0.blocks.0.g.project.weight': "
                                        "shape [4, 8, 1, 1, 1] in the file, [6, 12, 1, 1, 1] "
                                        "expected"));
  // A missing optimizer tensor is named too.
  auto without = ck.file.tensors;
  without.erase("optimizer.exp_avg.head.weight");
  const fs::path incomplete = dir / "incomplete.safetensors";
  io::write_safetensors(incomplete, without, ck.file.metadata);
  const Checkpoint partial = read_checkpoint(incomplete);
  CHECK_THROWS_WITH(load_optimizer_state(partial, other_params, other_adam),
                    Catch::Contains(incomplete.string()) &&
                        Catch::Contains("missing tensor 'optimizer.exp_avg.head.weight'"));

  // Damaged file.
  const fs::path damaged = dir / "damaged.safetensors";
  fs::copy_file(file, damaged);
  fs::resize_file(damaged, 100);
  CHECK_THROWS_WITH(read_checkpoint(damaged), Catch::Contains("damaged"));
  // A safetensors file that is not a revox checkpoint.
  const fs::path foreign = dir / "foreign.safetensors";
  io::write_safetensors(foreign, {{"x", io::make_safetensor<float>({1}, {1.0f})}});
  CHECK_THROWS_WITH(read_checkpoint(foreign), Catch::Contains("not a revox checkpoint"));
  CHECK_THROWS_WITH(read_checkpoint(dir / "missing.safetensors"), Catch::Contains("no such file"));
}

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
