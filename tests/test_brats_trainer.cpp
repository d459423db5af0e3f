// The revox-brats trainer pieces (examples/brats): run config, checkpoints and the training
// loop, including exact --resume.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
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
  {
    // The small preset's recipe, chosen by the ablation in docs/results.md; the paper presets
    // keep the keys' defaults (the paper's recipe).
    const RunConfig small = parse_run_config(c);
    CHECK(small.epochs == 45);
    CHECK(small.milestones == std::vector<int>{30});
    CHECK(small.foreground == "regions");
    CHECK(small.augment_probability == 0.3);
    CHECK(small.model.deep_supervision == 2);
    CHECK(small.loss == "dice");
    CHECK(small.validate_every == 5);
    const RunConfig paper = parse_run_config(training_preset("mbconv-base"));
    CHECK(paper.foreground == "wt");
    CHECK(paper.augment_probability == 1.0);
    CHECK(paper.model.deep_supervision == 0);
  }
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

TEST_CASE("checkpoint: round trip of weights and Adam state, clear errors",
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

TEST_CASE("cross-validation folds: seeded, every case in one fold, ET cases spread evenly",
          "[brats][trainer][folds]") {
  using revox::brats::detail::CaseSplit;
  using revox::brats::detail::cross_validation_folds;
  using revox::brats::detail::split_cases;
  // 23 cases, 7 with ET (scattered), 5 folds.
  std::vector<bool> has_et(23, false);
  for (std::size_t i : {1u, 4u, 5u, 11u, 15u, 16u, 22u}) has_et[i] = true;
  const auto folds = cross_validation_folds(has_et, 5, 7);
  REQUIRE(folds.size() == 23);
  std::vector<int> cases(5, 0), et(5, 0);
  for (std::size_t i = 0; i < folds.size(); ++i) {
    REQUIRE(folds[i] >= 0);
    REQUIRE(folds[i] < 5);
    ++cases[static_cast<std::size_t>(folds[i])];
    if (has_et[i]) ++et[static_cast<std::size_t>(folds[i])];
  }
  const auto spread = [](const std::vector<int>& v) {
    return *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end());
  };
  CHECK(spread(cases) <= 1);  // 23 = 5 + 5 + 5 + 4 + 4
  CHECK(spread(et) <= 1);     // 7 = 2 + 2 + 1 + 1 + 1
  CHECK(std::accumulate(et.begin(), et.end(), 0) == 7);
  // Deterministic; another seed gives another assignment.
  CHECK(cross_validation_folds(has_et, 5, 7) == folds);
  CHECK(cross_validation_folds(has_et, 5, 8) != folds);
  CHECK_THROWS_WITH(cross_validation_folds(has_et, 24, 7), Catch::Contains("24 folds"));

  // split_cases: fold k is the hold-out set; over k the hold-out sets partition the cases.
  nlohmann::json j = tiny_config();
  j["folds"] = 5;
  j["seed"] = 7;
  std::vector<int> seen(23, 0);
  for (int k = 0; k < 5; ++k) {
    j["fold"] = k;
    const RunConfig config = parse_run_config(j);
    const CaseSplit split = split_cases(23, config, has_et);
    CHECK(split.holdout.size() + split.train.size() == 23);
    CHECK(static_cast<int>(split.holdout.size()) == cases[static_cast<std::size_t>(k)]);
    for (auto i : split.holdout) {
      CHECK(folds[i] == k);
      ++seen[i];
    }
    for (auto i : split.train) CHECK(folds[i] != k);
  }
  for (int s : seen) CHECK(s == 1);
  // Off (folds 0 or 1): the seeded hold-out split, as without the keys.
  const RunConfig plain = parse_run_config(tiny_config());
  CHECK(split_cases(23, plain, has_et).holdout == split_cases(23, plain).holdout);
  // fold must be below folds.
  j["fold"] = 5;
  CHECK_THROWS_WITH(parse_run_config(j), Catch::Contains("'fold' must be below 'folds'"));
  nlohmann::json no_folds = tiny_config();
  no_folds["fold"] = 1;
  CHECK_THROWS_WITH(parse_run_config(no_folds), Catch::Contains("needs 'folds' >= 2"));
}

TEST_CASE("trainer: --folds/--fold hold out one fold, the ET threshold is stored with the model",
          "[brats][trainer][folds]") {
  const fs::path dir = fresh_dir("folds");
  std::ostringstream log;
  TrainOptions options;
  options.data = phantom_data();
  options.out = dir;
  nlohmann::json config = tiny_config();
  config["folds"] = 2;
  config["fold"] = 1;
  config["epochs"] = 2;
  options.config = config;
  options.threads = 2;
  const TrainResult result = run_training(options, log);
  // The phantom's 4 cases in 2 folds: 2 held out.
  CHECK(result.holdout_ids.size() == 2);
  std::ifstream in(dir / "split.json");
  const nlohmann::json split = nlohmann::json::parse(in);
  CHECK(split.at("folds") == 2);
  CHECK(split.at("fold") == 1);
  CHECK(split.at("holdout").size() == 2);
  CHECK(split.at("train").size() == 2);
  for (const auto& id : split.at("holdout")) {
    CHECK(std::find(result.holdout_ids.begin(), result.holdout_ids.end(),
                    id.get<std::string>()) != result.holdout_ids.end());
  }
  // The other fold holds out the other two cases.
  const fs::path other_dir = fresh_dir("folds_other");
  options.out = other_dir;
  config["fold"] = 0;
  config["epochs"] = 1;
  options.config = config;
  std::ostringstream other_log;
  const TrainResult other = run_training(options, other_log);
  REQUIRE(other.holdout_ids.size() == 2);
  for (const auto& id : other.holdout_ids) {
    CHECK(std::find(result.holdout_ids.begin(), result.holdout_ids.end(), id) ==
          result.holdout_ids.end());
  }
  // After the last epoch the ET threshold is chosen, printed and stored in both checkpoints.
  CHECK_THAT(log.str(), Catch::Contains("train: ET post-processing threshold"));
  const auto& candidates = et_threshold_candidates();
  for (const char* name : {"latest.safetensors", "best.safetensors"}) {
    INFO(name);
    const Checkpoint ck = read_checkpoint(dir / name);
    CHECK(ck.has_et_threshold);
    CHECK(std::find(candidates.begin(), candidates.end(), ck.et_threshold) != candidates.end());
    CHECK(ck.file.metadata.at("et_threshold") == std::to_string(ck.et_threshold));
  }
}

TEST_CASE("checkpoint: et_threshold metadata is optional (0) and can be added later",
          "[brats][checkpoint]") {
  const fs::path dir = fresh_dir("et_threshold");
  fs::create_directories(dir);
  const nlohmann::json config = tiny_config();
  UNet<float> net(unet_config_from_json(config["model"]));
  Parameters<float> params(net);
  Rng rng(5);
  net.reset_parameters(rng);
  const fs::path file = dir / "ck.safetensors";
  write_checkpoint(file, params, nullptr, config, 2, 4, 0.25);
  const Checkpoint before = read_checkpoint(file);
  CHECK_FALSE(before.has_et_threshold);
  CHECK(before.et_threshold == 0);
  set_checkpoint_metadata(file, {{"et_threshold", "300"}});
  const Checkpoint after = read_checkpoint(file);
  CHECK(after.has_et_threshold);
  CHECK(after.et_threshold == 300);
  CHECK(after.epoch == 2);
  UNet<float> copy(net.config());
  Parameters<float> copy_params(copy);
  load_model_weights(after, copy_params);
  for (index_t i = 0; i < params.size(); ++i) REQUIRE(copy_params.values()[i] == params.values()[i]);
  set_checkpoint_metadata(file, {{"et_threshold", "-3"}});
  CHECK_THROWS_WITH(read_checkpoint(file), Catch::Contains("'et_threshold' must be a "
                                                           "non-negative integer"));
}

TEST_CASE("run config: learning-rate schedules per step, warm-up, batch Dice and augmentation "
          "probability keys, bad values named", "[brats][run_config][schedule]") {
  nlohmann::json c = default_run_json();  // the keys' defaults (the paper's recipe)
  RunConfig r = parse_run_config(c);
  CHECK(r.schedule == "multistep");
  CHECK(r.warmup_epochs == 0);
  CHECK_FALSE(r.batch_dice);
  CHECK(r.augment_probability == 1.0);
  // The default: MultiStepLR at the epoch, the same on every step of the epoch.
  for (int epoch : {0, 19, 20, 29}) {
    for (long long t : {0LL, 6LL}) {
      CHECK(scheduled_learning_rate(r, epoch, t, 7) == (epoch < 20 ? 1e-3 : 1e-3 * 0.2));
    }
  }
  // Warm-up over 2 epochs of 5 steps (W = 10): lr (s + 1) / 11, then the schedule.
  apply_set(c, "epochs=10");
  apply_set(c, "warmup_epochs=2");
  apply_set(c, "milestones=[5]");
  r = parse_run_config(c);
  for (int s = 0; s < 10; ++s) {
    CHECK(scheduled_learning_rate(r, s / 5, s % 5, 5) == Approx(1e-3 * (s + 1) / 11.0));
  }
  CHECK(scheduled_learning_rate(r, 2, 0, 5) == 1e-3);
  CHECK(scheduled_learning_rate(r, 5, 0, 5) == Approx(2e-4));  // milestone 5 counts from 0
  // Cosine over the S - W = 40 steps after the warm-up: 1e-3 at s = W, half at the middle,
  // near 0 at the last step; poly: nnU-Net's (1 - (s - W) / (S - W))^0.9.
  apply_set(c, "schedule=cosine");
  r = parse_run_config(c);
  CHECK(scheduled_learning_rate(r, 2, 0, 5) == Approx(1e-3));
  CHECK(scheduled_learning_rate(r, 6, 0, 5) == Approx(0.5e-3));
  CHECK(scheduled_learning_rate(r, 9, 4, 5) ==
        Approx(0.5e-3 * (1 + std::cos(3.14159265358979 * 39 / 40))));
  CHECK(scheduled_learning_rate(r, 1, 4, 5) == Approx(1e-3 * 10 / 11.0));
  apply_set(c, "schedule=poly");
  r = parse_run_config(c);
  CHECK(scheduled_learning_rate(r, 2, 0, 5) == Approx(1e-3));
  CHECK(scheduled_learning_rate(r, 4, 3, 5) == Approx(1e-3 * std::pow(1.0 - 13.0 / 40.0, 0.9)));
  // Without warm-up, step by step from 1e-3, continuous (no step of a 7-step epoch changes
  // the poly rate by more than its last step's 1e-3 (1/70)^0.9).
  apply_set(c, "warmup_epochs=0");
  r = parse_run_config(c);
  CHECK(scheduled_learning_rate(r, 0, 0, 7) == 1e-3);
  double previous = 1e-3;
  for (int s = 1; s < 70; ++s) {
    const double lr = scheduled_learning_rate(r, s / 7, s % 7, 7);
    REQUIRE(lr < previous);
    REQUIRE(previous - lr <= 1e-3 * std::pow(1.0 / 70.0, 0.9) + 1e-15);
    previous = lr;
  }

  apply_set(c, "batch_dice=true");
  apply_set(c, "augment.probability=0.3");
  r = parse_run_config(c);
  CHECK(r.batch_dice);
  CHECK(r.augment_probability == 0.3);

  using Catch::Contains;
  auto parse_with = [&c](const char* assignment) {
    nlohmann::json copy = c;
    apply_set(copy, assignment);
    return parse_run_config(copy);
  };
  CHECK_THROWS_WITH(parse_with("schedule=step"),
                    Contains("'schedule' must be \"multistep\", \"cosine\" or \"poly\", got \"step\""));
  CHECK_THROWS_WITH(parse_with("warmup_epochs=10"),
                    Contains("'warmup_epochs' (10) must be less than 'epochs' (10)"));
  CHECK_THROWS_WITH(parse_with("warmup_epochs=-1"), Contains("'warmup_epochs' must be an integer >= 0"));
  CHECK_THROWS_WITH(parse_with("batch_dice=1"), Contains("'batch_dice' must be true or false"));
  CHECK_THROWS_WITH(parse_with("augment.probability=1.5"),
                    Contains("'probability' must be in [0, 1], got 1.5"));
  // Deep supervision: a model key, written to the config only when on; the small model's
  // 4 levels allow 2 heads.
  CHECK_FALSE(parse_run_config(c).json["model"].contains("deep_supervision"));
  CHECK(parse_with("model.deep_supervision=2").model.deep_supervision == 2);
  CHECK(parse_with("model.deep_supervision=2").json["model"]["deep_supervision"] == 2);
  CHECK_THROWS_WITH(parse_with("model.deep_supervision=3"),
                    Contains("'deep_supervision' must be an integer in [0, levels - 2] = [0, 2]"));
}

TEST_CASE("trainer: cosine schedule with warm-up, batch Dice, deep supervision and "
          "augmentation probability train and resume exactly",
          "[brats][trainer][schedule][batch_dice][deep_supervision]") {
  nlohmann::json config = tiny_config();
  apply_set(config, "model.deep_supervision=1");
  apply_set(config, "schedule=cosine");
  apply_set(config, "warmup_epochs=1");
  apply_set(config, "batch_size=2");
  apply_set(config, "batch_dice=true");
  apply_set(config, "loss=bce_dice");
  apply_set(config, "augment.probability=0.5");
  const RunConfig parsed = parse_run_config(config);
  std::ostringstream sink;
  TrainOptions full;
  full.data = phantom_data();
  full.out = fresh_dir("recipe_full");
  full.config = parsed.json;
  full.threads = 2;
  full.quiet = true;
  const TrainResult a = run_training(full, sink);
  REQUIRE(a.history.size() == 3);
  // 3 training cases, batch 2: 2 steps per epoch, 6 in all, 2 of warm-up. log.csv's lr is
  // each epoch's last step's: 2/3 of the rate at the end of the warm-up, then the cosine
  // over the 4 steps after it, at its steps 1 and 3.
  CHECK(a.history[0].lr == Approx(1e-3 * 2.0 / 3.0));
  CHECK(a.history[1].lr == Approx(0.5e-3 * (1 + std::cos(3.14159265358979 / 4))));
  CHECK(a.history[2].lr == Approx(0.5e-3 * (1 + std::cos(3.14159265358979 * 3 / 4))));

  // The heads' weights are in the checkpoint under their own names; hold-out validation
  // (the main output only) ran, HD95 included.
  CHECK(read_checkpoint(full.out / "latest.safetensors").file.contains("model.aux_heads.1.weight"));
  CHECK(fs::exists(full.out / "holdout_scores.csv"));

  TrainOptions part = full;
  part.out = fresh_dir("recipe_part");
  part.stop_after = 1;
  REQUIRE(run_training(part, sink).history.size() == 1);
  TrainOptions resume = full;
  resume.out = part.out;
  resume.config.reset();
  resume.resume = true;
  const TrainResult b = run_training(resume, sink);
  REQUIRE(b.history.size() == 3);
  for (std::size_t e = 0; e < 3; ++e) {
    INFO("epoch " << e + 1);
    CHECK(a.history[e].loss == b.history[e].loss);
    CHECK(a.history[e].dice == b.history[e].dice);
    CHECK(a.history[e].lr == b.history[e].lr);
  }

  // Batch Dice changes training at batch 2 (the loss couples the samples), and is the
  // per-sample Dice at batch 1: there the run is the same to the last bit.
  TrainOptions per_sample = full;
  per_sample.out = fresh_dir("recipe_per_sample");
  nlohmann::json per_sample_config = parsed.json;
  per_sample_config["batch_dice"] = false;
  per_sample.config = per_sample_config;
  const TrainResult c = run_training(per_sample, sink);
  CHECK(c.history[0].loss != a.history[0].loss);
  // Deep supervision off: no heads in the checkpoint, and a different run.
  nlohmann::json no_heads = per_sample_config;
  no_heads["model"]["deep_supervision"] = 0;
  TrainOptions plain = full;
  plain.out = fresh_dir("recipe_no_heads");
  plain.config = no_heads;
  const TrainResult f = run_training(plain, sink);
  CHECK_FALSE(read_checkpoint(plain.out / "latest.safetensors").file.contains("model.aux_heads.1.weight"));
  CHECK(f.history[0].loss != c.history[0].loss);
  nlohmann::json single = parsed.json;
  single["batch_size"] = 1;
  single["epochs"] = 2;
  TrainOptions one = full;
  one.out = fresh_dir("recipe_one_batch");
  one.config = single;
  const TrainResult d = run_training(one, sink);
  single["batch_dice"] = false;
  one.out = fresh_dir("recipe_one_sample");
  one.config = single;
  const TrainResult e = run_training(one, sink);
  REQUIRE(d.history.size() == 2);
  REQUIRE(e.history.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(d.history[k].loss == e.history[k].loss);
    CHECK(d.history[k].dice == e.history[k].dice);
  }
}

TEST_CASE("trainer: augment.probability 0 only flips, 1 keeps today's samples",
          "[brats][trainer][augment]") {
  const RunConfig base = parse_run_config(tiny_config());
  const TrainingData data = open_training_data(phantom_data(), TrainingDataOptions{},
                                               [](const std::string&) {});
  const auto arrays = data.get(0);
  auto sample_with = [&](double probability, bool flips, std::uint64_t seed) {
    RunConfig c = base;
    c.augment_probability = probability;
    if (!flips) c.augment.flip_probability = 0.0;
    Rng rng(seed);
    return make_sample(c, data.cases[0], *arrays, rng);
  };
  // Probability 1 draws nothing extra: the sample of a run without the key.
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    RunConfig c = base;
    Rng rng(seed);
    const Sample today = make_sample(c, data.cases[0], *arrays, rng);
    const Sample same = sample_with(1.0, true, seed);
    REQUIRE(std::equal(today.image.data(), today.image.data() + today.image.numel(),
                       same.image.data()));
  }
  // Probability 0 without flips: the patch as cut, exactly; with the full augmentation
  // (probability 1) it is resampled.
  RunConfig plain = base;
  plain.augment_enabled = false;
  Rng rng(5);
  const Sample cut = make_sample(plain, data.cases[0], *arrays, rng);
  const Sample off = sample_with(0.0, false, 5);
  const Sample on = sample_with(1.0, false, 5);
  REQUIRE(cut.image.numel() == off.image.numel());
  // The window is drawn before the augmentation, from the same stream: the same patch.
  CHECK(std::equal(cut.image.data(), cut.image.data() + cut.image.numel(), off.image.data()));
  CHECK_FALSE(std::equal(cut.image.data(), cut.image.data() + cut.image.numel(), on.image.data()));
}
