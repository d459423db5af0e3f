// UNet<T, F, G> with the user's own encoder blocks: the factories get each block's half
// width and level, misuse errors (tests/support/custom_unet.hpp).
#include <catch2/catch.hpp>

#include "support/custom_unet.hpp"

using namespace revox_test::custom_unet;  // NOLINT(google-build-using-namespace)

TEST_CASE("unet custom: factories get each block's half width and level, misuse errors",
          "[unet_custom][unet][model]") {
  UNetConfig c = small_config({4, 8, 12}, 2);
  std::vector<std::pair<index_t, index_t>> f_calls;
  std::vector<std::pair<index_t, index_t>> g_calls;
  MixedUNet net(
      c,
      [&](index_t half, index_t level) {
        f_calls.emplace_back(half, level);
        return make_pointwise_block<double>(half, 2);
      },
      [&](index_t half, index_t level) {
        g_calls.emplace_back(half, level);
        return SqueezeExcite<double>(half, 1);
      });
  const std::vector<std::pair<index_t, index_t>> expected = {{2, 0}, {2, 0}, {4, 1},
                                                             {4, 1}, {6, 2}, {6, 2}};
  CHECK(f_calls == expected);
  CHECK(g_calls == expected);
  REQUIRE(net.encoder_blocks(2).size() == 2);
  CHECK(net.encoder_blocks(2)[1].g().channels() == 6);
  CHECK_THROWS_WITH(net.encoder_blocks(3), Catch::Contains("level 3 is out of range"));

  // F that does not keep its input shape: refused by the reversible block at forward.
  UNet<double, revox::PointwiseConv3d<double>> widening(
      small_config({4}), [](index_t half, index_t) {
        return revox::PointwiseConv3d<double>(half, 2 * half, false);
      });
  revox::Parameters<double> params(widening);
  Tensor<double> x(Shape5{1, 4, 2, 2, 2});
  Tensor<double> y(widening.output_shape(x.shape()));
  CHECK_THROWS_WITH(widening.forward(revox::Cpu{}, x.cview(), y.view(), nullptr),
                    Catch::Contains("F must keep its input shape"));

  // The configuration is still validated for custom blocks.
  UNetConfig bad = small_config({4, 6});
  CHECK_THROWS_WITH(make_se_unet(bad), Catch::Contains("must be divisible by 'num_groups'"));

  // ConfiguredBlock refuses an unknown kind, and a Saved of the other kind.
  UNetConfig unknown = small_config({4});
  unknown.block = "resnet";
  CHECK_THROWS_WITH(revox::ConfiguredBlock<double>(unknown, 2),
                    Catch::Contains("config.block must be \"mbconv\" or \"standard\""));
  revox::ConfiguredBlock<double> conv(revox::ConvBlock<double>(2, 2, 1));
  revox::ConfiguredBlock<double> mb(revox::MBConv<double>(2, 2, 1, 1));
  revox::Parameters<double> conv_params(conv);
  revox::Parameters<double> mb_params(mb);
  Tensor<double> hx(Shape5{1, 2, 2, 2, 2});
  Tensor<double> hy(hx.shape());
  revox::Rng fill_rng(1);
  revox::fill_uniform(hx.view(), fill_rng, -1.0, 1.0);
  revox::saved_t<revox::ConfiguredBlock<double>, revox::Cpu> saved;
  mb.forward(revox::Cpu{}, hx.cview(), hy.view(), &saved);
  CHECK_THROWS_WITH(conv.backward(revox::Cpu{}, saved, hy.cview(), hx.view()),
                    Catch::Contains("ConfiguredBlock::backward: `saved` was not filled"));
}
