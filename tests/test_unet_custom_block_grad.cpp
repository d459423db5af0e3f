// UNet<T, F, G> with the user's own encoder blocks: a hand-written squeeze-and-excitation
// layer inside MBConv as F = G, and F != G, gradchecked; reversible and stored-activation
// runs agree (tests/support/custom_unet.hpp).
#include <catch2/catch.hpp>

#include "support/custom_unet.hpp"

using namespace revox_test::custom_unet;  // NOLINT(google-build-using-namespace)

TEST_CASE("unet custom: squeeze-and-excitation MBConv blocks, gradcheck",
          "[unet_custom][unet][model][gradcheck]") {
  const UNetConfig c = small_config({4, 8});
  SEUNet net = make_se_unet(c);
  CHECK(param_names(net)[2] == "encoders.0.blocks.0.f.0.expand.weight");
  CHECK(param_names(net)[11] == "encoders.0.blocks.0.f.1.reduce.weight");
  check_gradcheck(net, Shape5{1, 4, 4, 6, 4}, 6);
  net.set_reversible(false);
  check_gradcheck(net, Shape5{1, 4, 4, 6, 4}, 6);
}

TEST_CASE("unet custom: F != G (pointwise block and squeeze-excitation), gradcheck",
          "[unet_custom][unet][model][gradcheck]") {
  UNetConfig c = small_config({4, 8, 8}, 2);
  c.in_channels = 2;
  MixedUNet net = make_mixed_unet(c);
  const auto names = param_names(net);
  CHECK(names[2] == "encoders.0.blocks.0.f.0.weight");
  CHECK(names[6] == "encoders.0.blocks.0.g.reduce.weight");
  check_gradcheck(net, Shape5{2, 2, 4, 4, 8}, 5);
}

TEST_CASE("unet custom: reversible and stored-activation runs agree",
          "[unet_custom][unet][model][reversible]") {
  SECTION("F = G = MBConv + squeeze-excitation, three levels, two blocks") {
    SEUNet net = make_se_unet(small_config({4, 8, 12}, 2));
    check_reversible_matches_stored(net, Shape5{2, 4, 8, 4, 8});
  }
  SECTION("F != G") {
    MixedUNet net = make_mixed_unet(small_config({4, 8}, 3));
    check_reversible_matches_stored(net, Shape5{1, 4, 8, 8, 4});
  }
}
