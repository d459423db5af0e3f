// Adam, AdamW, SGD and MultiStepLR: against PyTorch over several steps
// (tests/fixtures/training/optim_*.safetensors, written by
// tests/fixtures/make_training_fixtures.py), checkpoint round trips through visit_state and
// set_steps, the padding of the flat buffers, and misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_optim (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/schedule.hpp"
#include "revox/optim/sgd.hpp"

using namespace revox;

namespace {

// The parameter set of the fixtures: odd sizes, so the flat buffers have padding.
template <class T>
struct ThreeParams {
  Param<T> weight{ParamShape{3, 2, 1, 1, 3}};
  Param<T> bias{ParamShape{5}};
  Param<T> norm_weight{ParamShape{7}};
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("weight", weight);
    fn("bias", bias);
    fn("norm.weight", norm_weight);
  }
};

std::vector<int> parse_ints(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

// Runs the optimizer the fixture names and returns it through a visitor-friendly variant.
template <class T>
struct AnyOptimizer {
  std::unique_ptr<optim::Adam<T>> adam;
  std::unique_ptr<optim::AdamW<T>> adamw;
  std::unique_ptr<optim::SGD<T>> sgd;

  void step() {
    if (adam) adam->step();
    if (adamw) adamw->step();
    if (sgd) sgd->step();
  }
  void set_lr(double lr) {
    if (adam) adam->set_lr(lr);
    if (adamw) adamw->set_lr(lr);
    if (sgd) sgd->set_lr(lr);
  }
  std::int64_t steps() const {
    return adam ? adam->steps() : adamw ? adamw->steps() : sgd->steps();
  }
  template <class Fn>
  void visit_state(Fn&& fn) {
    if (adam) adam->visit_state(fn);
    if (adamw) adamw->visit_state(fn);
    if (sgd) sgd->visit_state(fn);
  }
};

template <class T>
AnyOptimizer<T> make_optimizer(const io::SafetensorsFile& file, Parameters<T>& params) {
  const std::string kind = file.meta("optimizer");
  const auto number = [&](const char* key) { return std::stod(file.meta(key)); };
  AnyOptimizer<T> opt;
  if (kind == "Adam") {
    opt.adam = std::make_unique<optim::Adam<T>>(
        params, optim::AdamOptions{number("lr"), number("beta1"), number("beta2"), number("eps"),
                                   number("weight_decay")});
  } else if (kind == "AdamW") {
    opt.adamw = std::make_unique<optim::AdamW<T>>(
        params, optim::AdamWOptions{number("lr"), number("beta1"), number("beta2"),
                                    number("eps"), number("weight_decay")});
  } else {
    REQUIRE(kind == "SGD");
    opt.sgd = std::make_unique<optim::SGD<T>>(
        params, optim::SGDOptions{number("lr"), number("momentum"), number("dampening"),
                                  number("weight_decay"), file.meta("nesterov") == "true"});
  }
  return opt;
}

// Every element within rtol * max(|expected|, floor * max |expected|): relative, with a
// floor for entries that cancel to ~0 (wider for float, whose inputs carry rounding).
template <class T>
void check_close(const std::string& label, const std::vector<double>& expected, const T* actual,
                 double rtol) {
  const double floor = sizeof(T) == sizeof(double) ? 1e-3 : 1e-2;
  double scale = 0.0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    INFO(label << " element " << i << ": revox " << a << ", torch " << expected[i]);
    REQUIRE(std::abs(a - expected[i]) <= rtol * std::max(std::abs(expected[i]), floor * scale));
  }
}

template <class T>
bool padding_is_zero(TensorView<const T> flat, const std::vector<ParamEntry>& entries) {
  index_t next = 0;
  for (const auto& e : entries) {
    for (index_t i = next; i < e.offset; ++i) {
      if (!(flat[i] == T(0))) return false;
    }
    next = e.offset + e.shape.numel();
  }
  for (index_t i = next; i < flat.numel(); ++i) {
    if (!(flat[i] == T(0))) return false;
  }
  return true;
}

template <class T>
void run_optimizer_fixture(const std::string& name, double rtol) {
  INFO("fixture training/" << name << ", " << (sizeof(T) == 8 ? "double" : "float"));
  const auto file = io::read_safetensors(std::filesystem::path(REVOX_FIXTURE_DIR) / "training" /
                                         (name + ".safetensors"));
  ThreeParams<T> model;
  Parameters<T> params(model);
  for (const auto& e : params.entries()) {
    const auto initial = file.at("initial." + e.name).to_double();
    REQUIRE(static_cast<index_t>(initial.size()) == e.shape.numel());
    for (std::size_t i = 0; i < initial.size(); ++i) {
      params.values()[e.offset + static_cast<index_t>(i)] = static_cast<T>(initial[i]);
    }
  }
  auto opt = make_optimizer<T>(file, params);
  const optim::MultiStepLR schedule(std::stod(file.meta("lr")), parse_ints(file.meta("milestones")),
                                    std::stod(file.meta("gamma")));
  const auto lrs = file.at("lr").to_double();
  const int steps = std::stoi(file.meta("steps"));
  REQUIRE(static_cast<int>(lrs.size()) == steps);
  bool lr_changed = false;
  for (int k = 0; k < steps; ++k) {
    INFO("step " << k);
    const double lr = schedule.lr_at_epoch(k);
    CHECK(lr == Approx(lrs[static_cast<std::size_t>(k)]).epsilon(1e-15));
    lr_changed = lr_changed || lr != lrs[0];
    opt.set_lr(lr);
    // The padding of the gradient buffer holds garbage: the optimizer must not read it.
    std::fill(params.grads().data, params.grads().data + params.size(),
              std::numeric_limits<T>::quiet_NaN());
    const std::string prefix = "step" + std::to_string(k) + ".";
    for (const auto& e : params.entries()) {
      const auto grad = file.at(prefix + "grad." + e.name).to_double();
      for (std::size_t i = 0; i < grad.size(); ++i) {
        params.grads()[e.offset + static_cast<index_t>(i)] = static_cast<T>(grad[i]);
      }
    }
    opt.step();
    CHECK(opt.steps() == k + 1);
    CHECK(padding_is_zero<T>(params.values(), params.entries()));
    for (const auto& e : params.entries()) {
      check_close(prefix + "param." + e.name, file.at(prefix + "param." + e.name).to_double(),
                  params.values().data + e.offset, rtol);
    }
    int buffers = 0;
    opt.visit_state([&](const char* state, TensorView<T> buffer) {
      ++buffers;
      REQUIRE(buffer.numel() == params.size());
      CHECK(padding_is_zero<T>(buffer, params.entries()));
      for (const auto& e : params.entries()) {
        const std::string key = prefix + state + "." + e.name;
        REQUIRE(file.contains(key));
        check_close(key, file.at(key).to_double(), buffer.data + e.offset, rtol);
      }
    });
    // Every state buffer PyTorch has, revox has too.
    std::size_t torch_tensors = 0;
    for (const auto& [key, tensor] : file.tensors) {
      if (key.rfind(prefix, 0) == 0 && key.rfind(prefix + "grad.", 0) != 0 &&
          key.rfind(prefix + "param.", 0) != 0) {
        ++torch_tensors;
      }
    }
    const auto torch_buffers = static_cast<int>(torch_tensors / params.entries().size());
    CHECK(buffers == torch_buffers);
  }
  CHECK(lr_changed);
}

const std::vector<std::string> kOptimFixtures = {
    "optim_adam_wd",      "optim_adam_betas",   "optim_adamw",    "optim_adamw_betas",
    "optim_sgd_momentum", "optim_sgd_nesterov", "optim_sgd_plain"};

// Fills grads with fresh random values (parameter elements only).
template <class T>
void random_grads(Parameters<T>& params, Rng& rng) {
  for (const auto& e : params.entries()) {
    fill_uniform(params.grads().data + e.offset, e.shape.numel(), rng, -1.0, 1.0);
  }
}

// Runs `steps` steps of a fresh optimizer from `make`, checkpoints it (params, state, steps,
// lr), continues both it and a restored copy for two more steps, and requires identical
// results.
template <class Make>
void check_checkpoint_round_trip(Make make) {
  Rng rng(21);
  ThreeParams<double> model_a, model_b;
  Parameters<double> a(model_a), b(model_b);
  for (const auto& e : a.entries()) {
    fill_uniform(a.values().data + e.offset, e.shape.numel(), rng, -1.0, 1.0);
  }
  auto opt_a = make(a);
  for (int k = 0; k < 3; ++k) {
    random_grads(a, rng);
    opt_a.step();
  }
  opt_a.set_lr(opt_a.lr() * 0.5);
  // Restore into a fresh optimizer on other parameters.
  std::copy(a.values().data, a.values().data + a.size(), b.values().data);
  auto opt_b = make(b);
  std::map<std::string, std::vector<double>> saved;
  opt_a.visit_state([&](const char* state, TensorView<double> buffer) {
    saved[state].assign(buffer.data, buffer.data + buffer.numel());
  });
  CHECK_FALSE(saved.empty());
  opt_b.visit_state([&](const char* state, TensorView<double> buffer) {
    REQUIRE(saved.count(state) == 1);
    std::copy(saved[state].begin(), saved[state].end(), buffer.data);
  });
  opt_b.set_steps(opt_a.steps());
  opt_b.set_lr(opt_a.lr());
  CHECK(opt_b.steps() == 3);
  for (int k = 0; k < 2; ++k) {
    random_grads(a, rng);
    std::copy(a.grads().data, a.grads().data + a.size(), b.grads().data);
    opt_a.step();
    opt_b.step();
  }
  CHECK(std::memcmp(a.values().data, b.values().data, a.size() * sizeof(double)) == 0);
}

}  // namespace

TEST_CASE("optim: Adam matches torch.optim.Adam over several steps", "[optim][adam][torch]") {
  for (const char* name : {"optim_adam_wd", "optim_adam_betas"}) {
    run_optimizer_fixture<double>(name, 1e-12);
    run_optimizer_fixture<float>(name, 2e-5);
  }
}

TEST_CASE("optim: AdamW matches torch.optim.AdamW over several steps", "[optim][adamw][torch]") {
  for (const char* name : {"optim_adamw", "optim_adamw_betas"}) {
    run_optimizer_fixture<double>(name, 1e-12);
    run_optimizer_fixture<float>(name, 2e-5);
  }
}

TEST_CASE("optim: SGD matches torch.optim.SGD over several steps", "[optim][sgd][torch]") {
  for (const char* name : {"optim_sgd_momentum", "optim_sgd_nesterov", "optim_sgd_plain"}) {
    run_optimizer_fixture<double>(name, 1e-12);
    run_optimizer_fixture<float>(name, 2e-5);
  }
}

TEST_CASE("optim: every optimizer fixture is tested", "[optim][torch][fixtures]") {
  std::vector<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(REVOX_FIXTURE_DIR) / "training")) {
    const std::string stem = entry.path().stem().string();
    if (entry.path().extension() == ".safetensors" && stem.rfind("optim_", 0) == 0) {
      on_disk.push_back(stem);
    }
  }
  std::sort(on_disk.begin(), on_disk.end());
  auto expected = kOptimFixtures;
  std::sort(expected.begin(), expected.end());
  CHECK(on_disk == expected);
}

TEST_CASE("optim: AdamW without weight decay is Adam without weight decay", "[optim][adamw]") {
  Rng rng(22);
  ThreeParams<float> model_a, model_b;
  Parameters<float> a(model_a), b(model_b);
  for (const auto& e : a.entries()) {
    fill_uniform(a.values().data + e.offset, e.shape.numel(), rng, -1.0, 1.0);
  }
  std::copy(a.values().data, a.values().data + a.size(), b.values().data);
  optim::Adam<float> adam(a, {2e-3, 0.9, 0.99, 1e-6, 0.0});
  optim::AdamW<float> adamw(b, {2e-3, 0.9, 0.99, 1e-6, 0.0});
  for (int k = 0; k < 3; ++k) {
    random_grads(a, rng);
    std::copy(a.grads().data, a.grads().data + a.size(), b.grads().data);
    adam.step();
    adamw.step();
  }
  CHECK(std::memcmp(a.values().data, b.values().data, a.size() * sizeof(float)) == 0);
  // With weight decay they differ (L2 in the gradient vs decoupled decay).
  optim::Adam<float> adam_wd(a, {2e-3, 0.9, 0.99, 1e-6, 0.1});
  optim::AdamW<float> adamw_wd(b, {2e-3, 0.9, 0.99, 1e-6, 0.1});
  adam_wd.step();
  adamw_wd.step();
  CHECK(std::memcmp(a.values().data, b.values().data, a.size() * sizeof(float)) != 0);
  // Defaults are PyTorch's.
  CHECK(optim::AdamOptions{}.weight_decay == 0.0);
  CHECK(optim::AdamWOptions{}.weight_decay == 1e-2);
  CHECK(adam.lr() == 2e-3);
}

TEST_CASE("optim: checkpoint round trip through visit_state and set_steps", "[optim][state]") {
  check_checkpoint_round_trip([](Parameters<double>& p) {
    return optim::Adam<double>(p, {1e-2, 0.9, 0.999, 1e-8, 0.1});
  });
  check_checkpoint_round_trip([](Parameters<double>& p) {
    return optim::AdamW<double>(p, {1e-2, 0.8, 0.99, 1e-8, 0.1});
  });
  check_checkpoint_round_trip([](Parameters<double>& p) {
    return optim::SGD<double>(p, {0.1, 0.9, 0.0, 0.01, true});
  });
  // State names, as PyTorch's state_dict spells them.
  ThreeParams<double> model;
  Parameters<double> params(model);
  std::vector<std::string> names;
  optim::Adam<double>(params).visit_state([&](const char* n, TensorView<double>) { names.push_back(n); });
  CHECK(names == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  // Read-only access for saving.
  const optim::AdamW<double> const_adamw(params);
  index_t visited = 0;
  const_adamw.visit_state([&](const char*, TensorView<const double> v) { visited += v.numel(); });
  CHECK(visited == 2 * params.size());
  const optim::SGD<double> const_sgd(params, {0.1, 0.5});
  const_sgd.visit_state([&](const char*, TensorView<const double> v) { visited += v.numel(); });
  CHECK(visited == 3 * params.size());
  names.clear();
  optim::SGD<double>(params, {0.1, 0.9}).visit_state(
      [&](const char* n, TensorView<double>) { names.push_back(n); });
  CHECK(names == std::vector<std::string>{"momentum_buffer"});
  names.clear();
  optim::SGD<double>(params, {0.1}).visit_state(
      [&](const char* n, TensorView<double>) { names.push_back(n); });
  CHECK(names.empty());
}

TEST_CASE("optim: SGD's momentum buffer starts as the first gradient", "[optim][sgd]") {
  ThreeParams<double> model;
  Parameters<double> params(model);
  Rng rng(23);
  random_grads(params, rng);
  optim::SGD<double> sgd(params, {0.5, 0.9, 0.3, 0.0, false});
  sgd.step();
  for (const auto& e : params.entries()) {
    for (index_t i = e.offset; i < e.offset + e.shape.numel(); ++i) {
      // Buffer = g (not (1 - dampening) g), so p = -lr g.
      REQUIRE(params.values()[i] == -0.5 * params.grads()[i]);
    }
  }
}

TEST_CASE("optim: a parameter longer than a work chunk is updated once per element, padding "
          "never", "[optim][sgd]") {
  // 40000 elements span three of the CPU's work chunks (ops/cpu/optim.hpp, 2^14 each), the
  // small parameters around it leave padding in the flat buffers.
  struct LongParams {
    Param<double> head{ParamShape{5}};
    Param<double> body{ParamShape{40000}};
    Param<double> tail{ParamShape{7}};
    void visit_params(const std::function<void(const char*, Param<double>&)>& fn) {
      fn("head", head);
      fn("body", body);
      fn("tail", tail);
    }
  };
  LongParams model;
  Parameters<double> params(model);
  Rng rng(24);
  fill_uniform(params.grads().data, params.size(), rng, 0.5, 1.5);  // padding too
  optim::SGD<double> sgd(params, {0.5});
  sgd.step();
  std::vector<bool> inside(static_cast<std::size_t>(params.size()), false);
  for (const auto& e : params.entries()) {
    for (index_t i = e.offset; i < e.offset + e.shape.numel(); ++i) {
      inside[static_cast<std::size_t>(i)] = true;
    }
  }
  index_t wrong = 0, padding = 0;
  for (index_t i = 0; i < params.size(); ++i) {
    const double expected = inside[static_cast<std::size_t>(i)] ? -0.5 * params.grads()[i] : 0.0;
    if (!inside[static_cast<std::size_t>(i)]) ++padding;
    if (params.values()[i] != expected) ++wrong;
  }
  CHECK(padding > 0);
  CHECK(wrong == 0);
}

TEST_CASE("optim: MultiStepLR matches torch.optim.lr_scheduler.MultiStepLR", "[optim][schedule]") {
  const auto paper = optim::MultiStepLR::paper();
  CHECK(paper.base_lr() == 1e-4);
  CHECK(paper.gamma() == 0.2);
  CHECK(paper.lr_at_epoch(0) == 1e-4);
  CHECK(paper.lr_at_epoch(249) == 1e-4);
  CHECK(paper.lr_at_epoch(250) == 1e-4 * 0.2);
  CHECK(paper.lr_at_epoch(399) == 1e-4 * 0.2);
  CHECK(paper.lr_at_epoch(400) == 1e-4 * 0.2 * 0.2);
  CHECK(paper.lr_at_epoch(499) == 1e-4 * 0.2 * 0.2);
  // Unsorted and repeated milestones: PyTorch counts a repeated milestone once per listing,
  // and a milestone at epoch 0 applies from the start.
  const optim::MultiStepLR odd(1.0, {5, 0, 3, 3}, 0.5);
  CHECK(odd.milestones() == std::vector<int>{0, 3, 3, 5});
  CHECK(odd.lr_at_epoch(0) == 0.5);
  CHECK(odd.lr_at_epoch(2) == 0.5);
  CHECK(odd.lr_at_epoch(3) == 0.5 * 0.25);
  CHECK(odd.lr_at_epoch(5) == 0.5 * 0.25 * 0.5);
  CHECK(odd.lr_at_epoch(100) == 0.5 * 0.25 * 0.5);
  CHECK(optim::MultiStepLR(0.1, {}).lr_at_epoch(7) == 0.1);

  using Catch::Contains;
  CHECK_THROWS_WITH(optim::MultiStepLR(-1.0, {1}), Contains("MultiStepLR: base_lr must be"));
  CHECK_THROWS_WITH(optim::MultiStepLR(1.0, {1}, 0.0), Contains("gamma must be finite and positive"));
  CHECK_THROWS_WITH(optim::MultiStepLR(1.0, {-2}), Contains("milestones must be non-negative epochs, got -2"));
  CHECK_THROWS_WITH(paper.lr_at_epoch(-1), Contains("epoch must be non-negative, got -1"));
}

TEST_CASE("optim: misuse throws a readable revox::Error", "[optim][errors]") {
  ThreeParams<double> model;
  Parameters<double> params(model);
  using Catch::Contains;
  CHECK_THROWS_WITH(optim::Adam<double>(params, {-1e-3}),
                    Contains("Adam: lr must be finite and non-negative, got -0.001"));
  CHECK_THROWS_WITH(optim::Adam<double>(params, {1e-3, 1.0}),
                    Contains("Adam: beta1 must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(optim::AdamW<double>(params, {1e-3, 0.9, -0.1}),
                    Contains("AdamW: beta2 must be in [0, 1), got -0.1"));
  CHECK_THROWS_WITH(optim::AdamW<double>(params, {1e-3, 0.9, 0.999, -1.0}),
                    Contains("AdamW: eps must be finite and non-negative"));
  CHECK_THROWS_WITH(optim::Adam<double>(params, {1e-3, 0.9, 0.999, 1e-8, -0.5}),
                    Contains("Adam: weight_decay must be finite and non-negative, got -0.5"));
  CHECK_THROWS_WITH(optim::SGD<double>(params, {}),
                    Contains("SGD: lr is required and must be finite and non-negative"));
  CHECK_THROWS_WITH(optim::SGD<double>(params, {0.1, 0.0, 0.0, 0.0, true}),
                    Contains("SGD: Nesterov momentum requires momentum > 0 and dampening 0"));
  CHECK_THROWS_WITH(optim::SGD<double>(params, {0.1, 0.9, 0.1, 0.0, true}),
                    Contains("dampening 0.1"));
  CHECK_THROWS_WITH(optim::SGD<double>(params, {0.1, -0.9}),
                    Contains("SGD: momentum must be finite and non-negative"));
  optim::Adam<double> adam(params);
  CHECK_THROWS_WITH(adam.set_lr(std::numeric_limits<double>::quiet_NaN()),
                    Contains("Adam: lr must be finite"));
  CHECK_THROWS_WITH(adam.set_steps(-3), Contains("Adam: steps must be non-negative, got -3"));
}

// Reference values: torch 1.13, an SGD optimizer with lr 0.01 stepped by the scheduler once
// per epoch, param_groups[0]['lr'] read before each step (CosineAnnealingLR(T_max=10,
// eta_min=0.001); PolynomialLR(total_iters=10, power=0.9); SequentialLR of
// LinearLR(start_factor=0.25, total_iters=3) and CosineAnnealingLR(T_max=5), milestone 3).
TEST_CASE("optim: CosineAnnealingLR, PolyLR and LinearWarmup match PyTorch's schedulers",
          "[optim][schedule]") {
  const double cosine_torch[] = {0.01, 0.009779754323328192, 0.009140576474687263,
                                 0.008145033635316129, 0.006890576474687263, 0.0055,
                                 0.004109423525312737, 0.0028549663646838712,
                                 0.001859423525312737, 0.001220245676671809, 0.001};
  const optim::CosineAnnealingLR cosine(0.01, 10, 0.001);
  for (int e = 0; e <= 10; ++e) {
    INFO("epoch " << e);
    CHECK(cosine.lr_at_epoch(e) == Approx(cosine_torch[e]).epsilon(1e-12).margin(1e-15));
  }
  const double poly_torch[] = {0.01, 0.009095325760829623, 0.008180521460508584,
                               0.007254178469372199, 0.006314458674893553,
                               0.0053588673126814665, 0.00438383290554087,
                               0.003383834619016499, 0.002349237886176038,
                               0.0012589254117941673, 0.0, 0.0};
  const optim::PolyLR poly(0.01, 10);
  for (int e = 0; e <= 11; ++e) {
    INFO("epoch " << e);
    CHECK(poly.lr_at_epoch(e) == Approx(poly_torch[e]).epsilon(1e-12).margin(1e-15));
  }
  // nnU-Net's formula at a known point: lr * (1 - 5/10)^0.9.
  CHECK(poly.lr_at_epoch(5) == Approx(0.01 * std::pow(0.5, 0.9)).epsilon(1e-15));

  const double warm_torch[] = {0.0025, 0.005, 0.0075, 0.01, 0.009045084971874737,
                               0.0065450849718747366, 0.0034549150281252628,
                               0.0009549150281252632, 0.0};
  const optim::LinearWarmup<optim::CosineAnnealingLR> warm(optim::CosineAnnealingLR(0.01, 5),
                                                           3, 0.25);
  for (int e = 0; e <= 8; ++e) {
    INFO("epoch " << e);
    CHECK(warm.lr_at_epoch(e) == Approx(warm_torch[e]).epsilon(1e-12).margin(1e-15));
  }
  // start_factor 1 / (W + 1): equal steps from lr / (W + 1) to lr, then the schedule; no
  // warm-up (W = 0) is the schedule itself.
  const optim::LinearWarmup<optim::PolyLR> ramp(optim::PolyLR(0.02, 100), 4, 1.0 / 5.0);
  for (int e = 0; e < 4; ++e) CHECK(ramp.lr_at_epoch(e) == Approx(0.02 * (e + 1) / 5.0));
  CHECK(ramp.lr_at_epoch(4) == 0.02);
  const optim::LinearWarmup<optim::PolyLR> none(optim::PolyLR(0.02, 100), 0);
  for (int e : {0, 1, 50, 99}) CHECK(none.lr_at_epoch(e) == optim::PolyLR(0.02, 100).lr_at_epoch(e));

  // Continuity: neighbouring epochs of a long schedule differ by at most the largest slope
  // (pi / 2 x lr / t_max for the cosine; the poly's slope grows near the end, bounded here
  // by its last step), and both fall monotonically.
  const optim::CosineAnnealingLR long_cosine(1.0, 1000);
  const optim::PolyLR long_poly(1.0, 1000);
  for (int e = 1; e <= 1000; ++e) {
    const double dc = long_cosine.lr_at_epoch(e - 1) - long_cosine.lr_at_epoch(e);
    REQUIRE(dc >= 0.0);
    REQUIRE(dc <= 3.14159265358979 / 2.0 / 1000.0 + 1e-12);
    const double dp = long_poly.lr_at_epoch(e - 1) - long_poly.lr_at_epoch(e);
    REQUIRE(dp >= 0.0);
    REQUIRE(dp <= std::pow(1.0 / 1000.0, 0.9) + 1e-12);
  }

  using Catch::Contains;
  CHECK_THROWS_WITH(optim::CosineAnnealingLR(1.0, 0), Contains("t_max must be a positive"));
  CHECK_THROWS_WITH(optim::PolyLR(1.0, 10, 0.0), Contains("PolyLR: exponent must be finite and positive"));
  CHECK_THROWS_WITH(optim::LinearWarmup<optim::PolyLR>(poly, -1), Contains("warmup_epochs must be non-negative"));
  CHECK_THROWS_WITH(optim::LinearWarmup<optim::PolyLR>(poly, 2, 0.0), Contains("start_factor must lie in (0, 1]"));
}

#else  // REVOX_GPU_TESTS

// GPU parity of the Adam, AdamW and SGD steps: each runs through its dispatcher on Cuda and on
// Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_optim.cpp.
//
// Tolerance after 3 steps: float 1e-5, double 1e-12 (FMA contraction on the GPU).
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "support/odd_params.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/cuda/optim.cuh"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
Tensor<T> host_copy(TensorView<const T> device) {
  Tensor<T> host(device.shape);
  REVOX_CUDA_CHECK(cudaMemcpy(host.data(), device.data, host.bytes(), cudaMemcpyDeviceToHost));
  return host;
}

// Three steps on the CPU and on the GPU from the same values and gradients (garbage in the
// gradient padding); values and every state buffer compared, padding checked to stay zero.
template <class T, class Optimizer, class Make>
void compare_optimizer(const Cuda& dev, const std::string& name, Make make) {
  revox::Rng rng(207);
  OddParams<T> model_cpu, model_dev;
  revox::Parameters<T> cpu(model_cpu);
  revox::Parameters<T, Cuda> gpu(model_dev);
  for (index_t i = 0; i < cpu.size(); ++i) cpu.values()[i] = static_cast<T>(rng.uniform(-1, 1));
  std::vector<bool> is_param(static_cast<std::size_t>(cpu.size()), false);
  for (const auto& entry : cpu.entries()) {
    for (index_t i = entry.offset; i < entry.offset + entry.shape.numel(); ++i) {
      is_param[static_cast<std::size_t>(i)] = true;
    }
  }
  for (index_t i = 0; i < cpu.size(); ++i) {
    if (!is_param[static_cast<std::size_t>(i)]) cpu.values()[i] = T(0);
  }
  REVOX_CUDA_CHECK(cudaMemcpy(gpu.values().data, cpu.values().data, cpu.size() * sizeof(T),
                              cudaMemcpyHostToDevice));
  Optimizer opt_cpu = make(Cpu{}, cpu);
  auto opt_dev = make(dev, gpu);
  for (int step = 1; step <= 3; ++step) {
    for (index_t i = 0; i < cpu.size(); ++i) {
      cpu.grads()[i] = is_param[static_cast<std::size_t>(i)] ? static_cast<T>(rng.uniform(-1, 1))
                                                             : T(1e3);
    }
    REVOX_CUDA_CHECK(cudaMemcpy(gpu.grads().data, cpu.grads().data, cpu.size() * sizeof(T),
                                cudaMemcpyHostToDevice));
    opt_cpu.step();
    opt_dev.step();
  }
  CUDA_TEST_CHECK(opt_dev.steps() == 3);
  const Tensor<T> values = host_copy<T>(gpu.values());
  check_close(name + " values",
              max_error_same_nonfinite(values.data(), cpu.values().data, cpu.size()),
              tolerance<T>());
  std::vector<Tensor<T>> state_cpu;
  opt_cpu.visit_state([&](const char*, TensorView<T> buffer) {
    Tensor<T> copy(buffer.shape);
    std::memcpy(copy.data(), buffer.data, copy.bytes());
    state_cpu.push_back(std::move(copy));
  });
  std::size_t k = 0;
  index_t dirty = 0;
  opt_dev.visit_state([&](const char* state, TensorView<T> buffer) {
    CUDA_TEST_CHECK(k < state_cpu.size());
    if (k >= state_cpu.size()) return;
    const Tensor<T> host = host_copy<T>(buffer);
    check_close(name + " state " + state, max_error_same_nonfinite(host, state_cpu[k]),
                tolerance<T>());
    for (index_t i = 0; i < host.numel(); ++i) {
      dirty += !is_param[static_cast<std::size_t>(i)] && host[i] != T(0);
    }
    ++k;
  });
  CUDA_TEST_CHECK(k == state_cpu.size());
  for (index_t i = 0; i < values.numel(); ++i) {
    dirty += !is_param[static_cast<std::size_t>(i)] && values[i] != T(0);
  }
  CUDA_TEST_CHECK(dirty == 0);
}

template <class T>
void test_optimizers(const Cuda& dev) {
  namespace optim = revox::optim;
  const std::string prefix = std::string("optim<") + type_name<T>() + ">: ";
  const optim::AdamOptions adam{2e-2, 0.8, 0.95, 1e-6, 0.1};
  compare_optimizer<T, optim::Adam<T>>(dev, prefix + "Adam", [&](const auto& d, auto& p) {
    return optim::Adam<T, std::decay_t<decltype(d)>>(d, p, adam);
  });
  const optim::AdamWOptions adamw{1e-2, 0.9, 0.99, 1e-8, 0.05};
  compare_optimizer<T, optim::AdamW<T>>(dev, prefix + "AdamW", [&](const auto& d, auto& p) {
    return optim::AdamW<T, std::decay_t<decltype(d)>>(d, p, adamw);
  });
  for (const bool nesterov : {false, true}) {
    optim::SGDOptions sgd;
    sgd.lr = 0.1;
    sgd.momentum = 0.9;
    sgd.dampening = nesterov ? 0.0 : 0.25;
    sgd.weight_decay = 0.01;
    sgd.nesterov = nesterov;
    compare_optimizer<T, optim::SGD<T>>(
        dev, prefix + (nesterov ? "SGD Nesterov" : "SGD momentum"),
        [&](const auto& d, auto& p) {
          return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, sgd);
        });
  }
  optim::SGDOptions plain;
  plain.lr = 0.05;
  compare_optimizer<T, optim::SGD<T>>(dev, prefix + "SGD", [&](const auto& d, auto& p) {
    return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, plain);
  });
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_optim", [](const Cuda& dev, auto t) {
    test_optimizers<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
