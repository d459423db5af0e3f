// The BraTS 2023 lesion-wise Dice and HD95 (revox/metrics/lesion_wise.hpp): connected
// components, the 18-neighbourhood dilation, hand-computed cases, and the challenge's own
// evaluation code on the cases of tests/fixtures/make_lesion_fixtures.py.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/metrics/lesion_wise.hpp"
#include "revox/metrics/segmentation.hpp"
#include "support/metric_fixtures.hpp"

namespace fs = std::filesystem;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::metrics::Hd95Definition;
using revox::metrics::LesionWiseOptions;
using revox::metrics::LesionWiseScores;
using revox::metrics::Spacing;

namespace {

Shape5 volume(index_t d, index_t h, index_t w) { return Shape5{1, 1, d, h, w}; }

void fill_box(std::vector<std::uint8_t>& mask, Shape5 shape, std::array<index_t, 3> begin,
              std::array<index_t, 3> end, std::uint8_t value = 1) {
  for (index_t d = begin[0]; d < end[0]; ++d)
    for (index_t h = begin[1]; h < end[1]; ++h)
      for (index_t w = begin[2]; w < end[2]; ++w) mask[(d * shape.h + h) * shape.w + w] = value;
}

}  // namespace

TEST_CASE("connected_components uses 26-connectivity and reports sizes and boxes",
          "[metrics][lesion]") {
  const Shape5 shape = volume(4, 5, 6);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(shape.spatial()), 0);
  mask[(0 * 5 + 0) * 6 + 0] = 1;
  mask[(1 * 5 + 1) * 6 + 1] = 1;  // corner neighbour of the first: same component
  fill_box(mask, shape, {3, 3, 4}, {4, 5, 6});  // 4 voxels, two voxels away: another one
  const auto c = revox::metrics::connected_components(mask.data(), shape);
  REQUIRE(c.count == 2);
  CHECK(c.voxels == std::vector<index_t>{2, 4});
  CHECK(c.label[0] == 1);
  CHECK(c.label[(1 * 5 + 1) * 6 + 1] == 1);
  CHECK(c.label[(3 * 5 + 4) * 6 + 5] == 2);
  CHECK(c.boxes[0].begin == std::array<index_t, 3>{0, 0, 0});
  CHECK(c.boxes[0].end == std::array<index_t, 3>{2, 2, 2});
  CHECK(c.boxes[1].begin == std::array<index_t, 3>{3, 3, 4});
  CHECK(c.boxes[1].end == std::array<index_t, 3>{4, 5, 6});
}

TEST_CASE("dilate_18 grows by the 18-neighbourhood and clips at the border",
          "[metrics][lesion]") {
  const Shape5 shape = volume(7, 7, 7);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(shape.spatial()), 0);
  mask[(3 * 7 + 3) * 7 + 3] = 1;
  auto count = [](const std::vector<std::uint8_t>& m) {
    return std::count(m.begin(), m.end(), std::uint8_t{1});
  };
  CHECK(count(revox::metrics::dilate_18(mask.data(), shape, 0)) == 1);
  CHECK(count(revox::metrics::dilate_18(mask.data(), shape, 1)) == 19);  // 27 minus 8 corners
  // Twice: the offsets with each |.| <= 2 and |dd| + |dh| + |dw| <= 4: 125 minus the 8
  // (2, 2, 2) and the 24 (2, 2, 1) permutations = 93.
  CHECK(count(revox::metrics::dilate_18(mask.data(), shape, 2)) == 93);
  std::vector<std::uint8_t> corner(static_cast<std::size_t>(shape.spatial()), 0);
  corner[0] = 1;
  CHECK(count(revox::metrics::dilate_18(corner.data(), shape, 1)) == 7);  // 8 minus 1 corner
}

TEST_CASE("lesion_wise_region on hand-computed cases", "[metrics][lesion]") {
  const Shape5 shape = volume(20, 20, 40);
  const std::size_t n = static_cast<std::size_t>(shape.spatial());
  const Spacing iso{1, 1, 1};
  LesionWiseOptions options;  // GLI: dilation 3, lesions <= 50 mm^3 left out

  SECTION("one lesion found exactly, one missed, one false positive") {
    std::vector<std::uint8_t> truth(n, 0), pred(n, 0);
    fill_box(truth, shape, {2, 2, 2}, {6, 6, 6});      // 64 voxels
    fill_box(truth, shape, {12, 12, 30}, {16, 16, 34}); // 64 voxels, missed
    fill_box(pred, shape, {2, 2, 2}, {6, 6, 6});
    fill_box(pred, shape, {2, 12, 20}, {4, 14, 22});    // false positive
    const LesionWiseScores s =
        revox::metrics::lesion_wise_region(pred.data(), truth.data(), shape, iso, options);
    CHECK(s.true_positives == 1);
    CHECK(s.false_negatives == 1);
    CHECK(s.false_positives == 1);
    CHECK(s.small_lesions == 0);
    CHECK(s.dice == Approx(1.0 / 3.0).epsilon(1e-15));
    CHECK(s.hd95 == Approx((0.0 + 374.0 + 374.0) / 3.0).epsilon(1e-15));
  }
  SECTION("a lesion under the size threshold is left out; its prediction is no false positive") {
    std::vector<std::uint8_t> truth(n, 0), pred(n, 0);
    fill_box(truth, shape, {2, 2, 2}, {5, 5, 5});  // 27 voxels
    fill_box(pred, shape, {2, 2, 2}, {3, 3, 3});
    LesionWiseScores s =
        revox::metrics::lesion_wise_region(pred.data(), truth.data(), shape, iso, options);
    CHECK(s.small_lesions == 1);
    CHECK(s.false_positives == 0);
    CHECK(s.dice == 1.0);
    CHECK(s.hd95 == 0.0);
    // At 2 mm voxels the lesion is 216 mm^3 and counts: Dice 2 * 1 / (27 + 1).
    s = revox::metrics::lesion_wise_region(pred.data(), truth.data(), shape, {2, 2, 2}, options);
    CHECK(s.small_lesions == 0);
    CHECK(s.true_positives == 1);
    CHECK(s.dice == Approx(2.0 / 28.0).epsilon(1e-15));
  }
  SECTION("dilation merges nearby lesions; a prediction within the dilation matches") {
    std::vector<std::uint8_t> truth(n, 0), pred(n, 0);
    fill_box(truth, shape, {2, 2, 2}, {6, 6, 6});
    fill_box(truth, shape, {2, 2, 10}, {6, 6, 14});  // 4 voxels apart
    fill_box(pred, shape, {2, 2, 2}, {6, 6, 6});
    LesionWiseScores s =
        revox::metrics::lesion_wise_region(pred.data(), truth.data(), shape, iso, options);
    CHECK(s.true_positives == 1);  // one merged lesion of 128 voxels, half found
    CHECK(s.false_negatives == 0);
    CHECK(s.dice == Approx(2.0 * 64.0 / 192.0).epsilon(1e-15));
    options.dilation_iterations = 1;  // now two lesions, one found
    s = revox::metrics::lesion_wise_region(pred.data(), truth.data(), shape, iso, options);
    CHECK(s.true_positives == 1);
    CHECK(s.false_negatives == 1);
    CHECK(s.dice == Approx(0.5).epsilon(1e-15));
    CHECK(s.hd95 == Approx(374.0 / 2.0).epsilon(1e-15));
    // A prediction next to (not on) a lesion, within the dilation, matches it.
    std::vector<std::uint8_t> near(n, 0);
    fill_box(near, shape, {2, 2, 7}, {6, 6, 8});  // one voxel off the first lesion's face
    options.dilation_iterations = 3;
    s = revox::metrics::lesion_wise_region(near.data(), truth.data(), shape, iso, options);
    CHECK(s.true_positives == 1);
    CHECK(s.false_positives == 0);
    CHECK(s.dice == 0.0);
  }
  SECTION("both empty, and only false positives") {
    std::vector<std::uint8_t> empty(n, 0), pred(n, 0);
    LesionWiseScores s =
        revox::metrics::lesion_wise_region(empty.data(), empty.data(), shape, iso, options);
    CHECK(s.dice == 1.0);
    CHECK(s.hd95 == 0.0);
    fill_box(pred, shape, {2, 2, 2}, {3, 3, 3});
    fill_box(pred, shape, {10, 10, 10}, {11, 11, 11});
    s = revox::metrics::lesion_wise_region(pred.data(), empty.data(), shape, iso, options);
    CHECK(s.false_positives == 2);
    CHECK(s.dice == 0.0);
    CHECK(s.hd95 == 374.0);
  }
}

TEST_CASE("brats2023_lesion_options has the challenge's parameters", "[metrics][lesion]") {
  CHECK(revox::metrics::brats2023_lesion_options("GLI").dilation_iterations == 3);
  CHECK(revox::metrics::brats2023_lesion_options("GLI").min_lesion_volume == 50.0);
  CHECK(revox::metrics::brats2023_lesion_options("MEN").dilation_iterations == 1);
  CHECK(revox::metrics::brats2023_lesion_options("MET").min_lesion_volume == 2.0);
  CHECK_THROWS_WITH(revox::metrics::brats2023_lesion_options("XYZ"),
                    Catch::Contains("XYZ") && Catch::Contains("GLI"));
}

// Tolerances: lesion-wise Dice, lesion counts and the classical Dice are the same arithmetic
// as metrics.py (1e-12); the lesion-wise HD95 as published (DeepMind's area-weighted surface
// elements, revox's default) and with the challenge code's surface call replaced by revox's
// kMaxOfDirected (surface voxels, max of directed numpy percentiles) to 1e-9.
TEST_CASE("lesion_wise_brats matches the BraTS 2023 evaluation code",
          "[metrics][lesion][fixtures]") {
  int compared = 0;
  double largest_difference = 0.0;
  for (const auto& path : revox::test::fixture_files("metrics_lesion")) {
    const auto file = revox::io::read_safetensors(path);
    const auto pred = revox::test::load_mask(file, "pred_labels");
    const auto truth = revox::test::load_mask(file, "truth_labels");
    const auto spacing_values = file.at("spacing").to_double();
    REQUIRE(spacing_values.size() == 3);
    const Spacing spacing{spacing_values[0], spacing_values[1], spacing_values[2]};
    const auto expected = file.at("expected").to_double();
    REQUIRE(expected.size() == 24);
    const int et = std::stoi(file.meta("enhancing_label"));
    auto options = revox::metrics::brats2023_lesion_options(file.meta("challenge"));
    const auto lesion = revox::metrics::lesion_wise_brats(pred, truth, et, spacing, options);
    options.hd95_definition = Hd95Definition::kMaxOfDirected;
    const auto voxel = revox::metrics::lesion_wise_brats(pred, truth, et, spacing, options);
    const auto classical = revox::metrics::score_brats(pred, truth, et, spacing);
    for (std::size_t r = 0; r < 3; ++r) {
      const double* e = expected.data() + 8 * r;
      const auto& s = lesion[r];
      INFO(path.filename().string() << " " << revox::metrics::kBratsRegionNames[r]
                                    << ": revox Dice " << s.dice << " HD95 " << s.hd95 << " TP "
                                    << s.true_positives << " FP " << s.false_positives << " FN "
                                    << s.false_negatives << "; challenge Dice " << e[0]
                                    << " HD95 " << e[1] << " (published " << e[2] << ") TP "
                                    << e[3] << " FP " << e[4] << " FN " << e[5]);
      CHECK(s.dice == Approx(e[0]).margin(1e-12));
      CHECK(s.hd95 == Approx(e[2]).epsilon(1e-9).margin(1e-9));
      CHECK(voxel[r].hd95 == Approx(e[1]).epsilon(1e-9).margin(1e-9));
      CHECK(voxel[r].dice == s.dice);
      largest_difference = std::max(largest_difference, std::abs(voxel[r].hd95 - e[2]));
      CHECK(static_cast<double>(s.true_positives) == e[3]);
      CHECK(static_cast<double>(s.false_positives) == e[4]);
      CHECK(static_cast<double>(s.false_negatives) == e[5]);
      CHECK(classical[r].dice == Approx(e[6]).margin(1e-12));
      // The challenge's full-volume HD95 is 374 when exactly one mask is empty; revox keeps
      // nnU-Net's 373.12866 for the classical score.
      if (e[7] == 374.0) {
        CHECK(classical[r].hd95 == revox::metrics::kBratsEmptyHd95);
      } else {
        CHECK(classical[r].hd95 == Approx(e[7]).epsilon(1e-9).margin(1e-9));
      }
    }
    ++compared;
  }
  CHECK(compared == 8);
  // The surface sampling matters: the two definitions differ on these cases.
  CHECK(largest_difference > 0.1);
  WARN("largest lesion-wise HD95 difference, surface voxels vs surface elements: "
       << largest_difference << " mm");
}

TEST_CASE("lesion_wise_region rejects bad options with readable messages", "[metrics][lesion]") {
  const Shape5 shape = volume(3, 3, 3);
  std::vector<std::uint8_t> mask(27, 0);
  LesionWiseOptions options;
  options.dilation_iterations = -1;
  CHECK_THROWS_WITH(
      revox::metrics::lesion_wise_region(mask.data(), mask.data(), shape, {1, 1, 1}, options),
      Catch::Contains("dilation_iterations"));
  options = LesionWiseOptions{};
  CHECK_THROWS_WITH(
      revox::metrics::lesion_wise_region(mask.data(), mask.data(), shape, {1, 0, 1}, options),
      Catch::Contains("spacing"));
  Tensor<std::uint8_t> labels = Tensor<std::uint8_t>::zeros(shape);
  labels[4] = 7;
  CHECK_THROWS_WITH(revox::metrics::lesion_wise_brats(labels, labels, 3, {1, 1, 1}),
                    Catch::Contains("lesion_wise_brats") && Catch::Contains("label 7"));
}

TEST_CASE("surface_element_hd95: areas and a shifted cube by hand", "[metrics][lesion][hd95]") {
  // Code 1 (one voxel in the corner cube): one triangle with normal (1, 1, 1) / 8.
  const auto iso = revox::metrics::detail::surface_element_areas({1, 1, 1});
  CHECK(iso[0] == 0.0);
  CHECK(iso[255] == 0.0);
  CHECK(iso[1] == Approx(std::sqrt(3.0) / 8.0).epsilon(1e-15));
  CHECK(iso[3] == Approx(std::sqrt(2.0) / 2.0).epsilon(1e-15));  // two voxels: a quad
  // At spacing (2, 3, 5): (1 * 3 * 5, 1 * 2 * 5, 1 * 2 * 3) / 8 = (15, 10, 6) / 8, length 19/8.
  CHECK(revox::metrics::detail::surface_element_areas({2, 3, 5})[1] ==
        Approx(19.0 / 8.0).epsilon(1e-15));

  const Shape5 shape = volume(8, 8, 8);
  std::vector<std::uint8_t> a(512, 0), b(512, 0);
  fill_box(a, shape, {2, 2, 2}, {5, 5, 5});
  fill_box(b, shape, {3, 2, 2}, {6, 5, 5});  // shifted one voxel along D
  // Every corner of one surface is within one voxel of the other's; the faces that moved are
  // 1 voxel away, so the directed 95th percentiles are the step along D.
  CHECK(revox::metrics::surface_element_hd95(a.data(), b.data(), shape, {1, 1, 1}) == 1.0);
  CHECK(revox::metrics::surface_element_hd95(a.data(), b.data(), shape, {1, 1, 2.5}) == 2.5);
  CHECK(revox::metrics::surface_element_hd95(a.data(), a.data(), shape, {1, 1, 1}) == 0.0);
  CHECK(revox::metrics::hausdorff95(a.data(), b.data(), shape, {1, 1, 1},
                                    Hd95Definition::kSurfaceElements) == 1.0);
}
