// The revox-brats checkpoints (examples/brats/checkpoint.hpp): weights and Adam state round
// trips, clear errors, and the et_threshold metadata.
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
