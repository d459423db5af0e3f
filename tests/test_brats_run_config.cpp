// The revox-brats run config (examples/brats/run_config.hpp): presets, --set, schedules and
// cross-validation folds (and a run trained on one fold).
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
