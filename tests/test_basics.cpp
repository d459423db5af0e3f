// The basic pieces beside the layers: mse_loss and l1_loss, losses taking mutable and const
// views, TensorView::channels per sample, Kaiming and Xavier initialisation, gradient-norm
// clipping and the cosine, poly and warm-up schedules. PyTorch values come from
// tests/fixtures/basics/ (written by tests/fixtures/make_basics_fixtures.py, torch 1.13).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/losses/dice.hpp"
#include "revox/losses/regression.hpp"
#include "revox/optim/clip.hpp"
#include "revox/optim/schedule.hpp"

using namespace revox;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::filesystem::path basics_dir() {
  return std::filesystem::path(REVOX_FIXTURE_DIR) / "basics";
}

Shape5 shape_of(const io::SafeTensor& t) {
  REQUIRE(t.shape.size() == 5);
  return Shape5{t.shape[0], t.shape[1], t.shape[2], t.shape[3], t.shape[4]};
}

template <class T>
Tensor<T> tensor_from(const io::SafeTensor& t) {
  Tensor<T> out(shape_of(t));
  const auto values = t.to_double();
  for (index_t i = 0; i < out.numel(); ++i) out[i] = static_cast<T>(values[static_cast<std::size_t>(i)]);
  return out;
}

template <class T>
double regression(bool l1, TensorView<const T> p, TensorView<const T> t, TensorView<T> d,
                  losses::Reduction r) {
  return l1 ? losses::l1_loss(p, t, d, r) : losses::mse_loss(p, t, d, r);
}

// Parameters of given shapes, for the clipping tests (only visit_params is needed).
struct ParamHolder {
  using value_type = double;
  std::vector<Param<double>> params;
  explicit ParamHolder(const std::vector<ParamShape>& shapes) {
    for (const auto& s : shapes) params.emplace_back(s);
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    for (std::size_t i = 0; i < params.size(); ++i) fn(std::to_string(i), params[i]);
  }
};

}  // namespace

// ---- losses ---------------------------------------------------------------------------

TEST_CASE("basics: mse_loss and l1_loss match PyTorch", "[basics][loss][torch]") {
  const std::vector<std::string> names = {"loss_mse_mean", "loss_mse_sum", "loss_l1_mean",
                                          "loss_l1_sum"};
  for (const auto& name : names) {
    INFO("fixture basics/" << name);
    const auto file = io::read_safetensors(basics_dir() / (name + ".safetensors"));
    const bool l1 = file.meta("loss") == "l1";
    const auto reduction =
        file.meta("reduction") == "sum" ? losses::Reduction::Sum : losses::Reduction::Mean;
    const double expected = file.at("loss").to_double().at(0);
    const auto expected_grad = file.at("grad_prediction").to_double();
    const Tensor<double> p = tensor_from<double>(file.at("prediction"));
    const Tensor<double> t = tensor_from<double>(file.at("target"));
    index_t equal = 0;
    for (index_t i = 0; i < p.numel(); ++i) equal += p[i] == t[i] ? 1 : 0;
    CHECK(equal > p.numel() / 10);  // the zero-residual case is exercised

    auto d = Tensor<double>::full(p.shape(), kNaN);
    const double loss = regression<double>(l1, p.cview(), t.cview(), d.view(), reduction);
    CHECK(loss == Approx(expected).epsilon(1e-13));
    for (index_t i = 0; i < d.numel(); ++i) {
      INFO("element " << i);
      REQUIRE(d[i] == Approx(expected_grad[static_cast<std::size_t>(i)]).epsilon(1e-13).margin(0));
      if (l1 && p[i] == t[i]) REQUIRE(d[i] == 0.0);
    }

    const Tensor<float> pf = tensor_from<float>(file.at("prediction"));
    const Tensor<float> tf = tensor_from<float>(file.at("target"));
    auto df = Tensor<float>::full(p.shape(), std::numeric_limits<float>::quiet_NaN());
    const double lossf = regression<float>(l1, pf.cview(), tf.cview(), df.view(), reduction);
    CHECK(lossf == Approx(expected).epsilon(1e-5));
    for (index_t i = 0; i < df.numel(); ++i) {
      if (l1 && p[i] == t[i]) continue;  // the float residual is 0 where the double one is
      REQUIRE(df[i] == Approx(expected_grad[static_cast<std::size_t>(i)]).epsilon(1e-5).margin(1e-9));
    }
  }
}

TEST_CASE("basics: loss gradients match central differences", "[basics][loss][gradcheck]") {
  Rng rng(7);
  const Shape5 shape{2, 3, 1, 3, 5};
  Tensor<double> p(shape), t(shape);
  fill_uniform(p.view(), rng, -1.0, 1.0);
  fill_uniform(t.view(), rng, -1.0, 1.0);
  for (bool l1 : {false, true}) {
    for (auto r : {losses::Reduction::Mean, losses::Reduction::Sum}) {
      INFO((l1 ? "l1" : "mse") << (r == losses::Reduction::Sum ? " sum" : " mean"));
      Tensor<double> d(shape);
      regression<double>(l1, p.cview(), t.cview(), d.view(), r);
      const double h = 1e-6;
      for (index_t i = 0; i < p.numel(); ++i) {
        REQUIRE(std::abs(p[i] - t[i]) > 10 * h);  // away from l1's kink
        const double original = p[i];
        p[i] = original + h;
        const double plus = regression<double>(l1, p.cview(), t.cview(), TensorView<double>{}, r);
        p[i] = original - h;
        const double minus = regression<double>(l1, p.cview(), t.cview(), TensorView<double>{}, r);
        p[i] = original;
        REQUIRE(d[i] == Approx((plus - minus) / (2 * h)).epsilon(1e-6).margin(1e-9));
      }
    }
  }
}

TEST_CASE("basics: regression losses on known values", "[basics][loss]") {
  const Shape5 shape{1, 1, 1, 1, 4};
  Tensor<double> p(shape), t(shape), d(shape);
  const double pv[] = {1.0, -2.0, 3.0, 0.5};
  const double tv[] = {0.0, -2.0, 1.0, 1.5};  // residuals 1, 0, 2, -1
  std::copy(pv, pv + 4, p.data());
  std::copy(tv, tv + 4, t.data());
  CHECK(losses::mse_loss(p.cview(), t.cview(), d.view()) == 6.0 / 4.0);
  CHECK(std::vector<double>(d.data(), d.data() + 4) == std::vector<double>{0.5, 0.0, 1.0, -0.5});
  CHECK(losses::mse_loss(p.cview(), t.cview(), d.view(), losses::Reduction::Sum) == 6.0);
  CHECK(std::vector<double>(d.data(), d.data() + 4) == std::vector<double>{2.0, 0.0, 4.0, -2.0});
  CHECK(losses::l1_loss(p.cview(), t.cview(), d.view()) == 4.0 / 4.0);
  CHECK(std::vector<double>(d.data(), d.data() + 4) == std::vector<double>{0.25, 0.0, 0.25, -0.25});
  CHECK(losses::l1_loss(p.cview(), t.cview(), d.view(), losses::Reduction::Sum) == 4.0);
  CHECK(std::vector<double>(d.data(), d.data() + 4) == std::vector<double>{1.0, 0.0, 1.0, -1.0});
}

TEST_CASE("basics: regression loss misuse throws a readable revox::Error",
          "[basics][loss][errors]") {
  const Shape5 shape{1, 2, 1, 2, 2};
  auto p = Tensor<double>::full(shape, 1.0);
  auto t = Tensor<double>::full(shape, 0.0);
  auto d = Tensor<double>::full(shape, 0.0);
  auto wrong = Tensor<double>::full(Shape5{1, 2, 1, 2, 3}, 0.0);
  CHECK_THROWS_WITH(losses::mse_loss(p.cview(), wrong.cview(), d.view()),
                    Catch::Contains("mse_loss: target must have the shape of prediction"));
  CHECK_THROWS_WITH(losses::l1_loss(p.cview(), t.cview(), wrong.view()),
                    Catch::Contains("l1_loss: dprediction must have the shape"));
  CHECK_THROWS_WITH(losses::mse_loss(TensorView<const double>{}, t.cview(), d.view()),
                    Catch::Contains("prediction must be a non-empty"));
  p[5] = kNaN;
  CHECK_THROWS_WITH(losses::mse_loss(p.cview(), t.cview(), d.view()),
                    Catch::Contains("prediction must be finite") &&
                        Catch::Contains("(n=0, c=1, d=0, h=0, w=1)"));
  p[5] = 1.0;
  t[2] = kInf;
  CHECK_THROWS_WITH(losses::l1_loss(p.cview(), t.cview(), d.view()),
                    Catch::Contains("target must be finite"));
}

TEST_CASE("basics: every loss accepts mutable and const views", "[basics][loss][views]") {
  Rng rng(3);
  const Shape5 shape{2, 3, 2, 2, 3};
  Tensor<float> x(shape), t(shape), d1(shape), d2(shape);
  fill_uniform(x.view(), rng, -2.0, 2.0);
  for (index_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform01() < 0.5 ? 1.0f : 0.0f;
  const Tensor<float>& xc = x;

  // Each call with view() (mutable elements) must give what the cview() call gives.
  const double dice_c = losses::soft_dice_loss(x.cview(), t.cview(), d1.view());
  CHECK(losses::soft_dice_loss(x.view(), t.view(), d2.view()) == dice_c);
  CHECK(std::memcmp(d1.data(), d2.data(), d1.bytes()) == 0);
  CHECK(losses::soft_dice_loss(Cpu{}, x.view(), t.cview(), d2.view(), 1.0) == dice_c);
  CHECK(losses::soft_dice_loss(xc.view(), t.view(), TensorView<float>{}) == dice_c);
  const double bce_c = losses::bce_dice_loss(x.cview(), t.cview(), d1.view());
  CHECK(losses::bce_dice_loss(x.view(), t.view(), d2.view()) == bce_c);
  CHECK(losses::bce_dice_loss(Cpu{}, x.cview(), t.view(), d2.view()) == bce_c);
  CHECK(std::memcmp(d1.data(), d2.data(), d1.bytes()) == 0);
  const double mse_c = losses::mse_loss(x.cview(), t.cview(), d1.view());
  CHECK(losses::mse_loss(x.view(), t.view(), d2.view()) == mse_c);
  CHECK(std::memcmp(d1.data(), d2.data(), d1.bytes()) == 0);
  const double l1_c = losses::l1_loss(x.cview(), t.cview(), d1.view(), losses::Reduction::Sum);
  CHECK(losses::l1_loss(x.view(), t.cview(), d2.view(), losses::Reduction::Sum) == l1_c);
  CHECK(std::memcmp(d1.data(), d2.data(), d1.bytes()) == 0);
}

// ---- TensorView::channels -------------------------------------------------------------

TEST_CASE("basics: TensorView::channels takes a sample's channels for any batch",
          "[basics][tensor]") {
  const Shape5 shape{2, 5, 2, 3, 1};
  Tensor<double> t(shape);
  for (index_t i = 0; i < t.numel(); ++i) t[i] = static_cast<double>(i);
  for (index_t n = 0; n < 2; ++n) {
    const auto slice = t.view().channels(n, 1, 3);
    CHECK(slice.shape == Shape5{1, 3, 2, 3, 1});
    for (index_t c = 0; c < 3; ++c)
      for (index_t d = 0; d < 2; ++d)
        for (index_t h = 0; h < 3; ++h) CHECK(slice.at(0, c, d, h, 0) == t.view().at(n, c + 1, d, h, 0));
    const TensorView<const double> whole = t.cview().sample(n);
    CHECK(whole.shape == Shape5{1, 5, 2, 3, 1});
    CHECK(whole.data == t.data() + n * 5 * 6);
  }
  CHECK(t.view().channels(1, 5, 0).numel() == 0);
  CHECK_THROWS_WITH(t.view().channels(2, 0, 1), Catch::Contains("sample 2 out of range for N=2"));
  CHECK_THROWS_WITH(t.view().channels(1, 4, 2), Catch::Contains("[4, 6) out of range for C=5"));
  CHECK_THROWS_WITH(t.view().channels(0, 2),
                    Catch::Contains("batch 1, got N=2") && Catch::Contains("channels(n, first, count)"));
  // Batch 1: the two-argument form is sample 0's.
  Tensor<double> one(Shape5{1, 5, 2, 3, 1});
  CHECK(one.view().channels(2, 2).data == one.view().channels(0, 2, 2).data);
}

// ---- initialisation -------------------------------------------------------------------

namespace {

struct Moments {
  double mean = 0, std = 0, min = 0, max = 0;
};
Moments moments(const std::vector<double>& v) {
  Moments m;
  m.min = *std::min_element(v.begin(), v.end());
  m.max = *std::max_element(v.begin(), v.end());
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.std += (x - m.mean) * (x - m.mean);
  m.std = std::sqrt(m.std / static_cast<double>(v.size() - 1));
  return m;
}

// Checks a normal N(0, s^2) or uniform U(-b, b) (b = sqrt(3) s) sample within 5 sigma.
void check_distribution(const std::vector<double>& v, double s, bool uniform) {
  const double n = static_cast<double>(v.size());
  const Moments m = moments(v);
  INFO("mean " << m.mean << ", std " << m.std << ", expected std " << s);
  CHECK(std::abs(m.mean) < 5.0 * s / std::sqrt(n));
  // Standard error of the sample std: s / sqrt(2n) (normal); sqrt(4/45) b^2 / (2 s sqrt(n))
  // = s sqrt(4/45) * 3 / (2 sqrt(n)) (uniform, from Var(x^2) = 4 b^4 / 45).
  const double se = uniform ? s * std::sqrt(4.0 / 45.0) * 3.0 / (2.0 * std::sqrt(n))
                            : s / std::sqrt(2.0 * n);
  CHECK(std::abs(m.std - s) < 5.0 * se);
  if (uniform) {
    const double b = std::sqrt(3.0) * s;
    CHECK(m.min >= -b);
    CHECK(m.max < b);
    CHECK(m.max > 0.99 * b);
    CHECK(m.min < -0.99 * b);
  }
}

}  // namespace

TEST_CASE("basics: fan computation and gains as torch.nn.init", "[basics][init]") {
  const auto conv = init::calculate_fans(ParamShape{16, 8, 3, 3, 3});
  CHECK(conv.fan_in == 8 * 27);
  CHECK(conv.fan_out == 16 * 27);
  const auto linear = init::calculate_fans(ParamShape{5, 7});
  CHECK(linear.fan_in == 7);
  CHECK(linear.fan_out == 5);
  const auto depthwise = init::calculate_fans(ParamShape{6, 1, 3, 3, 3});  // groups = C
  CHECK(depthwise.fan_in == 27);
  CHECK(depthwise.fan_out == 6 * 27);
  CHECK_THROWS_WITH(init::calculate_fans(ParamShape{4}), Catch::Contains("rank >= 2"));

  using init::Nonlinearity;
  CHECK(init::calculate_gain(Nonlinearity::Linear) == 1.0);
  CHECK(init::calculate_gain(Nonlinearity::Sigmoid) == 1.0);
  CHECK(init::calculate_gain(Nonlinearity::Tanh) == 5.0 / 3.0);
  CHECK(init::calculate_gain(Nonlinearity::ReLU) == std::sqrt(2.0));
  CHECK(init::calculate_gain(Nonlinearity::LeakyReLU) == std::sqrt(2.0 / (1.0 + 1e-4)));
  CHECK(init::calculate_gain(Nonlinearity::LeakyReLU, 0.2) == std::sqrt(2.0 / 1.04));
  CHECK(init::calculate_gain(Nonlinearity::SELU) == 0.75);

  // torch: kaiming std = gain / sqrt(fan); xavier std = gain sqrt(2 / (fan_in + fan_out)).
  const ParamShape w{128, 32, 5, 5, 1};  // fan_in 800, fan_out 3200
  CHECK(init::kaiming_std(w) == Approx(std::sqrt(2.0) / std::sqrt(800.0)).epsilon(1e-15));
  CHECK(init::kaiming_std(w, {init::FanMode::FanOut, Nonlinearity::ReLU}) ==
        Approx(0.025).epsilon(1e-15));
  CHECK(init::kaiming_std(w, {init::FanMode::FanIn, Nonlinearity::LeakyReLU, 0.2}) ==
        Approx(std::sqrt(2.0 / 1.04) / std::sqrt(800.0)).epsilon(1e-15));
  CHECK(init::kaiming_std(w, {init::FanMode::FanIn, Nonlinearity::Linear}) ==
        Approx(1.0 / std::sqrt(800.0)).epsilon(1e-15));
  CHECK(init::xavier_std(w) == Approx(std::sqrt(2.0 / 4000.0)).epsilon(1e-15));
  CHECK(init::xavier_std(w, 2.5) == Approx(2.5 * std::sqrt(2.0 / 4000.0)).epsilon(1e-15));
}

TEST_CASE("basics: Kaiming and Xavier samples have the formula's spread",
          "[basics][init]") {
  const ParamShape w{128, 32, 5, 5, 1};  // 102400 samples, fan_in 800, fan_out 3200
  std::vector<double> v(static_cast<std::size_t>(w.numel()));
  Rng rng(2024);
  const init::Kaiming relu_out{init::FanMode::FanOut, init::Nonlinearity::ReLU};
  const init::Kaiming leaky_in{init::FanMode::FanIn, init::Nonlinearity::LeakyReLU, 0.2};
  SECTION("kaiming_normal") {
    init::kaiming_normal(v.data(), w, rng, relu_out);
    check_distribution(v, 0.025, false);
    init::kaiming_normal(v.data(), w, rng);
    check_distribution(v, std::sqrt(2.0 / 800.0), false);
  }
  SECTION("kaiming_uniform") {
    init::kaiming_uniform(v.data(), w, rng, leaky_in);
    check_distribution(v, std::sqrt(2.0 / 1.04) / std::sqrt(800.0), true);
    init::kaiming_uniform(v.data(), w, rng, relu_out);
    check_distribution(v, 0.025, true);
  }
  SECTION("xavier_normal") {
    init::xavier_normal(v.data(), w, rng, 1.5);
    check_distribution(v, 1.5 * std::sqrt(2.0 / 4000.0), false);
  }
  SECTION("xavier_uniform") {
    init::xavier_uniform(v.data(), w, rng);
    check_distribution(v, std::sqrt(2.0 / 4000.0), true);
  }
  SECTION("float storage") {
    std::vector<float> f(v.size());
    init::kaiming_normal(f.data(), w, rng, relu_out);
    check_distribution(std::vector<double>(f.begin(), f.end()), 0.025, false);
  }
}

TEST_CASE("basics: initialisers apply to a layer's conv weights", "[basics][init]") {
  ConvBlock<float> block(4, 6, 2);  // conv.weight [6, 4, 3, 3, 3], norm.weight, norm.bias
  Parameters<float> params(block);
  Rng rng(5);
  block.reset_parameters(rng);
  std::vector<std::string> visited;
  init::for_each_weight(block, [&](const std::string& name, Param<float>& p) {
    visited.push_back(name);
    init::constant(p.value, p.numel(), 0.0f);  // marks it
    init::kaiming_uniform(p, rng, {init::FanMode::FanOut, init::Nonlinearity::ReLU});
  });
  CHECK(visited == std::vector<std::string>{"conv.weight"});
  const double bound = std::sqrt(3.0) * std::sqrt(2.0) / std::sqrt(6.0 * 27.0);
  const auto& conv = params.entries().at(0);
  REQUIRE(conv.name == "conv.weight");
  int nonzero = 0;
  for (index_t i = 0; i < conv.shape.numel(); ++i) {
    const float x = params.values()[conv.offset + i];
    REQUIRE(std::abs(x) <= bound);
    nonzero += x != 0.0f ? 1 : 0;
  }
  CHECK(nonzero == conv.shape.numel());
  // GroupNorm's parameters are left as reset_parameters set them (weight 1, bias 0).
  const auto& norm_weight = params.entries().at(1);
  CHECK(params.values()[norm_weight.offset] == 1.0f);

  Param<float> unbound(ParamShape{2, 2, 1, 1, 1});
  CHECK_THROWS_WITH(init::xavier_normal(unbound, rng), Catch::Contains("not bound"));
}

// ---- gradient clipping ----------------------------------------------------------------

TEST_CASE("basics: clip_grad_norm matches PyTorch", "[basics][clip][torch]") {
  const std::vector<std::string> names = {"clip_l2_clipped", "clip_l2_unclipped",
                                          "clip_l1_clipped", "clip_inf_clipped",
                                          "clip_p3_clipped"};
  for (const auto& name : names) {
    INFO("fixture basics/" << name);
    const auto file = io::read_safetensors(basics_dir() / (name + ".safetensors"));
    ParamHolder holder({ParamShape{3, 2, 1, 1, 3}, ParamShape{5}, ParamShape{7}});
    Parameters<double> params(holder);
    for (int i = 0; i < 3; ++i) {
      const auto g = file.at("grad_before." + std::to_string(i)).to_double();
      REQUIRE(static_cast<index_t>(g.size()) == holder.params[static_cast<std::size_t>(i)].numel());
      std::copy(g.begin(), g.end(), holder.params[static_cast<std::size_t>(i)].grad);
    }
    const double max_norm = std::stod(file.meta("max_norm"));
    const std::string nt = file.meta("norm_type");
    const double norm_type = nt == "inf" ? kInf : std::stod(nt);
    const double total = optim::clip_grad_norm(params, max_norm, norm_type);
    CHECK(total == Approx(file.at("total_norm").to_double().at(0)).epsilon(1e-14));
    for (int i = 0; i < 3; ++i) {
      const auto g = file.at("grad_after." + std::to_string(i)).to_double();
      for (std::size_t k = 0; k < g.size(); ++k) {
        REQUIRE(holder.params[static_cast<std::size_t>(i)].grad[k] ==
                Approx(g[k]).epsilon(1e-14).margin(1e-300));
      }
    }
  }
}

TEST_CASE("basics: clip_grad_norm on hand values, padding and misuse", "[basics][clip]") {
  // Two parameters: the second starts on a 16-element boundary, so elements 3..15 of the
  // flat buffer are padding; garbage there must neither count nor be scaled.
  ParamHolder holder({ParamShape{3}, ParamShape{4}});
  Parameters<double> params(holder);
  REQUIRE(params.entries()[1].offset == 16);
  auto set_grads = [&] {
    const double g0[] = {3.0, -4.0, 0.0};
    const double g1[] = {0.0, 0.0, 0.0, -12.0};
    std::copy(g0, g0 + 3, holder.params[0].grad);
    std::copy(g1, g1 + 4, holder.params[1].grad);
    for (index_t i = 3; i < 16; ++i) params.grads()[i] = 1000.0;
  };
  set_grads();
  CHECK(optim::grad_norm(params) == 13.0);
  CHECK(optim::grad_norm(params, 1.0) == 19.0);
  CHECK(optim::grad_norm(params, kInf) == 12.0);
  CHECK(optim::grad_norm(params, 3.0) == Approx(std::cbrt(27.0 + 64.0 + 1728.0)).epsilon(1e-15));

  CHECK(optim::clip_grad_norm(params, 26.0) == 13.0);  // coef >= 1: untouched
  CHECK(holder.params[1].grad[3] == -12.0);
  CHECK(optim::clip_grad_norm(params, 6.5) == 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK(holder.params[0].grad[0] == 3.0 * coef);
  CHECK(holder.params[0].grad[1] == -4.0 * coef);
  CHECK(holder.params[1].grad[3] == -12.0 * coef);
  CHECK(optim::grad_norm(params) == Approx(6.5).epsilon(1e-6));
  for (index_t i = 3; i < 16; ++i) REQUIRE(params.grads()[i] == 1000.0);

  set_grads();
  CHECK(optim::clip_grad_norm(params, 6.0, kInf) == 12.0);
  CHECK(holder.params[1].grad[3] == -12.0 * (6.0 / (12.0 + 1e-6)));

  // Non-finite: an error naming the problem, gradients untouched ...
  set_grads();
  holder.params[0].grad[2] = kNaN;
  CHECK_THROWS_WITH(optim::clip_grad_norm(params, 1.0),
                    Catch::Contains("clip_grad_norm") && Catch::Contains("nan") &&
                        Catch::Contains("error_if_nonfinite"));
  CHECK(holder.params[0].grad[0] == 3.0);
  // ... or, when asked, PyTorch's behaviour (the NaN coefficient spreads).
  CHECK(std::isnan(optim::clip_grad_norm(params, 1.0, 2.0, false)));
  CHECK(std::isnan(holder.params[0].grad[0]));
  set_grads();
  holder.params[0].grad[2] = kInf;
  CHECK_THROWS_WITH(optim::clip_grad_norm(params, 1.0, kInf), Catch::Contains("inf"));
  CHECK(optim::clip_grad_norm(params, 1.0, kInf, false) == kInf);
  CHECK(holder.params[0].grad[0] == 0.0);  // coef = 1 / inf = 0

  CHECK_THROWS_WITH(optim::clip_grad_norm(params, -1.0), Catch::Contains("max_norm"));
  CHECK_THROWS_WITH(optim::clip_grad_norm(params, 1.0, 0.0), Catch::Contains("norm_type"));
}

// ---- schedules ------------------------------------------------------------------------

TEST_CASE("basics: cosine, poly and warm-up schedules match PyTorch",
          "[basics][schedule][torch]") {
  const auto file = io::read_safetensors(basics_dir() / "schedules.safetensors");
  const auto cosine = file.at("cosine").to_double();
  const auto poly = file.at("poly").to_double();
  const auto warm = file.at("warmup_cosine").to_double();
  REQUIRE(cosine.size() == 15);
  const optim::CosineAnnealingLR c(0.1, 7, 1e-3);
  const optim::PolyLR p(0.02, 10, 0.9);
  const optim::LinearWarmup w(optim::CosineAnnealingLR(0.05, 8), 4, 0.25);
  for (int e = 0; e < 15; ++e) {
    INFO("epoch " << e);
    const auto k = static_cast<std::size_t>(e);
    CHECK(c.lr_at_epoch(e) == Approx(cosine[k]).epsilon(1e-12).margin(1e-17));
    CHECK(p.lr_at_epoch(e) == Approx(poly[k]).epsilon(1e-12).margin(1e-17));
    CHECK(w.lr_at_epoch(e) == Approx(warm[k]).epsilon(1e-12).margin(1e-17));
  }
}

TEST_CASE("basics: schedules on hand values and misuse", "[basics][schedule]") {
  const optim::CosineAnnealingLR c(1.0, 10, 0.1);
  CHECK(c.lr_at_epoch(0) == 1.0);
  CHECK(c.lr_at_epoch(5) == Approx(0.55).epsilon(1e-15));
  CHECK(c.lr_at_epoch(10) == Approx(0.1).epsilon(1e-15));
  const optim::PolyLR nnunet(1e-2, 1000);  // nnU-Net: exponent 0.9
  CHECK(nnunet.lr_at_epoch(0) == 1e-2);
  CHECK(nnunet.lr_at_epoch(500) == Approx(1e-2 * std::pow(0.5, 0.9)).epsilon(1e-15));
  CHECK(nnunet.lr_at_epoch(1000) == 0.0);
  CHECK(nnunet.lr_at_epoch(1200) == 0.0);
  const optim::PolyLR squared(2.0, 4, 2.0);
  CHECK(squared.lr_at_epoch(1) == 2.0 * 0.75 * 0.75);

  const optim::LinearWarmup w(optim::PolyLR(0.4, 10), 5, 0.1);
  CHECK(w.lr_at_epoch(0) == Approx(0.04).epsilon(1e-15));
  CHECK(w.lr_at_epoch(2) == Approx(0.4 * (0.1 + 0.9 * 0.4)).epsilon(1e-15));
  CHECK(w.lr_at_epoch(5) == 0.4);
  CHECK(w.lr_at_epoch(10) == Approx(0.4 * std::pow(0.5, 0.9)).epsilon(1e-15));
  const optim::LinearWarmup none(optim::MultiStepLR(0.3, {2}, 0.5), 0);
  CHECK(none.lr_at_epoch(0) == 0.3);
  CHECK(none.lr_at_epoch(2) == 0.15);

  CHECK_THROWS_WITH(optim::CosineAnnealingLR(1.0, 0), Catch::Contains("t_max"));
  CHECK_THROWS_WITH(optim::PolyLR(1.0, 10, -1.0), Catch::Contains("exponent"));
  CHECK_THROWS_WITH(optim::LinearWarmup(optim::PolyLR(1.0, 10), 3, 0.0),
                    Catch::Contains("start_factor"));
  CHECK_THROWS_WITH(c.lr_at_epoch(-1), Catch::Contains("epoch must be non-negative"));
}

TEST_CASE("basics: every fixture in basics/ is tested", "[basics][torch]") {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(basics_dir())) {
    if (entry.path().extension() == ".safetensors") on_disk.insert(entry.path().stem().string());
  }
  CHECK(on_disk == std::set<std::string>{"loss_mse_mean", "loss_mse_sum", "loss_l1_mean",
                                         "loss_l1_sum", "clip_l2_clipped", "clip_l2_unclipped",
                                         "clip_l1_clipped", "clip_inf_clipped",
                                         "clip_p3_clipped", "schedules"});
}
