// revox layers against PyTorch in float64, tensor by tensor: output, grad_input and every
// parameter gradient, from the fixtures that tests/fixtures/make_fixtures.py wrote
// (tests/fixtures/README.md says which torch made them and how to regenerate them).
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "support/test_layers.hpp"
#include "support/torch_fixture.hpp"

using namespace revox;

namespace {

template <class Layer>
void check_fixture(const std::string& name, const std::string& layer_name, Layer layer) {
  INFO("fixture " << revox_test::fixture_path(name).string());
  const auto run = revox_test::run_torch_fixture(name, layer_name, layer);
  CHECK(run.checks.size() >= 2);
  for (const auto& check : run.checks) {
    INFO(check.detail);
    CHECK(check.passed);
  }
}

const std::vector<std::string> kAllFixtures = {
    "conv3d_k3_bias", "conv3d_k3_bias_batch2", "conv3d_k1_nobias", "pointwise_bias",
    "pointwise_bias_batch2", "depthwise_bias", "depthwise_nobias_batch2", "groupnorm_2_6",
    "groupnorm_1_3", "groupnorm_3_3", "relu", "relu6", "leakyrelu", "maxpool_5x6x7",
    "maxpool_4x4x4_batch2", "upsample_2x3x4", "upsample_1x2x3_batch2", "mbconv_e2_4to4_batch2",
    "mbconv_e1_4to4", "mbconv_e2_4to6", "mbconv_e1_4to6_batch2", "sequential",
    "sequential_nested", "sequential_nested_batch2", "add_halves", "add_halves_batch2"};

}  // namespace

TEST_CASE("torch fixtures: every fixture file is well formed and tested",
          "[torch][fixtures]") {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(REVOX_FIXTURE_DIR)) {
    if (entry.path().extension() == ".safetensors") on_disk.insert(entry.path().stem().string());
  }
  CHECK(on_disk == std::set<std::string>(kAllFixtures.begin(), kAllFixtures.end()));
  for (const auto& name : kAllFixtures) {
    INFO("fixture " << name);
    const auto file = io::read_safetensors(revox_test::fixture_path(name));
    CHECK_FALSE(file.meta("torch_version").empty());
    for (const char* key : {"input", "output", "grad_output", "grad_input"}) {
      REQUIRE(file.contains(key));
      CHECK(file.at(key).shape.size() == 5);
    }
    CHECK(file.at("output").shape == file.at("grad_output").shape);
    CHECK(file.at("input").shape == file.at("grad_input").shape);
    for (const auto& [key, tensor] : file.tensors) {
      INFO("tensor " << key);
      CHECK(tensor.dtype == io::Dtype::F64);
    }
  }
}

TEST_CASE("torch fixtures: Conv3d", "[torch][layer][conv3d]") {
  check_fixture("conv3d_k3_bias", "Conv3d", Conv3d<double>(3, 4, 3, true));
  check_fixture("conv3d_k3_bias_batch2", "Conv3d", Conv3d<double>(3, 4, 3, true));
  check_fixture("conv3d_k1_nobias", "Conv3d", Conv3d<double>(3, 4, 1, false));
}

TEST_CASE("torch fixtures: PointwiseConv3d", "[torch][layer][pointwise_conv3d]") {
  check_fixture("pointwise_bias", "PointwiseConv3d", PointwiseConv3d<double>(3, 4, true));
  check_fixture("pointwise_bias_batch2", "PointwiseConv3d", PointwiseConv3d<double>(5, 2, true));
}

TEST_CASE("torch fixtures: DepthwiseConv3d", "[torch][layer][depthwise_conv3d]") {
  check_fixture("depthwise_bias", "DepthwiseConv3d", DepthwiseConv3d<double>(4, true));
  check_fixture("depthwise_nobias_batch2", "DepthwiseConv3d", DepthwiseConv3d<double>(4, false));
}

TEST_CASE("torch fixtures: GroupNorm", "[torch][layer][group_norm]") {
  check_fixture("groupnorm_2_6", "GroupNorm", GroupNorm<double>(2, 6));
  check_fixture("groupnorm_1_3", "GroupNorm", GroupNorm<double>(1, 3));
  check_fixture("groupnorm_3_3", "GroupNorm", GroupNorm<double>(3, 3, 1e-5));
}

TEST_CASE("torch fixtures: activations", "[torch][layer][activations]") {
  check_fixture("relu", "ReLU", ReLU<double>());
  check_fixture("relu6", "ReLU6", ReLU6<double>());
  check_fixture("leakyrelu", "LeakyReLU", LeakyReLU<double>(0.01));
}

TEST_CASE("torch fixtures: MaxPool3d", "[torch][layer][max_pool3d]") {
  check_fixture("maxpool_5x6x7", "MaxPool3d", MaxPool3d<double>());
  check_fixture("maxpool_4x4x4_batch2", "MaxPool3d", MaxPool3d<double>());
}

TEST_CASE("torch fixtures: UpsampleTrilinear", "[torch][layer][upsample_trilinear]") {
  check_fixture("upsample_2x3x4", "UpsampleTrilinear", UpsampleTrilinear<double>());
  check_fixture("upsample_1x2x3_batch2", "UpsampleTrilinear", UpsampleTrilinear<double>());
}

TEST_CASE("torch fixtures: MBConv", "[torch][layer][mbconv]") {
  check_fixture("mbconv_e2_4to4_batch2", "MBConv", MBConv<double>(4, 4, 2, 2));
  check_fixture("mbconv_e1_4to4", "MBConv", MBConv<double>(4, 4, 1, 2));
  check_fixture("mbconv_e2_4to6", "MBConv", MBConv<double>(4, 6, 2, 2));
  check_fixture("mbconv_e1_4to6_batch2", "MBConv", MBConv<double>(4, 6, 1, 2));
}

TEST_CASE("torch fixtures: Add", "[torch][layer][add]") {
  // Add is binary; AddHalves feeds it the two channel halves of the fixture's input.
  check_fixture("add_halves", "Add", revox_test::AddHalves<double>());
  check_fixture("add_halves_batch2", "Add", revox_test::AddHalves<double>());
}

TEST_CASE("torch fixtures: Sequential and nested Sequential", "[torch][layer][sequential]") {
  check_fixture("sequential", "Sequential",
                Sequential(Conv3d<double>(2, 4, 3), GroupNorm<double>(2, 4), ReLU6<double>(),
                           MaxPool3d<double>()));
  const auto nested = [] {
    return Sequential(Sequential(Conv3d<double>(2, 4, 1), GroupNorm<double>(2, 4)),
                      LeakyReLU<double>(0.01), UpsampleTrilinear<double>());
  };
  check_fixture("sequential_nested", "Sequential", nested());
  check_fixture("sequential_nested_batch2", "Sequential", nested());
}

TEST_CASE("torch fixture runner fails on wrong layers, names, shapes and values",
          "[torch][fixtures]") {
  SECTION("a perturbed parameter fails the output and gradient comparisons") {
    PointwiseConv3d<double> layer(3, 4, true);
    const auto run = revox_test::run_torch_fixture(
        "pointwise_bias", "PointwiseConv3d", layer,
        [](Parameters<double>& params) { params.values()[0] += 1e-7; });
    REQUIRE(run.checks.size() == 4);
    CHECK_FALSE(run.passed());
    CHECK_FALSE(run.checks[0].passed);  // output
    CHECK_THAT(run.checks[0].detail, Catch::Contains("pointwise_bias.safetensors: output") &&
                                         Catch::Contains("worst at [0, 0,"));
    CHECK_FALSE(run.checks[1].passed);  // grad_input = W^T grad_output
    CHECK(run.checks[2].passed);        // grad.weight does not depend on the weights
  }
  SECTION("the wrong number of groups passes names and shapes but fails the values") {
    GroupNorm<double> layer(3, 6);
    CHECK_FALSE(revox_test::run_torch_fixture("groupnorm_2_6", "GroupNorm", layer).passed());
  }
  SECTION("a parameter missing on the revox side") {
    PointwiseConv3d<double> layer(3, 4, false);
    CHECK_THROWS_WITH(revox_test::run_torch_fixture("pointwise_bias", "PointwiseConv3d", layer),
                      Catch::Contains("pointwise_bias.safetensors") &&
                          Catch::Contains("fixture tensor 'param.bias' has no revox parameter "
                                          "'bias'") &&
                          Catch::Contains("'grad.bias'"));
  }
  SECTION("a parameter missing in the fixture, and a shape that differs") {
    Conv3d<double> layer(3, 4, 3, true);
    CHECK_THROWS_WITH(revox_test::run_torch_fixture("conv3d_k1_nobias", "Conv3d", layer),
                      Catch::Contains("conv3d_k1_nobias.safetensors") &&
                          Catch::Contains("revox parameter 'bias' has no 'param.bias'") &&
                          Catch::Contains("'weight': revox shape [4, 3, 3, 3, 3], torch shape "
                                          "[4, 3, 1, 1, 1]"));
  }
  SECTION("a fixture of another layer") {
    Conv3d<double> layer(3, 4, 1, true);
    CHECK_THROWS_WITH(revox_test::run_torch_fixture("pointwise_bias", "Conv3d", layer),
                      Catch::Contains("fixture is for layer 'PointwiseConv3d'"));
  }
}
