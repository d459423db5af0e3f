// Augmentation: analytic checks of the one-pass coordinate map (rotated box volume and
// centroid, scaling, flips as involutions, exact identity, linear images reproduced exactly),
// the fast path against the per-voxel reference, labels staying in their set, seeds, and
// misuse.
#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <vector>

#include "revox/data/augment.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::data::AugmentOptions;
using revox::data::AugmentSample;
using revox::test::identical;

namespace {

constexpr double kPi = 3.14159265358979323846;

AugmentOptions no_augmentation() {
  AugmentOptions options;
  options.rotation_degrees = 0.0;
  options.scale = 0.0;
  options.flip_probability = 0.0;
  options.intensity = 0.0;
  options.intensity_shift = 0.0;
  options.elastic_sigma = 0.0;
  return options;
}

// A sample with only the affine part set (no intensity change, no elastic field).
AugmentSample affine_sample(Shape5 shape, double rotation_degrees, double scale,
                            bool flip_d = false, bool flip_h = false, bool flip_w = false) {
  revox::Rng rng(0);
  AugmentSample s = revox::data::draw_augmentation(no_augmentation(), rng, shape);
  s.rotation_degrees = rotation_degrees;
  s.scale = scale;
  s.flip[0] = flip_d;
  s.flip[1] = flip_h;
  s.flip[2] = flip_w;
  return s;
}

Tensor<float> random_image(Shape5 shape, revox::Rng& rng) {
  return revox::test::random_tensor<float>(shape, rng, -2.0, 2.0);
}

// Random blobs of the BraTS 2020 labels {0, 1, 2, 4}, piecewise constant over 2^3 cells so
// that nearest-neighbour resampling keeps every value present.
Tensor<std::uint8_t> random_labels(Shape5 shape, revox::Rng& rng) {
  Tensor<std::uint8_t> t(shape);
  const std::uint8_t values[4] = {0, 1, 2, 4};
  const index_t cells_h = (shape.h + 1) / 2;
  const index_t cells_w = (shape.w + 1) / 2;
  std::vector<std::uint8_t> cell(static_cast<std::size_t>(((shape.d + 1) / 2) * cells_h * cells_w));
  for (auto& v : cell) v = values[rng.below(4)];
  for (index_t n = 0; n < shape.n; ++n)
    for (index_t d = 0; d < shape.d; ++d)
      for (index_t h = 0; h < shape.h; ++h)
        for (index_t w = 0; w < shape.w; ++w)
          t.view().at(n, 0, d, h, w) =
              cell[static_cast<std::size_t>(((d / 2) * cells_h + h / 2) * cells_w + w / 2)];
  return t;
}

struct Moments {
  double mass = 0.0;
  double centroid[3] = {0.0, 0.0, 0.0};
};

template <class T>
Moments moments(const Tensor<T>& t) {
  Moments m;
  const Shape5 s = t.shape();
  for (index_t d = 0; d < s.d; ++d)
    for (index_t h = 0; h < s.h; ++h)
      for (index_t w = 0; w < s.w; ++w) {
        const double v = static_cast<double>(t.view().at(0, 0, d, h, w));
        m.mass += v;
        m.centroid[0] += v * static_cast<double>(d);
        m.centroid[1] += v * static_cast<double>(h);
        m.centroid[2] += v * static_cast<double>(w);
      }
  for (double& c : m.centroid) c /= m.mass;
  return m;
}

}  // namespace

TEST_CASE("augment: zero-strength augmentation is exactly the identity", "[data][augment]") {
  revox::Rng rng(11);
  for (const Shape5 shape : {Shape5{1, 4, 7, 9, 11}, Shape5{2, 1, 1, 1, 1}, Shape5{1, 2, 2, 3, 2}}) {
    INFO("shape " << shape);
    const AugmentSample s = revox::data::draw_augmentation(no_augmentation(), rng, shape);
    CHECK(s.rotation_degrees == 0.0);
    CHECK(s.scale == 1.0);
    CHECK_FALSE(s.has_elastic());
    const Tensor<float> image = random_image(shape, rng);
    const Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), rng);
    Tensor<float> out = image.clone();
    Tensor<std::uint8_t> out_labels = labels.clone();
    revox::data::augment(out, &out_labels, s);
    CHECK(identical(out, image));
    CHECK(identical(out_labels, labels));
  }
}

TEST_CASE("augment: flips reverse one axis and are involutions", "[data][augment]") {
  revox::Rng rng(12);
  const Shape5 shape{1, 2, 5, 6, 7};
  const Tensor<float> image = random_image(shape, rng);
  const Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), rng);
  for (int axis = 0; axis < 3; ++axis) {
    INFO("axis " << axis);
    const AugmentSample s = affine_sample(shape, 0.0, 1.0, axis == 0, axis == 1, axis == 2);
    Tensor<float> once = image.clone();
    Tensor<std::uint8_t> once_labels = labels.clone();
    revox::data::augment(once, &once_labels, s);
    bool reversed = true;
    for (index_t c = 0; c < shape.c; ++c)
      for (index_t d = 0; d < shape.d; ++d)
        for (index_t h = 0; h < shape.h; ++h)
          for (index_t w = 0; w < shape.w; ++w) {
            const index_t sd = axis == 0 ? shape.d - 1 - d : d;
            const index_t sh = axis == 1 ? shape.h - 1 - h : h;
            const index_t sw = axis == 2 ? shape.w - 1 - w : w;
            reversed = reversed && once.view().at(0, c, d, h, w) == image.view().at(0, c, sd, sh, sw);
            if (c == 0) {
              reversed = reversed &&
                         once_labels.view().at(0, 0, d, h, w) == labels.view().at(0, 0, sd, sh, sw);
            }
          }
    CHECK(reversed);
    CHECK_FALSE(identical(once, image));
    revox::data::augment(once, &once_labels, s);
    CHECK(identical(once, image));
    CHECK(identical(once_labels, labels));
  }
}

TEST_CASE("augment: a rotated or scaled box keeps its volume and centroid", "[data][augment]") {
  const Shape5 shape{1, 1, 24, 40, 40};
  const index_t lo[3] = {8, 10, 20};
  const index_t hi[3] = {16, 22, 32};  // exclusive
  Tensor<float> box = Tensor<float>::zeros(shape);
  Tensor<std::uint8_t> box_labels = Tensor<std::uint8_t>::zeros(shape);
  for (index_t d = lo[0]; d < hi[0]; ++d)
    for (index_t h = lo[1]; h < hi[1]; ++h)
      for (index_t w = lo[2]; w < hi[2]; ++w) {
        box.view().at(0, 0, d, h, w) = 1.0f;
        box_labels.view().at(0, 0, d, h, w) = 1;
      }
  const double volume = static_cast<double>((hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]));
  const double centre[3] = {11.5, 19.5, 19.5};
  const double source_centroid[3] = {11.5, 15.5, 25.5};

  SECTION("rotation about the longitudinal axis") {
    for (const double degrees : {-20.0, 7.0, 17.0}) {
      INFO("rotation " << degrees << " degrees");
      const AugmentSample s = affine_sample(shape, degrees, 1.0);
      Tensor<float> image = box.clone();
      Tensor<std::uint8_t> labels = box_labels.clone();
      revox::data::augment(image, &labels, s);
      // Output p reads source c + R (p - c), so the content moves by R^T about the centre.
      const double a = degrees * kPi / 180.0;
      const double uh = source_centroid[1] - centre[1];
      const double uw = source_centroid[2] - centre[2];
      const double expected[3] = {source_centroid[0],
                                  centre[1] + std::cos(a) * uh + std::sin(a) * uw,
                                  centre[2] - std::sin(a) * uh + std::cos(a) * uw};
      const Moments m = moments(image);
      const Moments ml = moments(labels);
      CHECK(m.mass == Approx(volume).epsilon(0.01));
      CHECK(ml.mass == Approx(volume).epsilon(0.04));
      for (int axis = 0; axis < 3; ++axis) {
        INFO("axis " << axis);
        CHECK(std::abs(m.centroid[axis] - expected[axis]) < 0.1);
        CHECK(std::abs(ml.centroid[axis] - expected[axis]) < 0.3);
      }
    }
  }
  SECTION("isotropic scaling") {
    for (const double scale : {0.9, 1.1}) {
      INFO("scale " << scale);
      const AugmentSample s = affine_sample(shape, 0.0, scale);
      Tensor<float> image = box.clone();
      revox::data::augment(image, nullptr, s);
      const Moments m = moments(image);
      CHECK(m.mass == Approx(volume * scale * scale * scale).epsilon(0.02));
      for (int axis = 0; axis < 3; ++axis) {
        const double expected = centre[axis] + scale * (source_centroid[axis] - centre[axis]);
        CHECK(std::abs(m.centroid[axis] - expected) < 0.1);
      }
    }
  }
}

TEST_CASE("augment: a linear image is reproduced exactly through the whole map", "[data][augment]") {
  // Trilinear interpolation reproduces a linear function exactly, so on voxels whose source
  // lies inside the volume the output must equal f(q(p)) for the reference map q. This
  // checks rotation, scaling, flips and the elastic field as one composed coordinate map.
  const Shape5 shape{1, 1, 14, 20, 18};
  auto f = [](double d, double h, double w) { return 0.5 * d - 0.25 * h + 0.75 * w + 3.0; };
  Tensor<float> linear(shape);
  for (index_t d = 0; d < shape.d; ++d)
    for (index_t h = 0; h < shape.h; ++h)
      for (index_t w = 0; w < shape.w; ++w)
        linear.view().at(0, 0, d, h, w) = static_cast<float>(
            f(static_cast<double>(d), static_cast<double>(h), static_cast<double>(w)));
  AugmentOptions options;
  options.intensity = 0.0;
  options.elastic_sigma = 1.5;
  options.flip_probability = 0.5;
  revox::Rng rng(21);
  for (int trial = 0; trial < 3; ++trial) {
    const AugmentSample s = revox::data::draw_augmentation(options, rng, shape);
    INFO(s);
    Tensor<float> image = linear.clone();
    revox::data::augment(image, nullptr, s);
    index_t checked = 0;
    double worst = 0.0;
    for (index_t d = 0; d < shape.d; ++d)
      for (index_t h = 0; h < shape.h; ++h)
        for (index_t w = 0; w < shape.w; ++w) {
          double q[3];
          revox::data::reference::source_position(s, d, h, w, q);
          if (q[0] < 0 || q[0] > static_cast<double>(shape.d - 1) || q[1] < 0 ||
              q[1] > static_cast<double>(shape.h - 1) || q[2] < 0 ||
              q[2] > static_cast<double>(shape.w - 1)) {
            continue;
          }
          ++checked;
          worst = std::max(worst, std::abs(image.view().at(0, 0, d, h, w) - f(q[0], q[1], q[2])));
        }
    CHECK(checked > shape.spatial() / 3);
    CHECK(worst < 1e-4);
  }
}

TEST_CASE("augment: one pass equals three successive resamplings on a linear image", "[data][augment]") {
  // rotate, then scale, then flip (three passes) composes to q = c + S^-1 R F (p - c), the
  // single pass with all three; compared where every route stays inside the volume.
  const Shape5 shape{1, 1, 12, 30, 30};
  auto f = [](double d, double h, double w) { return 0.3 * d + 0.6 * h - 0.45 * w; };
  Tensor<float> linear(shape);
  for (index_t d = 0; d < shape.d; ++d)
    for (index_t h = 0; h < shape.h; ++h)
      for (index_t w = 0; w < shape.w; ++w)
        linear.view().at(0, 0, d, h, w) = static_cast<float>(
            f(static_cast<double>(d), static_cast<double>(h), static_cast<double>(w)));
  const double degrees = 13.0;
  const double scale = 1.07;
  Tensor<float> three_pass = linear.clone();
  revox::data::augment(three_pass, nullptr, affine_sample(shape, degrees, 1.0));
  revox::data::augment(three_pass, nullptr, affine_sample(shape, 0.0, scale));
  revox::data::augment(three_pass, nullptr, affine_sample(shape, 0.0, 1.0, false, true, true));
  Tensor<float> one_pass = linear.clone();
  revox::data::augment(one_pass, nullptr, affine_sample(shape, degrees, scale, false, true, true));
  // Inside a disc of radius 9 about the centre both routes read only interior voxels.
  index_t compared = 0;
  double worst = 0.0;
  for (index_t d = 0; d < shape.d; ++d)
    for (index_t h = 0; h < shape.h; ++h)
      for (index_t w = 0; w < shape.w; ++w) {
        const double rh = static_cast<double>(h) - 14.5;
        const double rw = static_cast<double>(w) - 14.5;
        if (rh * rh + rw * rw > 81.0) continue;
        ++compared;
        worst = std::max(worst, static_cast<double>(std::abs(one_pass.view().at(0, 0, d, h, w) -
                                                              three_pass.view().at(0, 0, d, h, w))));
      }
  CHECK(compared > 2000);
  CHECK(worst < 1e-4);
  // And the one pass is not accidentally the identity.
  CHECK_FALSE(identical(one_pass, linear));
}

TEST_CASE("augment: fast path matches the per-voxel reference", "[data][augment]") {
  AugmentOptions options;
  options.elastic_sigma = 2.0;
  options.intensity_shift = 0.1;
  revox::Rng rng(31);
  const Shape5 shapes[] = {{1, 4, 5, 6, 7}, {2, 1, 1, 1, 1}, {1, 2, 2, 3, 2},
                           {2, 3, 9, 8, 10}, {1, 1, 3, 17, 4}};
  for (const Shape5 shape : shapes) {
    for (const index_t points : {2, 4}) {
      options.elastic_control_points = points;
      const AugmentSample s = revox::data::draw_augmentation(options, rng, shape);
      INFO("shape " << shape << ", " << s);
      const Tensor<float> image = random_image(shape, rng);
      const Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), rng);
      Tensor<float> fast = Tensor<float>::full(shape, std::numeric_limits<float>::quiet_NaN());
      Tensor<float> slow = Tensor<float>::full(shape, -7.0f);
      Tensor<std::uint8_t> fast_labels = Tensor<std::uint8_t>::full(labels.shape(), 200);
      Tensor<std::uint8_t> slow_labels = Tensor<std::uint8_t>::full(labels.shape(), 201);
      revox::data::augment_into(s, image.cview(), fast.view(), labels.cview(), fast_labels.view());
      revox::data::reference::augment_into(s, image.cview(), slow.view(), labels.cview(),
                                       slow_labels.view());
      double worst = 0.0;
      for (index_t i = 0; i < fast.numel(); ++i) {
        worst = std::max(worst, static_cast<double>(std::abs(fast[i] - slow[i])));
      }
      CHECK(worst < 1e-5);
      CHECK(identical(fast_labels, slow_labels));
    }
  }
}

TEST_CASE("augment: results do not depend on the thread count", "[data][augment]") {
  const Shape5 shape{1, 2, 11, 13, 12};
  revox::Rng rng(41);
  const AugmentSample s = revox::data::draw_augmentation(AugmentOptions{}, rng, shape);
  const Tensor<float> image = random_image(shape, rng);
  const Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), rng);
  const int threads = omp_get_max_threads();
  Tensor<float> serial = image.clone();
  Tensor<std::uint8_t> serial_labels = labels.clone();
  omp_set_num_threads(1);
  revox::data::augment(serial, &serial_labels, s);
  omp_set_num_threads(3);
  Tensor<float> parallel = image.clone();
  Tensor<std::uint8_t> parallel_labels = labels.clone();
  revox::data::augment(parallel, &parallel_labels, s);
  omp_set_num_threads(threads);
  CHECK(identical(serial, parallel));
  CHECK(identical(serial_labels, parallel_labels));
}

TEST_CASE("augment: labels stay in the label set", "[data][augment]") {
  const Shape5 shape{1, 4, 16, 20, 18};
  AugmentOptions options;
  options.elastic_sigma = 3.0;
  revox::Rng rng(51);
  for (int trial = 0; trial < 4; ++trial) {
    Tensor<float> image = random_image(shape, rng);
    Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), rng);
    const AugmentSample s = revox::data::draw_augmentation(options, rng, shape);
    INFO(s);
    revox::data::augment(image, &labels, s);
    std::set<int> seen;
    for (index_t i = 0; i < labels.numel(); ++i) seen.insert(labels[i]);
    CHECK(seen == std::set<int>{0, 1, 2, 4});
  }
}

TEST_CASE("augment: intensity change is per channel and keeps the background", "[data][augment]") {
  const Shape5 shape{1, 4, 4, 5, 6};
  revox::Rng rng(61);
  Tensor<float> image = random_image(shape, rng);
  for (index_t i = 0; i < image.numel(); i += 3) image[i] = 0.0f;
  AugmentOptions options = no_augmentation();
  options.intensity = 0.1;
  options.intensity_shift = 0.05;
  const AugmentSample s = revox::data::draw_augmentation(options, rng, shape);
  INFO(s);
  Tensor<float> out = image.clone();
  revox::data::augment(out, nullptr, s);
  std::set<double> factors(s.intensity_factor.begin(), s.intensity_factor.end());
  CHECK(factors.size() == 4);
  for (index_t c = 0; c < shape.c; ++c) {
    const double factor = s.intensity_factor[static_cast<std::size_t>(c)];
    const double shift = s.intensity_shift[static_cast<std::size_t>(c)];
    CHECK(factor >= 0.9);
    CHECK(factor <= 1.1);
    CHECK(std::abs(shift) <= 0.05);
    const float* in = image.data() + c * shape.spatial();
    const float* got = out.data() + c * shape.spatial();
    bool ok = true;
    for (index_t i = 0; i < shape.spatial(); ++i) {
      const float expected = in[i] == 0.0f ? 0.0f : static_cast<float>(factor * in[i] + shift);
      ok = ok && got[i] == expected;
    }
    CHECK(ok);
  }
}

TEST_CASE("augment: the elastic field is bounded by its control displacements", "[data][augment]") {
  // The cubic B-spline weights are non-negative and sum to 1 inside the grid, so no voxel
  // moves further (per component) than the largest control-point displacement.
  const Shape5 shape{1, 1, 9, 14, 11};
  AugmentOptions options = no_augmentation();
  options.elastic_sigma = 4.0;
  options.elastic_control_points = 3;
  revox::Rng rng(71);
  const AugmentSample s = revox::data::draw_augmentation(options, rng, shape);
  REQUIRE(s.has_elastic());
  double largest_control = 0.0;
  for (double v : s.elastic) largest_control = std::max(largest_control, std::abs(v));
  double largest_move = 0.0;
  for (index_t d = 0; d < shape.d; ++d)
    for (index_t h = 0; h < shape.h; ++h)
      for (index_t w = 0; w < shape.w; ++w) {
        double q[3];
        revox::data::reference::source_position(s, d, h, w, q);
        const double p[3] = {static_cast<double>(d), static_cast<double>(h), static_cast<double>(w)};
        for (int a = 0; a < 3; ++a) largest_move = std::max(largest_move, std::abs(q[a] - p[a]));
      }
  CHECK(largest_move > 0.05 * largest_control);
  CHECK(largest_move <= largest_control + 1e-9);
}

TEST_CASE("augment: seeds reproduce samples and outputs", "[data][augment]") {
  const Shape5 shape{1, 2, 8, 10, 9};
  revox::Rng data_rng(81);
  const Tensor<float> image = random_image(shape, data_rng);
  const Tensor<std::uint8_t> labels = random_labels(shape.with_channels(1), data_rng);
  auto run = [&](std::uint64_t seed, Tensor<float>& out, Tensor<std::uint8_t>& out_labels) {
    revox::Rng rng(seed);
    const AugmentSample s = revox::data::draw_augmentation(AugmentOptions{}, rng, shape);
    out = image.clone();
    out_labels = labels.clone();
    revox::data::augment(out, &out_labels, s);
    std::ostringstream text;
    text.precision(17);
    text << s;
    return text.str();
  };
  Tensor<float> a, b, c;
  Tensor<std::uint8_t> la, lb, lc;
  const std::string sa = run(5, a, la);
  const std::string sb = run(5, b, lb);
  const std::string sc = run(6, c, lc);
  CHECK(sa == sb);
  CHECK(sa != sc);
  CHECK(sa.find("rotation") != std::string::npos);
  CHECK(identical(a, b));
  CHECK(identical(la, lb));
  CHECK_FALSE(identical(a, c));
}

TEST_CASE("augment: misuse throws a readable error", "[data][augment]") {
  revox::Rng rng(91);
  const Shape5 shape{1, 4, 4, 5, 6};
  AugmentOptions bad;
  bad.scale = 1.0;
  CHECK_THROWS_WITH(revox::data::draw_augmentation(bad, rng, shape), Catch::Contains("scale"));
  bad = AugmentOptions{};
  bad.flip_probability = 1.5;
  CHECK_THROWS_WITH(revox::data::draw_augmentation(bad, rng, shape),
                    Catch::Contains("flip_probability"));
  bad = AugmentOptions{};
  bad.elastic_control_points = 1;
  CHECK_THROWS_WITH(revox::data::draw_augmentation(bad, rng, shape),
                    Catch::Contains("elastic_control_points"));
  bad = AugmentOptions{};
  bad.rotation_degrees = -1.0;
  CHECK_THROWS_WITH(revox::data::draw_augmentation(bad, rng, shape),
                    Catch::Contains("rotation_degrees"));
  CHECK_THROWS_WITH(revox::data::draw_augmentation(AugmentOptions{}, rng, Shape5{1, 4, 0, 5, 6}),
                    Catch::Contains("positive extents"));

  const AugmentSample s = revox::data::draw_augmentation(AugmentOptions{}, rng, shape);
  Tensor<float> wrong(Shape5{1, 4, 4, 5, 7});
  CHECK_THROWS_WITH(revox::data::augment(wrong, nullptr, s),
                    Catch::Contains("does not match the shape"));
  Tensor<float> image = random_image(shape, rng);
  Tensor<std::uint8_t> labels(Shape5{1, 2, 4, 5, 6});
  CHECK_THROWS_WITH(revox::data::augment(image, &labels, s), Catch::Contains("labels shape"));
  AugmentSample broken = s;
  broken.intensity_factor.pop_back();
  CHECK_THROWS_WITH(revox::data::augment(image, nullptr, broken),
                    Catch::Contains("intensity factors"));
}
