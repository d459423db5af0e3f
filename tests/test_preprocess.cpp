// Preprocessing: centered crop/pad and its inverse (checked voxel by voxel against a plain
// reference, at odd sizes, for float and uint8 and several channel counts), z-score over
// non-zero voxels, and seeded random crops.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/preprocess.hpp"

using revox::index_t;
using revox::Rng;
using revox::Shape5;
using revox::Tensor;
using revox::data::CropPad;
using revox::data::Size3;

namespace {

template <class T>
Tensor<T> random_volume(Shape5 shape, Rng& rng) {
  Tensor<T> t(shape);
  for (index_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(1.0 + rng.uniform(0.0, 200.0));
  return t;
}

// Plain reference: out(n, c, o) = in(n, c, o - offset) where that exists, else 0.
template <class T>
bool matches_reference(const Tensor<T>& in, const Tensor<T>& out, const Size3& offset) {
  const Shape5 s = in.shape();
  const Shape5 t = out.shape();
  if (s.n != t.n || s.c != t.c) return false;
  for (index_t n = 0; n < t.n; ++n)
    for (index_t c = 0; c < t.c; ++c)
      for (index_t d = 0; d < t.d; ++d)
        for (index_t h = 0; h < t.h; ++h)
          for (index_t w = 0; w < t.w; ++w) {
            const index_t sd = d - offset[0];
            const index_t sh = h - offset[1];
            const index_t sw = w - offset[2];
            const bool inside = sd >= 0 && sd < s.d && sh >= 0 && sh < s.h && sw >= 0 && sw < s.w;
            const T expected = inside ? in[s.offset(n, c, sd, sh, sw)] : T{};
            if (!(out[t.offset(n, c, d, h, w)] == expected)) return false;
          }
  return true;
}

template <class T>
bool equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.numel(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

template <class T>
void check_round_trips(index_t channels) {
  Rng rng(17 + static_cast<std::uint64_t>(channels));
  const Size3 sources[] = {{5, 6, 7}, {1, 1, 1}, {2, 3, 2}, {7, 4, 9}};
  const Size3 targets[] = {{8, 9, 10}, {3, 2, 4}, {5, 6, 7}, {1, 1, 1}, {4, 11, 3}};
  for (const Size3& source : sources) {
    for (const Size3& target : targets) {
      INFO("channels " << channels << ", source " << revox::data::format_size(source)
                       << ", target " << revox::data::format_size(target));
      const auto x =
          random_volume<T>(Shape5{2, channels, source[0], source[1], source[2]}, rng);
      CropPad plan;
      const auto y = revox::data::crop_or_pad(x, target, plan);
      REQUIRE(plan == revox::data::centered_crop_pad(source, target));
      REQUIRE(y.shape() == Shape5{2, channels, target[0], target[1], target[2]});
      REQUIRE(matches_reference(x, y, plan.offset));

      // Back to the source grid: the kept voxels are the input's, the cropped ones zero.
      const auto back = revox::data::undo_crop_or_pad(y, plan);
      REQUIRE(back.shape() == x.shape());
      const Size3 inverse{-plan.offset[0], -plan.offset[1], -plan.offset[2]};
      REQUIRE(matches_reference(y, back, inverse));
      const bool pad_only =
          target[0] >= source[0] && target[1] >= source[1] && target[2] >= source[2];
      const bool crop_only =
          target[0] <= source[0] && target[1] <= source[1] && target[2] <= source[2];
      if (pad_only) REQUIRE(equal(back, x));
      // A crop followed by its undo and the crop again is the identity on the crop.
      if (crop_only) REQUIRE(equal(revox::data::crop_or_pad(back, plan), y));
    }
  }
}

}  // namespace

TEST_CASE("centered_crop_pad splits the difference evenly, the odd voxel after",
          "[data][preprocess]") {
  const CropPad brats = revox::data::centered_crop_pad(revox::data::brats_volume_size,
                                                       revox::data::paper_volume_size);
  CHECK(brats.offset == Size3{2, 8, 8});  // 155 -> 160 pads 2 before, 3 after
  CHECK(revox::data::centered_crop_pad({240, 240, 155}, {128, 128, 128}).offset ==
        Size3{-56, -56, -13});
  CHECK(revox::data::centered_crop_pad({7, 5, 4}, {4, 8, 4}).offset == Size3{-1, 1, 0});
  CHECK(revox::data::centered_crop_pad({6, 6, 6}, {3, 9, 6}).offset == Size3{-1, 1, 0});
}

TEST_CASE("crop_or_pad matches the reference and undo_crop_or_pad inverts it",
          "[data][preprocess]") {
  for (index_t channels : {1, 3, 4}) {
    check_round_trips<float>(channels);
    check_round_trips<std::uint8_t>(channels);
  }
}

TEST_CASE("a BraTS volume padded to the paper size comes back exactly", "[data][preprocess]") {
  Rng rng(3);
  const Size3 b = revox::data::brats_volume_size;
  const auto labels = random_volume<std::uint8_t>(Shape5{1, 1, b[0], b[1], b[2]}, rng);
  CropPad plan;
  const auto padded = revox::data::crop_or_pad(labels, revox::data::paper_volume_size, plan);
  REQUIRE(padded.shape() == Shape5{1, 1, 160, 256, 256});
  CHECK(padded[padded.shape().offset(0, 0, 1, 100, 100)] == 0);  // padding before is zero
  CHECK(padded[padded.shape().offset(0, 0, 2, 8, 8)] == labels[0]);
  const auto back = revox::data::undo_crop_or_pad(padded, plan);
  CHECK(equal(back, labels));
}

TEST_CASE("crop_or_pad and undo_crop_or_pad reject sizes that do not fit the plan",
          "[data][preprocess]") {
  const auto x = Tensor<float>::zeros(Shape5{1, 2, 5, 6, 7});
  const CropPad plan = revox::data::centered_crop_pad({5, 6, 8}, {4, 4, 4});
  CHECK_THROWS_WITH(revox::data::crop_or_pad(x, plan),
                    Catch::Contains("input size 7 x 6 x 5 (W x H x D)") &&
                        Catch::Contains("source size 8 x 6 x 5"));
  const CropPad good = revox::data::centered_crop_pad({5, 6, 7}, {4, 4, 4});
  CHECK_THROWS_WITH(revox::data::undo_crop_or_pad(x, good),
                    Catch::Contains("prediction size") && Catch::Contains("target size 4 x 4 x 4"));
  CropPad unused;
  CHECK_THROWS_WITH(revox::data::crop_or_pad(x, Size3{0, 4, 4}, unused),
                    Catch::Contains("target size must be positive"));
  CHECK_THROWS_WITH(revox::data::centered_crop_pad({5, -1, 7}, {4, 4, 4}),
                    Catch::Contains("source size must be positive"));
}

TEST_CASE("zscore_nonzero normalises each modality over its non-zero voxels",
          "[data][preprocess]") {
  Rng rng(11);
  const Shape5 shape{1, 4, 5, 6, 7};
  Tensor<float> image(shape);
  const double scales[] = {1.0, 100.0, 0.01, 3000.0};
  for (index_t c = 0; c < 4; ++c) {
    for (index_t i = 0; i < shape.spatial(); ++i) {
      const bool brain = rng.uniform01() < 0.6;
      image[c * shape.spatial() + i] =
          brain ? static_cast<float>(scales[c] * (2.0 + rng.normal())) : 0.0f;
    }
  }
  const auto original = image.clone();
  revox::data::zscore_nonzero(image, "case_a");
  for (index_t c = 0; c < 4; ++c) {
    double sum = 0.0;
    double squares = 0.0;
    index_t count = 0;
    for (index_t i = 0; i < shape.spatial(); ++i) {
      const index_t k = c * shape.spatial() + i;
      if (original[k] == 0.0f) {
        REQUIRE(image[k] == 0.0f);  // background stays background
      } else {
        ++count;
        sum += image[k];
        squares += static_cast<double>(image[k]) * image[k];
      }
    }
    INFO("channel " << c);
    const double mean = sum / static_cast<double>(count);
    CHECK(std::abs(mean) < 1e-5);
    CHECK(std::abs(std::sqrt(squares / static_cast<double>(count) - mean * mean) - 1.0) < 1e-5);
  }
  // Voxel by voxel against a two-pass reference in double.
  for (index_t c = 0; c < 4; ++c) {
    const float* in = original.data() + c * shape.spatial();
    const float* out = image.data() + c * shape.spatial();
    double sum = 0.0;
    index_t count = 0;
    for (index_t i = 0; i < shape.spatial(); ++i)
      if (in[i] != 0.0f) sum += in[i], ++count;
    const double mean = sum / static_cast<double>(count);
    double squares = 0.0;
    for (index_t i = 0; i < shape.spatial(); ++i)
      if (in[i] != 0.0f) squares += (in[i] - mean) * (in[i] - mean);
    const double std_dev = std::sqrt(squares / static_cast<double>(count));
    for (index_t i = 0; i < shape.spatial(); ++i) {
      if (in[i] == 0.0f) continue;
      REQUIRE(out[i] == Approx((in[i] - mean) / std_dev).margin(1e-5));
    }
  }
}

TEST_CASE("zscore_nonzero refuses empty or constant modalities, naming case and modality",
          "[data][preprocess]") {
  Tensor<float> image = Tensor<float>::full(Shape5{1, 4, 3, 3, 3}, 1.0f);
  for (index_t i = 0; i < image.numel(); ++i) image[i] = static_cast<float>(i % 7);
  Tensor<float> empty_flair = image.clone();
  std::fill(empty_flair.data() + 3 * 27, empty_flair.data() + 4 * 27, 0.0f);
  CHECK_THROWS_WITH(revox::data::zscore_nonzero(empty_flair, "BraTS20_Training_007"),
                    Catch::Contains("BraTS20_Training_007") && Catch::Contains("flair") &&
                        Catch::Contains("all zero"));
  Tensor<float> constant_t1ce = image.clone();
  for (index_t i = 27; i < 54; ++i) constant_t1ce[i] = (i % 2 == 0) ? 5.0f : 0.0f;
  CHECK_THROWS_WITH(revox::data::zscore_nonzero(constant_t1ce, "case_b"),
                    Catch::Contains("case_b") && Catch::Contains("t1ce") &&
                        Catch::Contains("constant"));
  Tensor<float> with_nan = image.clone();
  with_nan[60] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(revox::data::zscore_nonzero(with_nan, "case_c"),
                    Catch::Contains("case_c") && Catch::Contains("t2") &&
                        Catch::Contains("non-finite"));
  Tensor<float> two_channels = Tensor<float>::zeros(Shape5{1, 2, 2, 2, 2});
  CHECK_THROWS_WITH(revox::data::zscore_nonzero(two_channels, "case_d"),
                    Catch::Contains("channel 0"));
}

TEST_CASE("random crops are reproducible by seed and crop image and labels alike",
          "[data][preprocess]") {
  Rng data_rng(5);
  const Shape5 shape{1, 4, 9, 10, 11};
  const auto image = random_volume<float>(shape, data_rng);
  Tensor<std::uint8_t> labels(shape.with_channels(1));
  for (index_t i = 0; i < labels.numel(); ++i) labels[i] = image[i] > 100.0f ? 2 : 0;
  const Size3 patch{4, 12, 5};  // H is larger than the volume: padded, centered

  Rng a(42);
  Rng b(42);
  Rng other(43);
  std::set<index_t> starts;
  bool differs_from_other_seed = false;
  for (int draw = 0; draw < 64; ++draw) {
    const auto pa = revox::data::random_crop(image, labels, patch, a);
    const auto pb = revox::data::random_crop(image, labels, patch, b);
    const auto po = revox::data::random_crop(image, labels, patch, other);
    REQUIRE(pa.window == pb.window);
    REQUIRE(equal(pa.image, pb.image));
    REQUIRE(equal(pa.labels, pb.labels));
    differs_from_other_seed = differs_from_other_seed || !(pa.window == po.window);

    REQUIRE(pa.image.shape() == Shape5{1, 4, 4, 12, 5});
    REQUIRE(pa.labels.shape() == Shape5{1, 1, 4, 12, 5});
    REQUIRE(pa.window.offset[1] == 1);  // (12 - 10) / 2
    REQUIRE(pa.window.offset[0] <= 0);
    REQUIRE(pa.window.offset[0] >= -(9 - 4));
    REQUIRE(pa.window.offset[2] >= -(11 - 5));
    starts.insert(-pa.window.offset[0]);
    REQUIRE(matches_reference(image, pa.image, pa.window.offset));
    REQUIRE(matches_reference(labels, pa.labels, pa.window.offset));
  }
  CHECK(differs_from_other_seed);
  CHECK(starts.size() == 6);  // every start 0..5 along D is drawn
  CHECK_THROWS_WITH(
      revox::data::random_crop(image, Tensor<std::uint8_t>::zeros(Shape5{1, 1, 9, 10, 12}),
                               patch, a),
      Catch::Contains("random_crop") && Catch::Contains("differ"));
}
