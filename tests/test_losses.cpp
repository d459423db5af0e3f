// Soft Dice and BCE + Dice on logits: against a plain serial reference, against central
// finite differences, against PyTorch (tests/fixtures/training/loss_*.safetensors, written
// by tests/fixtures/make_training_fixtures.py), on known values, across thread counts, and
// on misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_losses (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/losses/deep_supervision.hpp"
#include "revox/losses/dice.hpp"

using namespace revox;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The loss written as directly as possible, in double, serially.
double reference_loss(const Tensor<double>& x, const Tensor<double>& t, double smooth,
                      double bce_weight, double dice_weight) {
  const Shape5 s = x.shape();
  double dice_sum = 0.0;
  double bce = 0.0;
  for (index_t n = 0; n < s.n; ++n) {
    for (index_t c = 0; c < s.c; ++c) {
      double inter = 0.0, psum = 0.0, tsum = 0.0;
      for (index_t i = 0; i < s.spatial(); ++i) {
        const index_t k = (n * s.c + c) * s.spatial() + i;
        const double p = 1.0 / (1.0 + std::exp(-x[k]));
        inter += p * t[k];
        psum += p;
        tsum += t[k];
        bce += -(t[k] * std::log(p) + (1.0 - t[k]) * std::log(1.0 - p));
      }
      dice_sum += (2.0 * inter + smooth) / (psum + tsum + smooth);
    }
  }
  const double planes = static_cast<double>(s.n * s.c);
  return dice_weight * (1.0 - dice_sum / planes) +
         bce_weight * bce / static_cast<double>(x.numel());
}

template <class T>
Tensor<T> random_logits(Shape5 shape, Rng& rng, double scale = 2.0) {
  Tensor<T> x(shape);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<T>(scale * rng.normal());
  return x;
}

template <class T>
Tensor<T> random_targets(Shape5 shape, Rng& rng, double fraction = 0.4) {
  Tensor<T> t(shape);
  for (index_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform01() < fraction ? T(1) : T(0);
  return t;
}

template <class T>
double call_loss(bool bce, TensorView<const T> x, TensorView<const T> t, TensorView<T> dx,
                 double smooth, double bce_weight, double dice_weight) {
  return bce ? losses::bce_dice_loss(x, t, dx, smooth, bce_weight, dice_weight)
             : losses::soft_dice_loss(x, t, dx, smooth);
}

template <class T>
double call_any_loss(bool batch, bool bce, TensorView<const T> x, TensorView<const T> t,
                     TensorView<T> dx, double smooth, double bce_weight, double dice_weight) {
  if (!batch) return call_loss<T>(bce, x, t, dx, smooth, bce_weight, dice_weight);
  return bce ? losses::batch_bce_dice_loss<T>(x, t, dx, smooth, bce_weight, dice_weight)
             : losses::batch_soft_dice_loss<T>(x, t, dx, smooth);
}

// The batch Dice written directly: per channel, sums over every sample and voxel.
double reference_batch_loss(const Tensor<double>& x, const Tensor<double>& t, double smooth,
                            double bce_weight, double dice_weight) {
  const Shape5 s = x.shape();
  double dice_sum = 0.0, bce = 0.0;
  for (index_t c = 0; c < s.c; ++c) {
    double inter = 0.0, psum = 0.0, tsum = 0.0;
    for (index_t n = 0; n < s.n; ++n) {
      for (index_t i = 0; i < s.spatial(); ++i) {
        const index_t k = (n * s.c + c) * s.spatial() + i;
        const double p = 1.0 / (1.0 + std::exp(-x[k]));
        inter += p * t[k];
        psum += p;
        tsum += t[k];
        bce += -(t[k] * std::log(p) + (1.0 - t[k]) * std::log(1.0 - p));
      }
    }
    dice_sum += (2.0 * inter + smooth) / (psum + tsum + smooth);
  }
  return dice_weight * (1.0 - dice_sum / static_cast<double>(s.c)) +
         bce_weight * bce / static_cast<double>(x.numel());
}

const std::vector<Shape5> kShapes = {{1, 3, 2, 3, 4}, {2, 3, 3, 2, 2}, {1, 1, 1, 1, 1},
                                     {2, 2, 1, 2, 3}, {1, 5, 3, 1, 2}};

// |a - e| <= rtol * max(|e|, floor * max|e|) for every element; returns the worst detail.
bool close_tensors(const std::vector<double>& expected, const double* actual, double rtol,
                   double floor, std::string& detail) {
  double scale = 0.0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  bool ok = true;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double allowed = rtol * std::max(std::abs(expected[i]), floor * scale);
    const double error = std::abs(actual[i] - expected[i]);
    if (!(error <= allowed)) {
      if (ok) {
        std::ostringstream out;
        out.precision(17);
        out << "element " << i << ": revox " << actual[i] << ", expected " << expected[i];
        detail = out.str();
      }
      ok = false;
    }
  }
  return ok;
}

}  // namespace

TEST_CASE("losses: soft Dice and BCE + Dice match a plain reference", "[loss][dice]") {
  Rng rng(11);
  for (const bool bce : {false, true}) {
    for (const Shape5 shape : kShapes) {
      for (const double smooth : {1.0, 1e-3}) {
        INFO("bce " << bce << " shape " << shape << " smooth " << smooth);
        const auto x = random_logits<double>(shape, rng);
        const auto t = random_targets<double>(shape, rng);
        const double bw = bce ? 0.7 : 0.0;
        const double dw = bce ? 1.3 : 1.0;
        const double expected = reference_loss(x, t, smooth, bw, dw);
        auto dx = Tensor<double>::full(shape, kNaN);
        const double loss = call_loss<double>(bce, x.cview(), t.cview(), dx.view(), smooth, bw, dw);
        CHECK(loss == Approx(expected).epsilon(1e-12).margin(1e-14));
        for (index_t i = 0; i < dx.numel(); ++i) REQUIRE(std::isfinite(dx[i]));
        // The loss does not depend on whether the gradient is asked for.
        CHECK(call_loss<double>(bce, x.cview(), t.cview(), TensorView<double>{}, smooth, bw, dw) ==
              loss);

        // float: same loss within float rounding of the inputs' sigmoid, same gradient.
        Tensor<float> xf(shape), tf(shape);
        for (index_t i = 0; i < x.numel(); ++i) {
          xf[i] = static_cast<float>(x[i]);
          tf[i] = static_cast<float>(t[i]);
        }
        auto dxf = Tensor<float>::full(shape, std::numeric_limits<float>::quiet_NaN());
        const double lossf =
            call_loss<float>(bce, xf.cview(), tf.cview(), dxf.view(), smooth, bw, dw);
        CHECK(lossf == Approx(loss).epsilon(1e-6).margin(1e-7));
        double scale = 0.0;
        for (index_t i = 0; i < dx.numel(); ++i) scale = std::max(scale, std::abs(dx[i]));
        for (index_t i = 0; i < dx.numel(); ++i) {
          INFO("element " << i);
          REQUIRE(std::abs(double(dxf[i]) - dx[i]) <= 1e-5 * std::max(std::abs(dx[i]), 0.01 * scale));
        }
      }
    }
  }
}

TEST_CASE("losses: gradients match central finite differences", "[loss][dice][gradcheck]") {
  Rng rng(12);
  const double h = 1e-6;
  for (const bool bce : {false, true}) {
    for (const Shape5 shape : kShapes) {
      INFO("bce " << bce << " shape " << shape);
      auto x = random_logits<double>(shape, rng);
      // Soft targets as well as binary ones: the loss is defined for t in [0, 1].
      Tensor<double> t(shape);
      for (index_t i = 0; i < t.numel(); ++i) {
        t[i] = i % 3 == 0 ? rng.uniform01() : (rng.uniform01() < 0.5 ? 1.0 : 0.0);
      }
      const double smooth = 0.5;
      const double bw = bce ? 0.8 : 0.0;
      const double dw = bce ? 1.2 : 1.0;
      auto dx = Tensor<double>::full(shape, kNaN);
      call_loss<double>(bce, x.cview(), t.cview(), dx.view(), smooth, bw, dw);
      for (index_t i = 0; i < x.numel(); ++i) {
        const double saved = x[i];
        x[i] = saved + h;
        const double plus = call_loss<double>(bce, x.cview(), t.cview(), {}, smooth, bw, dw);
        x[i] = saved - h;
        const double minus = call_loss<double>(bce, x.cview(), t.cview(), {}, smooth, bw, dw);
        x[i] = saved;
        const double numeric = (plus - minus) / (2.0 * h);
        INFO("element " << i << ": analytic " << dx[i] << ", numeric " << numeric);
        REQUIRE(std::abs(dx[i] - numeric) <= 1e-9 + 1e-6 * std::abs(numeric));
      }
    }
  }
}

TEST_CASE("losses: known values", "[loss][dice]") {
  const Shape5 shape{1, 3, 2, 3, 4};
  Rng rng(13);
  const auto t = random_targets<double>(shape, rng);
  Tensor<double> x(shape);
  // A confident, correct prediction: Dice ~ 1, BCE ~ 0.
  for (index_t i = 0; i < x.numel(); ++i) x[i] = t[i] > 0.5 ? 40.0 : -40.0;
  CHECK(losses::soft_dice_loss(x.cview(), t.cview(), TensorView<double>{}) ==
        Approx(0.0).margin(1e-12));
  CHECK(losses::bce_dice_loss(x.cview(), t.cview(), TensorView<double>{}) ==
        Approx(0.0).margin(1e-12));
  // An empty target predicted empty scores Dice smooth / smooth = 1; predicted full, it
  // scores smooth / (voxels + smooth).
  auto empty = Tensor<double>::zeros(shape);
  auto low = Tensor<double>::full(shape, -40.0);
  auto high = Tensor<double>::full(shape, 40.0);
  CHECK(losses::soft_dice_loss(low.cview(), empty.cview(), TensorView<double>{}) ==
        Approx(0.0).margin(1e-12));
  CHECK(losses::soft_dice_loss(high.cview(), empty.cview(), TensorView<double>{}, 2.0) ==
        Approx(1.0 - 2.0 / (24.0 + 2.0)).epsilon(1e-12));
  // Logits of 0: p = 1/2 everywhere, BCE = log 2.
  auto zero = Tensor<double>::zeros(shape);
  const double dice_only = losses::soft_dice_loss(zero.cview(), t.cview(), TensorView<double>{});
  CHECK(losses::bce_dice_loss(zero.cview(), t.cview(), TensorView<double>{}, 1.0, 1.0, 1.0) ==
        Approx(dice_only + std::log(2.0)).epsilon(1e-12));
  CHECK(losses::bce_dice_loss(zero.cview(), t.cview(), TensorView<double>{}, 1.0, 2.0, 0.0) ==
        Approx(2.0 * std::log(2.0)).epsilon(1e-12));
  // Extreme logits stay finite in value and gradient.
  auto extreme = Tensor<double>::full(shape, 700.0);
  for (index_t i = 0; i < extreme.numel(); i += 2) extreme[i] = -700.0;
  auto dx = Tensor<double>::full(shape, kNaN);
  CHECK(std::isfinite(losses::bce_dice_loss(extreme.cview(), t.cview(), dx.view())));
  for (index_t i = 0; i < dx.numel(); ++i) REQUIRE(std::isfinite(dx[i]));
}

TEST_CASE("losses: the result does not depend on the thread count", "[loss][dice]") {
  // Several chunks per plane (16384 elements each), so the parallel reduction has work to split.
  const Shape5 shape{1, 3, 20, 30, 70};
  Rng rng(14);
  const auto x = random_logits<float>(shape, rng);
  const auto t = random_targets<float>(shape, rng);
  const int before = omp_get_max_threads();
  std::vector<double> values;
  std::vector<Tensor<float>> grads;
  for (const int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    grads.push_back(Tensor<float>::full(shape, std::numeric_limits<float>::quiet_NaN()));
    values.push_back(losses::bce_dice_loss(x.cview(), t.cview(), grads.back().view()));
  }
  omp_set_num_threads(before);
  for (std::size_t k = 1; k < values.size(); ++k) {
    CHECK(values[k] == values[0]);
    CHECK(std::memcmp(grads[k].data(), grads[0].data(), grads[0].bytes()) == 0);
  }
  // And the chunked sums agree with the plain reference.
  Tensor<double> xd(shape), td(shape);
  for (index_t i = 0; i < x.numel(); ++i) {
    xd[i] = x[i];
    td[i] = t[i];
  }
  CHECK(values[0] == Approx(reference_loss(xd, td, 1.0, 1.0, 1.0)).epsilon(1e-12));
}

TEST_CASE("losses: PyTorch fixtures", "[loss][dice][torch]") {
  const std::filesystem::path dir = std::filesystem::path(REVOX_FIXTURE_DIR) / "training";
  const std::vector<std::string> names = {"loss_dice_batch2", "loss_dice_smooth_empty",
                                          "loss_dice_soft_targets", "loss_bce_dice_batch2",
                                          "loss_bce_dice_weighted", "loss_batch_dice_batch3",
                                          "loss_batch_bce_dice_empty"};
  std::vector<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string stem = entry.path().stem().string();
    if (entry.path().extension() == ".safetensors" && stem.rfind("loss_", 0) == 0) {
      on_disk.push_back(stem);
    }
  }
  std::sort(on_disk.begin(), on_disk.end());
  auto sorted_names = names;
  std::sort(sorted_names.begin(), sorted_names.end());
  CHECK(on_disk == sorted_names);  // every loss fixture is tested
  for (const auto& name : names) {
    INFO("fixture training/" << name);
    const auto file = io::read_safetensors(dir / (name + ".safetensors"));
    const auto& shape_ref = file.at("logits").shape;
    REQUIRE(shape_ref.size() == 5);
    const Shape5 shape{shape_ref[0], shape_ref[1], shape_ref[2], shape_ref[3], shape_ref[4]};
    const std::string kind = file.meta("loss");
    const bool batch = kind.rfind("batch_", 0) == 0;
    const bool bce = kind == "bce_dice" || kind == "batch_bce_dice";
    CHECK((bce || kind == "soft_dice" || kind == "batch_soft_dice"));
    const double smooth = std::stod(file.meta("smooth"));
    const double bw = std::stod(file.meta("bce_weight"));
    const double dw = std::stod(file.meta("dice_weight"));
    const auto logits = file.at("logits").to_double();
    const auto targets = file.at("targets").to_double();
    const double expected = file.at("loss").to_double().at(0);
    const auto expected_grad = file.at("grad_logits").to_double();

    Tensor<double> x(shape), t(shape);
    std::copy(logits.begin(), logits.end(), x.data());
    std::copy(targets.begin(), targets.end(), t.data());
    auto dx = Tensor<double>::full(shape, kNaN);
    const double loss =
        call_any_loss<double>(batch, bce, x.cview(), t.cview(), dx.view(), smooth, bw, dw);
    CHECK(loss == Approx(expected).epsilon(1e-12));
    std::string detail;
    const bool grad_ok = close_tensors(expected_grad, dx.data(), 1e-12, 0.01, detail);
    INFO("double gradient: " << detail);
    CHECK(grad_ok);

    Tensor<float> xf(shape), tf(shape);
    for (index_t i = 0; i < x.numel(); ++i) {
      xf[i] = static_cast<float>(x[i]);
      tf[i] = static_cast<float>(t[i]);
    }
    auto dxf = Tensor<float>::full(shape, std::numeric_limits<float>::quiet_NaN());
    const double lossf =
        call_any_loss<float>(batch, bce, xf.cview(), tf.cview(), dxf.view(), smooth, bw, dw);
    CHECK(lossf == Approx(expected).epsilon(1e-5));
    std::vector<double> gradf(dxf.data(), dxf.data() + dxf.numel());
    std::string detail_f;
    const bool gradf_ok = close_tensors(expected_grad, gradf.data(), 1e-4, 0.01, detail_f);
    INFO("float gradient: " << detail_f);
    CHECK(gradf_ok);
  }
}

TEST_CASE("losses: misuse throws a readable revox::Error", "[loss][dice][errors]") {
  const Shape5 shape{1, 3, 2, 3, 4};
  Rng rng(15);
  auto x = random_logits<double>(shape, rng);
  auto t = random_targets<double>(shape, rng);
  auto dx = Tensor<double>(shape);
  const Tensor<double> t_wrong(Shape5{1, 2, 2, 3, 4});
  auto dx_wrong = Tensor<double>(Shape5{1, 3, 2, 3, 5});
  using Catch::Contains;
  CHECK_THROWS_WITH(losses::soft_dice_loss(x.cview(), t_wrong.cview(), dx.view()),
                    Contains("soft_dice_loss: targets must have the shape of logits"));
  CHECK_THROWS_WITH(losses::bce_dice_loss(x.cview(), t.cview(), dx_wrong.view()),
                    Contains("bce_dice_loss: dlogits must have the shape of logits"));
  CHECK_THROWS_WITH(losses::soft_dice_loss(TensorView<const double>{}, t.cview(), dx.view()),
                    Contains("logits must be a non-empty"));
  CHECK_THROWS_WITH(losses::soft_dice_loss(x.cview(), t.cview(), dx.view(), 0.0),
                    Contains("smooth must be positive"));
  CHECK_THROWS_WITH(losses::bce_dice_loss(x.cview(), t.cview(), dx.view(), 1.0, -1.0),
                    Contains("bce_weight must be finite and non-negative, got -1"));
  CHECK_THROWS_WITH(losses::bce_dice_loss(x.cview(), t.cview(), dx.view(), 1.0, 1.0, kNaN),
                    Contains("dice_weight must be finite"));

  t.view().at(0, 2, 1, 2, 3) = 1.5;
  CHECK_THROWS_WITH(losses::soft_dice_loss(x.cview(), t.cview(), dx.view()),
                    Contains("targets must lie in [0, 1], got 1.5 at (n=0, c=2, d=1, h=2, w=3)"));
  t.view().at(0, 2, 1, 2, 3) = kNaN;
  CHECK_THROWS_WITH(losses::bce_dice_loss(x.cview(), t.cview(), dx.view()),
                    Contains("targets must lie in [0, 1], got nan"));
  t.view().at(0, 2, 1, 2, 3) = 1.0;
  x.view().at(0, 1, 0, 1, 2) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(losses::soft_dice_loss(x.cview(), t.cview(), dx.view()),
                    Contains("logits must be finite, got inf at (n=0, c=1, d=0, h=1, w=2)"));
  x.view().at(0, 1, 0, 1, 2) = kNaN;
  CHECK_THROWS_WITH(losses::bce_dice_loss(x.cview(), t.cview(), dx.view()),
                    Contains("logits must be finite, got nan"));
  CHECK_THROWS_AS(losses::bce_dice_loss(x.cview(), t.cview(), dx.view()), revox::Error);
}

TEST_CASE("losses: batch Dice matches a plain reference and finite differences, parts of "
          "different sizes equal one batch", "[loss][dice][batch_dice][gradcheck]") {
  Rng rng(16);
  const double h = 1e-6;
  for (const bool bce : {false, true}) {
    for (const Shape5 shape : kShapes) {
      INFO("bce " << bce << " shape " << shape);
      auto x = random_logits<double>(shape, rng);
      const auto t = random_targets<double>(shape, rng);
      const double smooth = 0.5, bw = bce ? 0.8 : 0.0, dw = bce ? 1.2 : 1.0;
      auto dx = Tensor<double>::full(shape, kNaN);
      const double value = call_any_loss<double>(true, bce, x.cview(), t.cview(), dx.view(),
                                                 smooth, bw, dw);
      CHECK(value == Approx(reference_batch_loss(x, t, smooth, bw, dw)).epsilon(1e-12));
      // One sample: the batch Dice is the per-sample Dice, to the last bit.
      if (shape.n == 1) {
        auto per_sample = Tensor<double>::full(shape, kNaN);
        CHECK(call_loss<double>(bce, x.cview(), t.cview(), per_sample.view(), smooth, bw, dw) ==
              value);
        CHECK(std::memcmp(per_sample.data(), dx.data(), dx.bytes()) == 0);
      }
      for (index_t i = 0; i < x.numel(); ++i) {
        const double saved = x[i];
        x[i] = saved + h;
        const double plus = call_any_loss<double>(true, bce, x.cview(), t.cview(), {}, smooth, bw, dw);
        x[i] = saved - h;
        const double minus = call_any_loss<double>(true, bce, x.cview(), t.cview(), {}, smooth, bw, dw);
        x[i] = saved;
        const double numeric = (plus - minus) / (2.0 * h);
        INFO("element " << i << ": analytic " << dx[i] << ", numeric " << numeric);
        REQUIRE(std::abs(dx[i] - numeric) <= 1e-9 + 1e-6 * std::abs(numeric));
      }
    }
  }

  // A batch of 3 given as one tensor, and as parts: samples 0-1 in one, sample 2 in another
  // (the same values); then parts of different spatial sizes against the plain reference on
  // the samples laid side by side in W (a sum over voxels does not see the layout).
  const Shape5 shape{3, 3, 2, 3, 4};
  const auto x = random_logits<double>(shape, rng);
  const auto t = random_targets<double>(shape, rng, 0.2);
  auto whole = Tensor<double>::full(shape, kNaN);
  const double one = losses::batch_bce_dice_loss<double>(x.cview(), t.cview(), whole.view());
  const index_t sample = shape.c * shape.spatial();
  auto part = [&](const Tensor<double>& src, index_t first, index_t count) {
    TensorView<const double> v = src.cview();
    v.data += first * sample;
    v.shape.n = count;
    return v;
  };
  auto grad_a = Tensor<double>::full({2, 3, 2, 3, 4}, kNaN);
  auto grad_b = Tensor<double>::full({1, 3, 2, 3, 4}, kNaN);
  const double parts = losses::batch_bce_dice_loss<double>(
      {part(x, 0, 2), part(x, 2, 1)}, {part(t, 0, 2), part(t, 2, 1)},
      {grad_a.view(), grad_b.view()});
  CHECK(parts == Approx(one).epsilon(1e-14));
  for (index_t i = 0; i < grad_a.numel(); ++i) REQUIRE(grad_a[i] == Approx(whole[i]).epsilon(1e-14));
  for (index_t i = 0; i < grad_b.numel(); ++i) {
    REQUIRE(grad_b[i] == Approx(whole[2 * sample + i]).epsilon(1e-14));
  }
  const Shape5 small{1, 2, 2, 2, 3}, large{1, 2, 3, 2, 3};
  const auto xs = random_logits<double>(small, rng), xl = random_logits<double>(large, rng);
  const auto ts = random_targets<double>(small, rng), tl = random_targets<double>(large, rng);
  // Side by side: (1, 2, 1, 1, 12 + 18) with the channels kept apart.
  Tensor<double> xj(Shape5{1, 2, 1, 1, 30}), tj(Shape5{1, 2, 1, 1, 30});
  for (index_t c = 0; c < 2; ++c) {
    for (index_t i = 0; i < 12; ++i) {
      xj[c * 30 + i] = xs[c * 12 + i];
      tj[c * 30 + i] = ts[c * 12 + i];
    }
    for (index_t i = 0; i < 18; ++i) {
      xj[c * 30 + 12 + i] = xl[c * 18 + i];
      tj[c * 30 + 12 + i] = tl[c * 18 + i];
    }
  }
  CHECK(losses::batch_soft_dice_loss<double>({xs.cview(), xl.cview()}, {ts.cview(), tl.cview()},
                                             {}) ==
        Approx(reference_batch_loss(xj, tj, 1.0, 0.0, 1.0)).epsilon(1e-12));

  using Catch::Contains;
  const Tensor<double> t_two(Shape5{1, 2, 2, 3, 4});
  CHECK_THROWS_WITH(losses::batch_soft_dice_loss<double>({x.cview(), t_two.cview()},
                                                         {t.cview(), t_two.cview()}, {}),
                    Contains("batch_soft_dice_loss: every part must have 3 channels (part 0's), "
                             "part 1 has shape"));
  CHECK_THROWS_WITH(losses::batch_bce_dice_loss<double>(
                        std::vector<TensorView<const double>>{x.cview()},
                        std::vector<TensorView<const double>>{}, {}),
                    Contains("batch_bce_dice_loss: 1 logits parts but 0 targets parts"));
  CHECK_THROWS_WITH(losses::batch_soft_dice_loss<double>(std::vector<TensorView<const double>>{}, {}, {}),
                    Contains("needs at least one part"));
  CHECK_THROWS_WITH(losses::batch_soft_dice_loss<double>({x.cview()}, {t.cview()},
                                                         {whole.view(), whole.view()}),
                    Contains("1 logits parts but 2 dlogits parts"));
}

TEST_CASE("losses: deep-supervision weights and area-downsampled targets",
          "[loss][deep_supervision]") {
  CHECK(losses::deep_supervision_weights(0) == std::vector<double>{1.0});
  const auto w = losses::deep_supervision_weights(2);  // 1, 1/2, 1/4 over 7/4
  REQUIRE(w.size() == 3);
  CHECK(w[0] == Approx(4.0 / 7.0));
  CHECK(w[1] == Approx(2.0 / 7.0));
  CHECK(w[2] == Approx(1.0 / 7.0));
  CHECK(w[0] + w[1] + w[2] == Approx(1.0).epsilon(1e-15));

  // (1, 2, 4, 4, 4) binary targets: level 1 averages 2x2x2 cubes, level 2 the whole volume;
  // each level keeps each channel's mean (its volume share).
  Rng rng(17);
  const Shape5 shape{1, 2, 4, 4, 4};
  const auto t = random_targets<float>(shape, rng, 0.3);
  const auto half = losses::downsample_targets(t, 1);
  const auto whole = losses::downsample_targets(t, 2);
  CHECK(half.shape() == Shape5{1, 2, 2, 2, 2});
  CHECK(whole.shape() == Shape5{1, 2, 1, 1, 1});
  const auto level0 = losses::downsample_targets(t, 0);
  CHECK(std::memcmp(level0.data(), t.data(), t.bytes()) == 0);
  for (index_t c = 0; c < 2; ++c) {
    double mean = 0.0, half_mean = 0.0;
    for (index_t i = 0; i < 64; ++i) mean += t[c * 64 + i] / 64.0;
    for (index_t i = 0; i < 8; ++i) half_mean += half[c * 8 + i] / 8.0;
    CHECK(whole[c] == Approx(mean).epsilon(1e-6));
    CHECK(half_mean == Approx(mean).epsilon(1e-6));
    // One coarse voxel by hand: (d, h, w) = (1, 0, 1) covers d 2-3, h 0-1, w 2-3.
    double cube = 0.0;
    for (index_t d = 2; d < 4; ++d) {
      for (index_t h = 0; h < 2; ++h) {
        for (index_t x = 2; x < 4; ++x) cube += t.cview().at(0, c, d, h, x);
      }
    }
    CHECK(half.cview().at(0, c, 1, 0, 1) == Approx(cube / 8.0));
  }
  using Catch::Contains;
  CHECK_THROWS_WITH(losses::downsample_targets(t, 3),
                    Contains("downsample_targets: extents") && Contains("must be divisible by 2^3 = 8"));
  CHECK_THROWS_WITH(losses::deep_supervision_weights(-1), Contains("extra levels must be in [0, 30]"));
}

#else  // REVOX_GPU_TESTS

// GPU parity of the Dice and BCE + Dice losses: each runs through its dispatcher on Cuda and on
// Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_dice_loss.cpp.
//
// Tolerances: value 1e-12 relative; dlogits float 1e-5, double 1e-12 relative to the largest
// |dlogit| (device exp/log1p are within 2 ulp of the host's).
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/ops/cuda/dice_loss.cuh"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
void test_losses(const Cuda& dev) {
  revox::Rng rng(206);
  const std::string prefix = std::string("losses<") + type_name<T>() + ">: ";
  for (const Shape5 shape : {kOddShape, Shape5{2, 3, 20, 30, 40}}) {
    const Tensor<T> logits = random_tensor<T>(shape, rng, -6.0, 6.0);
    Tensor<T> targets = random_tensor<T>(shape, rng, 0.0, 1.0);
    for (index_t i = 0; i < targets.numel(); i += 2) targets[i] = targets[i] < T(0.5) ? T(0) : T(1);
    const auto logits_dev = revox::to_device(logits);
    const auto targets_dev = revox::to_device(targets);
    for (const bool bce : {false, true}) {
      const std::string name = prefix + (bce ? "bce_dice_loss" : "soft_dice_loss");
      Tensor<T> dx = nan_tensor<T>(shape);
      auto dx_dev = device_prefilled<T>(dev, shape);
      double value = 0.0, value_dev = 0.0;
      if (bce) {
        value = revox::losses::bce_dice_loss(Cpu{}, logits.cview(), targets.cview(), dx.view(),
                                             0.5, 2.0, 0.75);
        value_dev = revox::losses::bce_dice_loss(dev, logits_dev.cview(), targets_dev.cview(),
                                                 dx_dev.view(), 0.5, 2.0, 0.75);
      } else {
        value = revox::losses::soft_dice_loss(logits.cview(), targets.cview(), dx.view());
        value_dev = revox::losses::soft_dice_loss(dev, logits_dev.cview(), targets_dev.cview(),
                                                  dx_dev.view());
      }
      check_close(name + " value", std::abs(value_dev - value) / std::abs(value), 1e-12);
      check_close(name + " dlogits", scaled_error(revox::to_host(dx_dev), dx), tolerance<T>());
    }

    // A non-finite logit: the CPU's message, and dlogits left as it was.
    Tensor<T> bad = logits.clone();
    bad[shape.numel() / 3] = nan<T>();
    bad[shape.numel() / 2] = std::numeric_limits<T>::infinity();
    const auto bad_dev = revox::to_device(bad);
    std::string message_cpu, message_dev;
    try {
      revox::losses::bce_dice_loss(bad.cview(), targets.cview(), TensorView<T>{});
    } catch (const revox::Error& error) {
      message_cpu = error.what();
    }
    auto dx_dev = device_prefilled<T>(dev, shape);
    try {
      revox::losses::bce_dice_loss(dev, bad_dev.cview(), targets_dev.cview(), dx_dev.view());
    } catch (const revox::Error& error) {
      message_dev = error.what();
    }
    CUDA_TEST_CHECK(!message_cpu.empty());
    CUDA_TEST_CHECK(message_dev == message_cpu);
    if (message_dev != message_cpu) {
      std::printf("  cpu: %s\n  gpu: %s\n", message_cpu.c_str(), message_dev.c_str());
    }
    const Tensor<T> untouched = revox::to_host(dx_dev);
    index_t written = 0;
    for (index_t i = 0; i < untouched.numel(); ++i) written += untouched[i] != T(kDevicePrefill);
    CUDA_TEST_CHECK(written == 0);
  }
}

}  // namespace

int main() {
  return run_parity_test("cuda.test_losses", [](const Cuda& dev, auto t) {
    test_losses<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
