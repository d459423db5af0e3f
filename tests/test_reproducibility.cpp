// Bitwise reproducibility of CPU training: the same U-Net training steps (the `tiny` preset:
// reversible MBConv blocks, GroupNorm, pooling, upsampling, soft Dice loss, Adam) run twice
// from the same seed give identical losses, weights and optimizer state at a fixed thread
// count, and, since every CPU kernel fixes its reduction order by the shapes alone (no float
// atomics, no thread-dependent splits), at different thread counts too.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cstring>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;

namespace {

struct Outcome {
  std::vector<double> losses;
  std::vector<float> weights;
  std::vector<float> initial_weights;
  std::vector<float> grads;
};

// Three training steps of the tiny U-Net on a fixed random input and binary target, with
// `threads` OpenMP threads.
Outcome train(int threads) {
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(threads);
  const revox::UNetConfig config = revox::unet_preset("tiny");
  revox::UNet<float> net(config);
  revox::Parameters<float> params(net);
  revox::Rng rng(20240611);
  net.reset_parameters(rng);
  revox::optim::Adam<float> adam(params, revox::optim::AdamOptions{1e-2});
  const Shape5 x_shape{1, config.in_channels, 16, 16, 16};
  const Shape5 y_shape = net.output_shape(x_shape);
  Tensor<float> x(x_shape);
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> target(y_shape);
  for (index_t i = 0; i < target.numel(); ++i) target[i] = rng.uniform01() < 0.3 ? 1.0f : 0.0f;
  Tensor<float> logits(y_shape);
  Tensor<float> dlogits(y_shape);
  Tensor<float> dx(x_shape);
  const revox::Cpu dev;
  Outcome outcome;
  const auto values = params.values();
  outcome.initial_weights.assign(values.data, values.data + values.numel());
  for (int step = 0; step < 3; ++step) {
    revox::UNet<float>::Saved<revox::Cpu> saved;
    net.forward(dev, x.cview(), logits.view(), &saved);
    outcome.losses.push_back(
        revox::losses::soft_dice_loss(logits.cview(), target.cview(), dlogits.view()));
    params.zero_grad();
    net.backward(dev, saved, dlogits.cview(), dx.view());
    adam.step();
  }
  outcome.weights.assign(values.data, values.data + values.numel());
  const auto grads = params.grads();
  outcome.grads.assign(grads.data, grads.data + grads.numel());
  // The input gradient is part of what must reproduce.
  outcome.grads.insert(outcome.grads.end(), dx.data(), dx.data() + dx.numel());
  omp_set_num_threads(threads_before);
  return outcome;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("a U-Net training step run twice gives bitwise-identical weights at a fixed thread "
          "count", "[reproducibility][unet]") {
  const Outcome first = train(2);
  const Outcome second = train(2);
  REQUIRE(first.losses.size() == 3);
  CHECK(first.losses == second.losses);
  CHECK(same_bits(first.weights, second.weights));
  CHECK(same_bits(first.grads, second.grads));
  // The steps really trained: the weights moved away from their initial values.
  CHECK_FALSE(same_bits(first.weights, first.initial_weights));
}

TEST_CASE("a U-Net training step gives bitwise-identical weights at 1 and 3 threads",
          "[reproducibility][unet]") {
  const Outcome one = train(1);
  const Outcome three = train(3);
  CHECK(one.losses == three.losses);
  CHECK(same_bits(one.weights, three.weights));
  CHECK(same_bits(one.grads, three.grads));
}
