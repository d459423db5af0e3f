// Segmentation metrics: the exact distance transform against brute force and scipy, Dice /
// HD95 / sensitivity / specificity on hand-computed cases and on fixtures computed with scipy
// by tests/fixtures/make_metric_fixtures.py (medpy's hd95 definition), and the BraTS rules.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/metrics/distance_transform.hpp"
#include "revox/metrics/segmentation.hpp"
#include "support/metric_fixtures.hpp"

namespace fs = std::filesystem;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::fixture_files;
using revox::test::load_mask;
using revox::metrics::RegionScores;
using revox::metrics::Spacing;

namespace {

constexpr double kFixtureTol = 1e-9;

bool close(double actual, double expected, double tol = kFixtureTol) {
  if (std::isinf(expected)) return actual == expected;
  return std::abs(actual - expected) <= tol * std::max(1.0, std::abs(expected));
}

Shape5 volume(index_t d, index_t h, index_t w) { return Shape5{1, 1, d, h, w}; }

std::vector<std::uint8_t> random_mask(Shape5 shape, double fraction, revox::Rng& rng) {
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(shape.spatial()));
  for (auto& v : mask) v = rng.uniform01() < fraction ? 1 : 0;
  return mask;
}

Tensor<std::uint8_t> mask_tensor(Shape5 shape) { return Tensor<std::uint8_t>::zeros(shape); }

void set(Tensor<std::uint8_t>& t, index_t d, index_t h, index_t w, std::uint8_t value = 1) {
  t[t.shape().offset(0, 0, d, h, w)] = value;
}

// A box [d0, d1) x [h0, h1) x [w0, w1) set to 1.
void fill_box(Tensor<std::uint8_t>& t, std::array<index_t, 3> begin, std::array<index_t, 3> end) {
  for (index_t d = begin[0]; d < end[0]; ++d)
    for (index_t h = begin[1]; h < end[1]; ++h)
      for (index_t w = begin[2]; w < end[2]; ++w) set(t, d, h, w);
}

std::string scores_string(const RegionScores& s) {
  return "dice " + std::to_string(s.dice) + ", hd95 " + std::to_string(s.hd95) + ", sens " +
         std::to_string(s.sensitivity) + ", spec " + std::to_string(s.specificity);
}

void check_scores(const RegionScores& actual, const double* expected, const std::string& label) {
  INFO(label << ": revox " << scores_string(actual) << "; expected dice " << expected[0]
             << ", hd95 " << expected[1] << ", sens " << expected[2] << ", spec "
             << expected[3]);
  CHECK(close(actual.dice, expected[0]));
  CHECK(close(actual.hd95_pooled, expected[1]));  // the fixtures hold medpy's (pooled) HD95
  CHECK(close(actual.sensitivity, expected[2]));
  CHECK(close(actual.specificity, expected[3]));
}

Spacing load_spacing(const revox::io::SafetensorsFile& file) {
  const auto values = file.at("spacing").to_double();
  REQUIRE(values.size() == 3);
  return Spacing{values[0], values[1], values[2]};
}

}  // namespace

TEST_CASE("squared_distance_transform equals brute force on random volumes", "[metrics][edt]") {
  revox::Rng rng(41);
  const std::vector<Shape5> shapes = {volume(1, 1, 1), volume(5, 6, 7), volume(2, 3, 1),
                                      volume(1, 9, 4), volume(3, 2, 2), volume(7, 5, 11),
                                      volume(9, 1, 8)};
  const std::vector<Spacing> spacings = {{1.0, 1.0, 1.0}, {0.8, 1.3, 2.5}, {3.0, 0.5, 1.0}};
  for (const Shape5& shape : shapes) {
    for (const Spacing& spacing : spacings) {
      for (double fraction : {0.02, 0.2, 0.7, 1.0}) {
        auto features = random_mask(shape, fraction, rng);
        if (fraction < 0.1) std::fill(features.begin(), features.end(), 0);
        if (fraction < 0.1 && shape.spatial() > 1) features[features.size() / 2] = 1;
        std::vector<double> fast(static_cast<std::size_t>(shape.spatial()),
                                 std::numeric_limits<double>::quiet_NaN());
        revox::metrics::squared_distance_transform(features.data(), shape, spacing,
                                                   fast.data());
        const auto expected =
            revox::metrics::reference::squared_distance_transform(features.data(), shape, spacing);
        for (std::size_t i = 0; i < fast.size(); ++i) {
          INFO(shape << " spacing (" << spacing[0] << ", " << spacing[1] << ", " << spacing[2]
                     << ") fraction " << fraction << " voxel " << i << ": fast " << fast[i]
                     << ", brute force " << expected[i]);
          REQUIRE(close(fast[i], expected[i], 1e-12));
        }
      }
    }
  }
}

TEST_CASE("squared_distance_transform is +inf everywhere without features", "[metrics][edt]") {
  const Shape5 shape = volume(3, 4, 5);
  const std::vector<std::uint8_t> none(static_cast<std::size_t>(shape.spatial()), 0);
  const auto out = revox::metrics::squared_distance_transform(none.data(), shape, {1, 1, 1});
  for (double v : out) REQUIRE(v == std::numeric_limits<double>::infinity());
}

TEST_CASE("squared_distance_transform honours the (x, y, z) spacing order", "[metrics][edt]") {
  // One feature at (d, h, w) = (0, 0, 0); spacing x = W: 2 mm, y = H: 3 mm, z = D: 5 mm.
  const Shape5 shape = volume(2, 2, 2);
  std::vector<std::uint8_t> features(8, 0);
  features[0] = 1;
  const auto out = revox::metrics::squared_distance_transform(features.data(), shape, {2, 3, 5});
  CHECK(out[shape.offset(0, 0, 0, 0, 1)] == Approx(4.0));
  CHECK(out[shape.offset(0, 0, 0, 1, 0)] == Approx(9.0));
  CHECK(out[shape.offset(0, 0, 1, 0, 0)] == Approx(25.0));
  CHECK(out[shape.offset(0, 0, 1, 1, 1)] == Approx(38.0));
}

TEST_CASE("squared_distance_transform matches scipy's distance_transform_edt",
          "[metrics][edt][fixtures]") {
  int compared = 0;
  for (const auto& path : fixture_files("metrics")) {
    const auto file = revox::io::read_safetensors(path);
    if (!file.contains("distance_to_truth")) continue;
    const auto truth = load_mask(file, "truth");
    const auto expected = file.at("distance_to_truth").to_double();
    const auto squared = revox::metrics::squared_distance_transform(truth.data(), truth.shape(),
                                                                    load_spacing(file));
    REQUIRE(squared.size() == expected.size());
    for (std::size_t i = 0; i < squared.size(); ++i) {
      INFO(path.filename().string() << " voxel " << i << ": revox " << std::sqrt(squared[i])
                                    << ", scipy " << expected[i]);
      REQUIRE(close(std::sqrt(squared[i]), expected[i]));
    }
    ++compared;
  }
  CHECK(compared >= 8);
}

TEST_CASE("squared_distance_transform rejects bad shapes and spacings", "[metrics][edt]") {
  const std::vector<std::uint8_t> mask(24, 1);
  double out[24];
  CHECK_THROWS_WITH(revox::metrics::squared_distance_transform(mask.data(), Shape5{2, 1, 2, 3, 2},
                                                               {1, 1, 1}, out),
                    Catch::Contains("squared_distance_transform") &&
                        Catch::Contains("(1, 1, D, H, W)"));
  CHECK_THROWS_WITH(revox::metrics::squared_distance_transform(mask.data(), volume(0, 3, 2),
                                                               {1, 1, 1}, out),
                    Catch::Contains("positive extents"));
  CHECK_THROWS_WITH(revox::metrics::squared_distance_transform(mask.data(), volume(2, 3, 4),
                                                               {1, 0, 1}, out),
                    Catch::Contains("spacing must be positive"));
}

TEST_CASE("surface_voxels: 6-neighbourhood erosion, the array border counts as outside",
          "[metrics]") {
  // A full 3x3x3 cube in a 5x5x5 volume: 26 surface voxels, the centre is interior.
  auto cube = mask_tensor(volume(5, 5, 5));
  fill_box(cube, {1, 1, 1}, {4, 4, 4});
  auto surface = revox::metrics::surface_voxels(cube.data(), cube.shape());
  CHECK(std::count(surface.begin(), surface.end(), 1) == 26);
  CHECK(surface[cube.shape().offset(0, 0, 2, 2, 2)] == 0);
  // A mask filling the whole 3x3x3 array: the border is outside, so again 26 of 27.
  auto full = mask_tensor(volume(3, 3, 3));
  fill_box(full, {0, 0, 0}, {3, 3, 3});
  surface = revox::metrics::surface_voxels(full.data(), full.shape());
  CHECK(std::count(surface.begin(), surface.end(), 1) == 26);
  CHECK(surface[full.shape().offset(0, 0, 1, 1, 1)] == 0);
  // A plus-shaped cross: the centre has all 6 neighbours (diagonals do not matter).
  auto cross = mask_tensor(volume(3, 3, 3));
  for (index_t i = 0; i < 3; ++i) {
    set(cross, i, 1, 1);
    set(cross, 1, i, 1);
    set(cross, 1, 1, i);
  }
  surface = revox::metrics::surface_voxels(cross.data(), cross.shape());
  CHECK(std::count(surface.begin(), surface.end(), 1) == 6);
  CHECK(surface[cross.shape().offset(0, 0, 1, 1, 1)] == 0);
}

TEST_CASE("percentile follows numpy.percentile's linear interpolation", "[metrics]") {
  // numpy.percentile([4, 1, 3, 2], 95) = 3.85; ([5], 95) = 5; ([0, 10], 50) = 5.
  CHECK(revox::metrics::percentile({4, 1, 3, 2}, 95) == Approx(3.85).epsilon(1e-15));
  CHECK(revox::metrics::percentile({5}, 95) == 5.0);
  CHECK(revox::metrics::percentile({0, 10}, 50) == Approx(5.0));
  CHECK(revox::metrics::percentile({3, 1, 2}, 100) == 3.0);
  CHECK(revox::metrics::percentile({3, 1, 2}, 0) == 1.0);
  CHECK_THROWS_WITH(revox::metrics::percentile({}, 95), Catch::Contains("no values"));
  CHECK_THROWS_WITH(revox::metrics::percentile({1.0}, 101), Catch::Contains("[0, 100]"));
}

TEST_CASE("score_region: two single voxels at a known distance", "[metrics][hd95]") {
  auto pred = mask_tensor(volume(8, 9, 10));
  auto truth = mask_tensor(volume(8, 9, 10));
  set(pred, 1, 2, 3);
  set(truth, 5, 5, 3);  // 4 along D, 3 along H: 5 voxels apart
  RegionScores s = revox::metrics::score_region(pred, truth, {1, 1, 1});
  CHECK(s.hd95 == Approx(5.0).epsilon(1e-15));
  CHECK(s.dice == 0.0);
  CHECK(s.sensitivity == 0.0);
  CHECK(s.specificity == Approx(718.0 / 719.0));
  // Anisotropic: x (W) 2 mm, y (H) 3 mm, z (D) 0.5 mm; offsets dw = 1, dh = 2, dd = 4.
  auto a = mask_tensor(volume(8, 9, 10));
  auto b = mask_tensor(volume(8, 9, 10));
  set(a, 1, 2, 3);
  set(b, 5, 4, 4);
  s = revox::metrics::score_region(a, b, {2.0, 3.0, 0.5});
  CHECK(s.hd95 == Approx(std::sqrt(4.0 + 36.0 + 4.0)).epsilon(1e-15));
  // The same voxel: identical masks score perfectly.
  s = revox::metrics::score_region(a, a, {2.0, 3.0, 0.5});
  CHECK(s.dice == 1.0);
  CHECK(s.hd95 == 0.0);
  CHECK(s.sensitivity == 1.0);
  CHECK(s.specificity == 1.0);
}

TEST_CASE("score_region: a cube against the same cube shifted by two voxels", "[metrics][hd95]") {
  // 4x4x4 cubes, w in [2, 6) and [4, 8): 56 surface voxels each. From pred's surface:
  // w = 2, all 16 at 2 from truth's w = 4 face; w = 3, the 12 on the d/h rim at 1; w = 4
  // and 5, the 24 on the rim lie on truth's rim too (0); w = 5, the 4 inside at 1. By
  // symmetry the pooled 112 are 48 zeros, 32 ones, 32 twos: position 105.45 is a 2.
  // Overlap 32 voxels: Dice 0.5.
  auto pred = mask_tensor(volume(12, 12, 12));
  auto truth = mask_tensor(volume(12, 12, 12));
  fill_box(pred, {3, 3, 2}, {7, 7, 6});
  fill_box(truth, {3, 3, 4}, {7, 7, 8});
  const auto distances =
      revox::metrics::surface_distances(pred.data(), truth.data(), pred.shape(), {1, 1, 1});
  REQUIRE(distances.size() == 56);
  CHECK(std::count(distances.begin(), distances.end(), 0.0) == 24);
  CHECK(std::count(distances.begin(), distances.end(), 1.0) == 16);
  CHECK(std::count(distances.begin(), distances.end(), 2.0) == 16);
  RegionScores s = revox::metrics::score_region(pred, truth, {1, 1, 1});
  CHECK(s.hd95 == 2.0);
  CHECK(s.dice == 0.5);
  CHECK(s.sensitivity == 0.5);
  CHECK(s.specificity == Approx((1728.0 - 64.0 - 32.0) / (1728.0 - 64.0)).epsilon(1e-15));
  // 3 mm along x (W, the shift axis): the twos become 6 mm.
  s = revox::metrics::score_region(pred, truth, {3, 1, 1});
  CHECK(s.hd95 == Approx(6.0).epsilon(1e-15));
}

TEST_CASE("score_region: the BraTS rules for empty masks", "[metrics][hd95]") {
  auto empty = mask_tensor(volume(6, 7, 8));
  auto blob = mask_tensor(volume(6, 7, 8));
  fill_box(blob, {1, 2, 3}, {3, 4, 6});
  RegionScores s = revox::metrics::score_region(empty, empty, {1, 1, 1});
  CHECK(s.dice == 1.0);
  CHECK(s.hd95 == 0.0);
  CHECK(s.sensitivity == 1.0);
  CHECK(s.specificity == 1.0);
  s = revox::metrics::score_region(empty, blob, {1, 1, 1});  // missed tumour
  CHECK(s.dice == 0.0);
  CHECK(s.hd95 == Approx(373.13).margin(0.005));
  CHECK(s.hd95 == revox::metrics::kBratsEmptyHd95);
  CHECK(s.sensitivity == 0.0);
  CHECK(s.specificity == 1.0);
  s = revox::metrics::score_region(blob, empty, {0.5, 0.5, 0.5});  // false alarm
  CHECK(s.dice == 0.0);
  CHECK(s.hd95 == revox::metrics::kBratsEmptyHd95);
  CHECK(s.sensitivity == 1.0);
  CHECK(s.specificity == Approx((336.0 - 12.0) / 336.0).epsilon(1e-15));
  CHECK(revox::metrics::kBratsEmptyHd95 ==
        Approx(std::sqrt(240.0 * 240.0 + 240.0 * 240.0 + 155.0 * 155.0)).epsilon(1e-7));
}

TEST_CASE("score_region matches scipy/medpy fixtures within 1e-9", "[metrics][hd95][fixtures]") {
  int compared = 0;
  for (const auto& path : fixture_files("metrics")) {
    const auto file = revox::io::read_safetensors(path);
    if (!file.contains("pred")) continue;
    const auto pred = load_mask(file, "pred");
    const auto truth = load_mask(file, "truth");
    const auto expected = file.at("expected").to_double();
    REQUIRE(expected.size() == 4);
    check_scores(revox::metrics::score_region(pred, truth, load_spacing(file)), expected.data(),
                 path.filename().string());
    ++compared;
  }
  CHECK(compared == 11);
}

TEST_CASE("score_brats matches scipy/medpy fixtures on label volumes",
          "[metrics][brats][fixtures]") {
  int compared = 0;
  for (const auto& path : fixture_files("metrics")) {
    const auto file = revox::io::read_safetensors(path);
    if (!file.contains("pred_labels")) continue;
    const auto pred = load_mask(file, "pred_labels");
    const auto truth = load_mask(file, "truth_labels");
    const auto expected = file.at("expected").to_double();
    REQUIRE(expected.size() == 12);
    const int et = std::stoi(file.meta("enhancing_label"));
    const auto scores = revox::metrics::score_brats(pred, truth, et, load_spacing(file));
    for (std::size_t r = 0; r < 3; ++r) {
      check_scores(scores[r], expected.data() + 4 * r,
                   path.filename().string() + " " + revox::metrics::kBratsRegionNames[r]);
    }
    ++compared;
  }
  CHECK(compared == 2);
}

TEST_CASE("every metric fixture file is one the tests read", "[metrics][fixtures]") {
  const auto paths = fixture_files("metrics");
  CHECK(paths.size() == 13);
  for (const auto& path : paths) {
    const auto file = revox::io::read_safetensors(path);
    INFO(path.filename().string());
    CHECK((file.contains("pred") || file.contains("pred_labels")));
    CHECK(path.filename().string().rfind("metrics_", 0) == 0);
  }
}

TEST_CASE("score_brats maps labels to WT, TC, ET", "[metrics][brats]") {
  for (int et : {4, 3}) {
    INFO("enhancing_label " << et);
    auto truth = mask_tensor(volume(4, 5, 6));
    auto pred = mask_tensor(volume(4, 5, 6));
    const auto et8 = static_cast<std::uint8_t>(et);
    set(truth, 0, 0, 0, 1);
    set(truth, 1, 1, 1, 2);
    set(truth, 2, 2, 2, et8);
    set(pred, 0, 0, 0, 2);  // core called edema: right for WT, wrong for TC
    set(pred, 1, 1, 1, 2);
    set(pred, 2, 2, 2, et8);
    const auto s = revox::metrics::score_brats(pred, truth, et, {1, 1, 1});
    CHECK(s[0].dice == 1.0);  // WT
    CHECK(s[0].hd95 == 0.0);
    CHECK(s[1].dice == Approx(2.0 / 3.0));  // TC: truth {core, ET}, pred {ET}
    CHECK(s[1].sensitivity == 0.5);
    // Pooled distances {0, 0, sqrt(12)}: position 1.9, so 0.9 sqrt(12).
    CHECK(s[1].hd95_pooled == Approx(std::sqrt(12.0) * 0.9).epsilon(1e-12));
    // Directed: pred -> truth {0}, truth -> pred {sqrt(12), 0} at position 0.95, so the
    // larger is 0.95 sqrt(12).
    CHECK(s[1].hd95 == Approx(std::sqrt(12.0) * 0.95).epsilon(1e-12));
    CHECK(s[2].dice == 1.0);  // ET
    CHECK(s[2].hd95 == 0.0);
  }
}

TEST_CASE("score_region and score_brats reject misuse with readable messages", "[metrics]") {
  auto a = mask_tensor(volume(4, 5, 6));
  auto b = mask_tensor(volume(4, 5, 7));
  CHECK_THROWS_WITH(revox::metrics::score_region(a, b, {1, 1, 1}),
                    Catch::Contains("score_region") && Catch::Contains("differs"));
  CHECK_THROWS_WITH(revox::metrics::score_region(a, a, {1, -1, 1}),
                    Catch::Contains("spacing must be positive"));
  auto batch = Tensor<std::uint8_t>::zeros(Shape5{2, 1, 3, 3, 3});
  CHECK_THROWS_WITH(revox::metrics::score_region(batch, batch, {1, 1, 1}),
                    Catch::Contains("(1, 1, D, H, W)"));
  CHECK_THROWS_WITH(revox::metrics::score_brats(a, a, 5, {1, 1, 1}),
                    Catch::Contains("enhancing_label must be 4") && Catch::Contains("got 5"));
  CHECK_THROWS_WITH(revox::metrics::score_brats(a, b, 4, {1, 1, 1}), Catch::Contains("differs"));
  auto labels = mask_tensor(volume(4, 5, 6));
  set(labels, 1, 2, 3, 3);  // a 2023 ET label under the 2017-2021 convention
  CHECK_THROWS_WITH(revox::metrics::score_brats(a, labels, 4, {1, 1, 1}),
                    Catch::Contains("truth_labels has label 3") &&
                        Catch::Contains("(1, 2, 3)") && Catch::Contains("{0, 1, 2, 4}"));
  CHECK_THROWS_WITH(revox::metrics::surface_distances(a.data(), labels.data(), a.shape(),
                                                      {1, 1, 1}),
                    Catch::Contains("non-empty"));
}
