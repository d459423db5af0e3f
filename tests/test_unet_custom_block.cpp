// UNet<T, F, G> with the user's own encoder blocks (revox/models/unet.hpp): UNet<T>
// (ConfiguredBlock) keeps the MBConv and ConvBlock parameter names and is bit-identical to
// UNet<T, MBConv> and UNet<T, ConvBlock>. The blocks are in tests/support/custom_unet.hpp.
#include <catch2/catch.hpp>

#include "support/custom_unet.hpp"

using namespace revox_test::custom_unet;  // NOLINT(google-build-using-namespace)

TEST_CASE("unet custom: UNet<T> keeps the MBConv and ConvBlock parameter names",
          "[unet_custom][unet][model]") {
  // Captured from UNet<T> before F and G became template parameters (the encoder then held
  // ReversibleSequence<ReversibleBlock<MBConv, MBConv>> or <ConvBlock, ConvBlock> directly).
  const std::vector<std::string> mbconv_names = {
      "encoders.0.conv.weight", "encoders.0.conv.bias",
      "encoders.0.blocks.0.f.expand.weight", "encoders.0.blocks.0.f.expand_norm.weight",
      "encoders.0.blocks.0.f.expand_norm.bias", "encoders.0.blocks.0.f.depthwise.weight",
      "encoders.0.blocks.0.f.depthwise_norm.weight", "encoders.0.blocks.0.f.depthwise_norm.bias",
      "encoders.0.blocks.0.f.project.weight", "encoders.0.blocks.0.f.project_norm.weight",
      "encoders.0.blocks.0.f.project_norm.bias", "encoders.0.blocks.0.g.expand.weight",
      "encoders.0.blocks.0.g.expand_norm.weight", "encoders.0.blocks.0.g.expand_norm.bias",
      "encoders.0.blocks.0.g.depthwise.weight", "encoders.0.blocks.0.g.depthwise_norm.weight",
      "encoders.0.blocks.0.g.depthwise_norm.bias", "encoders.0.blocks.0.g.project.weight",
      "encoders.0.blocks.0.g.project_norm.weight", "encoders.0.blocks.0.g.project_norm.bias",
      "encoders.1.conv.weight", "encoders.1.conv.bias",
      "encoders.1.blocks.0.f.expand.weight", "encoders.1.blocks.0.f.expand_norm.weight",
      "encoders.1.blocks.0.f.expand_norm.bias", "encoders.1.blocks.0.f.depthwise.weight",
      "encoders.1.blocks.0.f.depthwise_norm.weight", "encoders.1.blocks.0.f.depthwise_norm.bias",
      "encoders.1.blocks.0.f.project.weight", "encoders.1.blocks.0.f.project_norm.weight",
      "encoders.1.blocks.0.f.project_norm.bias", "encoders.1.blocks.0.g.expand.weight",
      "encoders.1.blocks.0.g.expand_norm.weight", "encoders.1.blocks.0.g.expand_norm.bias",
      "encoders.1.blocks.0.g.depthwise.weight", "encoders.1.blocks.0.g.depthwise_norm.weight",
      "encoders.1.blocks.0.g.depthwise_norm.bias", "encoders.1.blocks.0.g.project.weight",
      "encoders.1.blocks.0.g.project_norm.weight", "encoders.1.blocks.0.g.project_norm.bias",
      "decoders.0.reduce.weight", "decoders.0.reduce.bias",
      "decoders.0.blocks.0.conv.weight", "decoders.0.blocks.0.norm.weight",
      "decoders.0.blocks.0.norm.bias", "head.weight", "head.bias"};
  std::vector<std::string> standard_names = {"encoders.0.conv.weight", "encoders.0.conv.bias"};
  for (const char* level : {"0", "1"}) {
    if (std::string(level) == "1") {
      standard_names.insert(standard_names.end(), {"encoders.1.conv.weight", "encoders.1.conv.bias"});
    }
    for (const char* block : {"0", "1"}) {
      for (const char* fg : {"f", "g"}) {
        const std::string p =
            std::string("encoders.") + level + ".blocks." + block + "." + fg + ".";
        standard_names.insert(standard_names.end(),
                              {p + "conv.weight", p + "norm.weight", p + "norm.bias"});
      }
    }
  }
  standard_names.insert(standard_names.end(),
                        {"decoders.0.reduce.weight", "decoders.0.reduce.bias",
                         "decoders.0.blocks.0.conv.weight", "decoders.0.blocks.0.norm.weight",
                         "decoders.0.blocks.0.norm.bias", "head.weight", "head.bias"});
  UNetConfig mb = small_config({4, 8});
  UNet<float> mb_net(mb);
  CHECK(param_names(mb_net) == mbconv_names);
  UNetConfig st = small_config({4, 8}, 2);
  st.block = "standard";
  UNet<float> st_net(st);
  CHECK(param_names(st_net) == standard_names);
  CHECK(mb_net.encoder_blocks(1)[0].f().is_mbconv());
  CHECK(std::string(st_net.encoder_blocks(1)[1].g().kind()) == "standard");
}

TEST_CASE("unet custom: UNet<T> is bit-identical to UNet<T, MBConv> and UNet<T, ConvBlock>",
          "[unet_custom][unet][model]") {
  auto compare = [&](auto& configured, auto& plain, Shape5 input) {
    revox::Parameters<float> a(configured);
    revox::Parameters<float> b(plain);
    REQUIRE(a.size() == b.size());
    REQUIRE(param_names(configured) == param_names(plain));
    revox::Rng rng(3);
    configured.reset_parameters(rng);
    std::copy(a.values().data, a.values().data + a.size(), b.values().data);
    Tensor<float> x(input);
    revox::fill_uniform(x.view(), rng, -1.0, 1.0);
    Tensor<float> dy(configured.output_shape(input));
    revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
    for (bool reversible : {true, false}) {
      INFO("reversible " << reversible);
      configured.set_reversible(reversible);
      plain.set_reversible(reversible);
      const auto ra = forward_backward(configured, a, x, dy);
      const auto rb = forward_backward(plain, b, x, dy);
      CHECK(max_abs_diff(ra.y.data(), rb.y.data(), static_cast<std::size_t>(ra.y.numel())) == 0.0);
      CHECK(max_abs_diff(ra.dx.data(), rb.dx.data(), static_cast<std::size_t>(ra.dx.numel())) ==
            0.0);
      CHECK(max_abs_diff(ra.grads.data(), rb.grads.data(), ra.grads.size()) == 0.0);
    }
  };
  SECTION("mbconv") {
    const UNetConfig c = small_config({4, 8, 8}, 2);
    UNet<float> configured(c);
    UNet<float, revox::MBConv<float>> plain(c, [&c](index_t half, index_t) {
      return revox::MBConv<float>(half, half, c.expand_ratio, c.num_groups,
                                  c.block_memory == "lean");
    });
    compare(configured, plain, Shape5{2, 4, 8, 4, 8});
  }
  SECTION("standard") {
    UNetConfig c = small_config({4, 8}, 2);
    c.block = "standard";
    UNet<float> configured(c);
    UNet<float, revox::ConvBlock<float>> plain(c, [&c](index_t half, index_t) {
      return revox::ConvBlock<float>(half, half, c.num_groups);
    });
    compare(configured, plain, Shape5{1, 4, 4, 4, 8});
  }
}
