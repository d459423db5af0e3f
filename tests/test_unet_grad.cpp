// Tests for revox/models/unet.hpp: gradients against finite differences (both block kinds,
// reversible and stored, several shapes) and the deep-supervision heads.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/models/unet.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/unet_runs.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::UNet;
using revox::UNetConfig;
using revox_test::small_config;

namespace {

void run_gradcheck(const UNetConfig& config, Shape5 input, index_t max_checks) {
  INFO("config " << revox::to_json(config).dump() << ", input " << input);
  UNet<double> net(config);
  const auto result = revox_test::unet_gradcheck(net, input, max_checks);
  INFO(result.report);
  REQUIRE(result.passed);
}

}  // namespace

TEST_CASE("unet: gradcheck, MBConv blocks, reversible and stored", "[unet][model][gradcheck]") {
  UNetConfig c = small_config("mbconv", {4, 8}, 2);
  run_gradcheck(c, Shape5{1, 4, 4, 6, 8}, 8);
  c.reversible = false;
  run_gradcheck(c, Shape5{1, 4, 4, 6, 8}, 8);
}

TEST_CASE("unet: gradcheck, standard blocks (Baseline kind)", "[unet][model][gradcheck]") {
  UNetConfig c = small_config("standard", {4, 8}, 2);
  run_gradcheck(c, Shape5{1, 4, 6, 4, 4}, 12);
  c.decoder_memory = "stored";
  run_gradcheck(c, Shape5{1, 4, 6, 4, 4}, 12);
  c.decoder_memory = "lean";
  c.decoder_blocks = 0;  // decoder = reduce, upsample, skip only
  run_gradcheck(c, Shape5{1, 4, 4, 4, 4}, 12);
}

TEST_CASE("unet: gradcheck, three levels with two blocks each", "[unet][model][gradcheck]") {
  run_gradcheck(small_config("mbconv", {4, 8, 8}, 2, 2), Shape5{1, 4, 8, 4, 8}, 3);
}

TEST_CASE("unet: gradcheck, batch 2, other channel counts, one level",
          "[unet][model][gradcheck]") {
  UNetConfig c = small_config("mbconv", {4, 8}, 1);
  c.in_channels = 2;
  c.out_channels = 2;
  c.decoder_blocks = 2;
  run_gradcheck(c, Shape5{2, 2, 4, 4, 6}, 5);
  UNetConfig one = small_config("mbconv", {4}, 2);  // no pooling, no decoder
  one.expand_ratio = 1;
  run_gradcheck(one, Shape5{1, 4, 3, 5, 4}, 20);
}

namespace {

// L = <y, r> + sum_j <aux_j, r_j> for fixed random r, r_j: its gradient is what backward
// gives with dy = r and daux_j = r_j.
double deep_supervision_objective(const UNet<double>& net, const Tensor<double>& x,
                                  const Tensor<double>& r, const std::vector<Tensor<double>>& rj) {
  revox::Cpu dev;
  Tensor<double> y(net.output_shape(x.shape()));
  std::vector<Tensor<double>> aux;
  std::vector<revox::TensorView<double>> views;
  for (const auto& t : rj) {
    aux.emplace_back(t.shape());
    views.push_back(aux.back().view());
  }
  net.forward(dev, x.cview(), y.view(), nullptr, views);
  double total = 0.0;
  for (index_t i = 0; i < y.numel(); ++i) total += y[i] * r[i];
  for (std::size_t j = 0; j < rj.size(); ++j) {
    for (index_t i = 0; i < rj[j].numel(); ++i) total += aux[j][i] * rj[j][i];
  }
  return total;
}

}  // namespace

TEST_CASE("unet: deep supervision heads: names, shapes, inference unchanged, gradients match "
          "finite differences", "[unet][model][gradcheck][deep_supervision]") {
  revox::Cpu dev;
  for (const std::string decoder_memory : {"stored", "lean"}) {
    INFO("decoder_memory " << decoder_memory);
    UNetConfig plain = small_config("mbconv", {4, 8, 8, 8}, 2);
    plain.decoder_memory = decoder_memory;
    UNetConfig config = plain;
    config.deep_supervision = 2;
    UNet<double> net(config), without(plain);
    revox::Parameters<double> params(net), params_without(without);
    revox::Rng rng(41), rng_without(41);
    net.reset_parameters(rng);
    without.reset_parameters(rng_without);
    // The heads come last: the other names and initial values are the plain net's.
    const auto& entries = params.entries();
    const auto& plain_entries = params_without.entries();
    REQUIRE(entries.size() == plain_entries.size() + 4);
    for (std::size_t e = 0; e < plain_entries.size(); ++e) {
      REQUIRE(entries[e].name == plain_entries[e].name);
      REQUIRE(entries[e].offset == plain_entries[e].offset);
    }
    CHECK(entries[plain_entries.size()].name == "aux_heads.1.weight");
    CHECK(entries[plain_entries.size() + 3].name == "aux_heads.2.bias");
    CHECK(entries[plain_entries.size()].shape.numel() == 8 * 3);
    for (index_t i = 0; i < params_without.size(); ++i) {
      REQUIRE(params.values()[i] == params_without.values()[i]);
    }

    const Shape5 input{1, 4, 8, 8, 16};
    CHECK(net.aux_output_shape(input, 1) == Shape5{1, 3, 4, 4, 8});
    CHECK(net.aux_output_shape(input, 2) == Shape5{1, 3, 2, 2, 4});
    CHECK_THROWS_WITH(net.aux_output_shape(input, 3),
                      Catch::Contains("deep-supervision output 3 does not exist"));
    Tensor<double> x(input);
    for (index_t i = 0; i < x.numel(); ++i) x[i] = rng.normal();
    // Without aux views: the plain net's output, bit for bit (inference).
    Tensor<double> y(net.output_shape(input)), y_plain(net.output_shape(input));
    net.forward(dev, x.cview(), y.view(), nullptr);
    without.forward(dev, x.cview(), y_plain.view(), nullptr);
    for (index_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == y_plain[i]);

    Tensor<double> r(y.shape());
    for (index_t i = 0; i < r.numel(); ++i) r[i] = rng.normal();
    std::vector<Tensor<double>> rj;
    for (index_t j = 1; j <= 2; ++j) {
      rj.emplace_back(net.aux_output_shape(input, j));
      for (index_t i = 0; i < rj.back().numel(); ++i) rj.back()[i] = rng.normal();
    }
    // Analytic: forward with saved and the aux outputs, backward with dy = r, daux = rj.
    UNet<double>::Saved<revox::Cpu> saved;
    std::vector<Tensor<double>> aux;
    std::vector<revox::TensorView<double>> aux_views;
    std::vector<revox::TensorView<const double>> daux;
    for (const auto& t : rj) {
      aux.emplace_back(t.shape());
      aux_views.push_back(aux.back().view());
      daux.push_back(t.cview());
    }
    Tensor<double> y_saved(y.shape());
    net.forward(dev, x.cview(), y_saved.view(), &saved, aux_views);
    for (index_t i = 0; i < y.numel(); ++i) REQUIRE(y_saved[i] == y[i]);
    auto dx = Tensor<double>::zeros(input);
    params.zero_grad();
    net.backward(dev, saved, r.cview(), dx.view(), daux);
    std::vector<double> analytic(params.grads().data, params.grads().data + params.size());

    const double h = 1e-5;
    auto check = [&](double& value, double expected, const std::string& what) {
      const double keep = value;
      value = keep + h;
      const double plus = deep_supervision_objective(net, x, r, rj);
      value = keep - h;
      const double minus = deep_supervision_objective(net, x, r, rj);
      value = keep;
      const double numeric = (plus - minus) / (2 * h);
      INFO(what << ": analytic " << expected << ", numeric " << numeric);
      REQUIRE(std::abs(expected - numeric) <= 1e-6 + 1e-5 * std::abs(numeric));
    };
    // Every head parameter, and a spread of the others (their gradient now includes the
    // heads' paths), and of the input.
    for (std::size_t e = 0; e < entries.size(); ++e) {
      const bool head = e >= plain_entries.size();
      const index_t count = entries[e].shape.numel();
      const index_t stride = head ? 1 : std::max<index_t>(1, count / 2);
      for (index_t i = 0; i < count; i += stride) {
        const index_t k = entries[e].offset + i;
        check(params.values()[k], analytic[static_cast<std::size_t>(k)],
              entries[e].name + "[" + std::to_string(i) + "]");
      }
    }
    for (index_t i = 0; i < x.numel(); i += 97) check(x[i], dx[i], "x[" + std::to_string(i) + "]");

    // Without daux the heads get no gradient and the rest is the plain net's gradient.
    net.forward(dev, x.cview(), y_saved.view(), &saved, aux_views);
    params.zero_grad();
    net.backward(dev, saved, r.cview(), revox::TensorView<double>{});
    for (std::size_t e = plain_entries.size(); e < entries.size(); ++e) {
      for (index_t i = 0; i < entries[e].shape.numel(); ++i) {
        REQUIRE(params.grads()[entries[e].offset + i] == 0.0);
      }
    }
  }
  UNetConfig bad = small_config("mbconv", {4, 8, 8}, 2);
  bad.deep_supervision = 2;
  CHECK_THROWS_WITH(UNet<float>(bad), Catch::Contains("'deep_supervision' must be an integer in "
                                                      "[0, levels - 2] = [0, 1]"));
}
