// UNet<T, F, G> with the user's own encoder blocks: a few Adam steps lower the loss
// (tests/support/custom_unet.hpp).
#include <catch2/catch.hpp>

#include "support/custom_unet.hpp"

using namespace revox_test::custom_unet;  // NOLINT(google-build-using-namespace)

TEST_CASE("unet custom: a few Adam steps lower the loss", "[unet_custom][unet][model][train]") {
  revox::Rng rng(7);
  const ToyTask task = toy_task(8, 2, rng);
  UNetConfig c = small_config({8, 16});
  c.in_channels = 2;
  SECTION("F = G = MBConv + squeeze-excitation") {
    UNet<float, SEMBConv<float>> net(c, [](index_t half, index_t) {
      return make_se_mbconv<float>(half, 2);
    });
    const auto losses = train(net, task, 8, rng);
    INFO("losses " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.95 * losses.front());
    CHECK(losses[4] < losses.front());
  }
  SECTION("F != G") {
    UNet<float, PointwiseBlock<float>, SqueezeExcite<float>> net(
        c, [](index_t half, index_t) { return make_pointwise_block<float>(half, 2); },
        [](index_t half, index_t) { return SqueezeExcite<float>(half, 2); });
    const auto losses = train(net, task, 8, rng);
    INFO("losses " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.95 * losses.front());
    CHECK(losses[4] < losses.front());
  }
}
