// The revox-brats training recipe options at tiny sizes: a cosine schedule with warm-up,
// batch Dice, deep supervision, per-sample and batch losses, resumed exactly; the
// augmentation probability.
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
  const TrainingData data = revox_test::open_training_data(phantom_data(), TrainingDataOptions{},
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
