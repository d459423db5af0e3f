// Tests for revox-brats' ensembling (examples/brats/ensemble.hpp): the intensity histograms,
// the chi-squared distance between them and the choice of model.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "support/tensors.hpp"

#include "../examples/brats/ensemble.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::random_tensor;

TEST_CASE("chi-squared distance between histograms", "[brats][ensemble]") {
  using revox::brats::chi_squared_distance;
  const std::vector<double> a{0.5, 0.5, 0.0};
  const std::vector<double> b{1.0, 0.0, 0.0};
  const std::vector<double> c{0.0, 0.0, 1.0};
  CHECK(chi_squared_distance(a, a) == 0.0);
  CHECK(chi_squared_distance(a, b) == Approx(0.5 * (0.25 / 1.5 + 0.25 / 0.5)));
  CHECK(chi_squared_distance(a, b) == Approx(chi_squared_distance(b, a)));
  CHECK(chi_squared_distance(b, c) == Approx(1.0));  // disjoint
  CHECK_THROWS_WITH(chi_squared_distance(a, std::vector<double>{1.0}),
                    Catch::Contains("3 and 1 bins"));
}

TEST_CASE("intensity histograms: z-scored over the brain, normalised, shift and scale free",
          "[brats][ensemble]") {
  Tensor<float> image = random_tensor<float>(Shape5{1, 4, 6, 7, 8}, 21, 1.0, 3.0);
  for (index_t c = 0; c < 4; ++c) image[c * image.shape().spatial()] = 0.0f;  // background
  revox::brats::HistogramOptions options;
  options.bins = 16;
  const std::vector<double> h = revox::brats::intensity_histogram(image, options, "x");
  REQUIRE(h.size() == 16);
  double total = 0.0;
  for (double v : h) total += v;
  CHECK(total == Approx(1.0));
  // A uniform distribution on [1, 3] z-scores to [-sqrt(3), sqrt(3)]: nothing beyond +-2.
  CHECK(h.front() == 0.0);
  CHECK(h.back() == 0.0);

  Tensor<float> affine = image.clone();
  for (index_t i = 0; i < affine.numel(); ++i) {
    if (affine[i] != 0.0f) affine[i] = 4.0f * affine[i] + 100.0f;
  }
  const std::vector<double> g = revox::brats::intensity_histogram(affine, options, "y");
  CHECK(revox::brats::chi_squared_distance(h, g) < 1e-3);

  options.all_modalities = true;
  const std::vector<double> all = revox::brats::intensity_histogram(image, options, "x");
  REQUIRE(all.size() == 64);
  total = 0.0;
  for (double v : all) total += v;
  CHECK(total == Approx(1.0));

  Tensor<float> empty = Tensor<float>::zeros(Shape5{1, 4, 2, 2, 2});
  CHECK_THROWS_WITH(revox::brats::intensity_histogram(empty, options, "case7"),
                    Catch::Contains("case7"));
}

TEST_CASE("ensemble choice: lowest distance-weighted sum of training Dice",
          "[brats][ensemble]") {
  const std::vector<double> distances{0.1, 0.9};
  // score_0 = 0.1 * 0.9 + 0.9 * 0.1 = 0.18; score_1 = 0.1 * 0.1 + 0.9 * 0.9 = 0.82.
  const auto choice = revox::brats::choose_model(distances, {{0.9, 0.1}, {0.1, 0.9}});
  CHECK(choice.model == 0);
  REQUIRE(choice.scores.size() == 2);
  CHECK(choice.scores[0] == Approx(0.18));
  CHECK(choice.scores[1] == Approx(0.82));
  const auto swapped = revox::brats::choose_model(distances, {{0.1, 0.9}, {0.9, 0.1}});
  CHECK(swapped.model == 1);
  const auto tie = revox::brats::choose_model(distances, {{0.5, 0.5}, {0.5, 0.5}, {0.1, 0.1}});
  CHECK(tie.model == 2);
  const auto first = revox::brats::choose_model(distances, {{0.5, 0.5}, {0.5, 0.5}});
  CHECK(first.model == 0);
  CHECK_THROWS_WITH(revox::brats::choose_model(distances, {{0.5}}),
                    Catch::Contains("1 training Dice values for 2"));
}
