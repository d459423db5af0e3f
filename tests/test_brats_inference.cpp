// Tests for the revox-brats inference pieces: sliding-window inference with Gaussian
// weighting (revox/models/sliding_window.hpp), full-volume vs sliding-window prediction
// (examples/brats/inference.hpp), the overlay pictures (examples/brats/overlay.hpp),
// test-time mirroring and the averaging of several checkpoints (inference.hpp, predict.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/models/sliding_window.hpp"
#include "revox/models/unet.hpp"
#include "support/tensors.hpp"

#include "../examples/brats/ensemble.hpp"
#include "../examples/brats/inference.hpp"
#include "../examples/brats/overlay.hpp"
#include "../examples/brats/predict.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using revox::test::random_tensor;

namespace {

float max_abs_difference(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  float worst = 0.0f;
  for (index_t i = 0; i < a.numel(); ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= worst)) worst = d;  // NaN propagates as "worst"
  }
  return worst;
}

}  // namespace

TEST_CASE("sliding window starts cover the extent like nnU-Net", "[brats][sliding_window]") {
  using revox::sliding_window_starts;
  CHECK(sliding_window_starts(10, 4, 0.5) == std::vector<index_t>{0, 2, 4, 6});
  CHECK(sliding_window_starts(4, 4, 0.5) == std::vector<index_t>{0});
  CHECK(sliding_window_starts(8, 4, 0.0) == std::vector<index_t>{0, 4});
  // 9 voxels, patch 4, no overlap wanted: 3 windows spread evenly over [0, 5].
  CHECK(sliding_window_starts(9, 4, 0.0) == std::vector<index_t>{0, 3, 5});
  for (index_t extent : {5, 7, 16, 31}) {
    for (double overlap : {0.0, 0.25, 0.5, 0.75}) {
      const auto starts = sliding_window_starts(extent, 5, overlap);
      INFO("extent " << extent << ", overlap " << overlap);
      REQUIRE(!starts.empty());
      CHECK(starts.front() == 0);
      CHECK(starts.back() == extent - 5);
      for (std::size_t i = 1; i < starts.size(); ++i) {
        CHECK(starts[i] > starts[i - 1]);
        CHECK(starts[i] - starts[i - 1] <= 5);  // no gap between windows
      }
    }
  }
  CHECK_THROWS_WITH(sliding_window_starts(3, 4, 0.5), Catch::Contains("smaller than the patch"));
  CHECK_THROWS_WITH(sliding_window_starts(8, 4, 1.0), Catch::Contains("overlap must be in"));
}

TEST_CASE("Gaussian importance map: sigma = patch / 8, peak 1 at the centre",
          "[brats][sliding_window]") {
  const std::array<index_t, 3> patch{8, 16, 12};
  const Tensor<float> map = revox::gaussian_importance_map(patch);
  REQUIRE(map.shape() == Shape5{1, 1, 8, 16, 12});
  auto at = [&](index_t d, index_t h, index_t w) { return map[(d * 16 + h) * 12 + w]; };
  CHECK(at(4, 8, 6) == Approx(1.0f));
  float largest = 0.0f;
  float smallest = 1.0f;
  for (index_t i = 0; i < map.numel(); ++i) {
    largest = std::max(largest, map[i]);
    smallest = std::min(smallest, map[i]);
  }
  CHECK(largest == Approx(1.0f));
  CHECK(smallest > 0.0f);
  // One sigma (= 16 / 8 = 2 voxels) from the centre along H: exp(-1/2).
  CHECK(at(4, 10, 6) == Approx(std::exp(-0.5)).epsilon(1e-6));
  CHECK(at(4, 6, 6) == Approx(std::exp(-0.5)).epsilon(1e-6));
  // Along D sigma is 1 voxel: two voxels away gives exp(-2).
  CHECK(at(6, 8, 6) == Approx(std::exp(-2.0)).epsilon(1e-6));
  CHECK(at(0, 0, 0) < at(1, 1, 1));
}

TEST_CASE("sliding window: a constant model gives a constant output",
          "[brats][sliding_window]") {
  const Tensor<float> image = random_tensor<float>(Shape5{1, 2, 11, 9, 13}, 7);
  for (double overlap : {0.0, 0.5, 0.8}) {
    revox::SlidingWindowOptions options;
    options.patch = {4, 6, 5};
    options.overlap = overlap;
    int calls = 0;
    const Tensor<float> out = revox::sliding_window_inference(
        image, 3, options, [&](TensorView<const float> in, TensorView<float> y) {
          REQUIRE(in.shape == (Shape5{1, 2, 4, 6, 5}));
          REQUIRE(y.shape == (Shape5{1, 3, 4, 6, 5}));
          for (index_t c = 0; c < 3; ++c) {
            std::fill(y.channel(0, c), y.channel(0, c) + y.shape.spatial(),
                      0.25f * static_cast<float>(c + 1));
          }
          ++calls;
        });
    INFO("overlap " << overlap);
    REQUIRE(out.shape() == (Shape5{1, 3, 11, 9, 13}));
    CHECK(calls > 1);
    for (index_t c = 0; c < 3; ++c) {
      for (index_t i = 0; i < out.shape().spatial(); ++i) {
        REQUIRE(out[c * out.shape().spatial() + i] ==
                Approx(0.25f * static_cast<float>(c + 1)).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("sliding window: a per-voxel model is reproduced exactly by the weighted average",
          "[brats][sliding_window]") {
  // out = 2 * in puts each window's voxels back where they came from: any error in the
  // window placement or the normalisation shows up as a difference.
  const Tensor<float> image = random_tensor<float>(Shape5{1, 1, 10, 7, 9}, 11);
  revox::SlidingWindowOptions options;
  options.patch = {4, 4, 4};
  options.overlap = 0.5;
  const Tensor<float> out = revox::sliding_window_inference(
      image, 1, options, [](TensorView<const float> in, TensorView<float> y) {
        for (index_t i = 0; i < in.shape.numel(); ++i) y.data[i] = 2.0f * in.data[i];
      });
  for (index_t i = 0; i < image.numel(); ++i) {
    REQUIRE(out[i] == Approx(2.0f * image[i]).margin(1e-6));
  }
  revox::SlidingWindowOptions too_big;
  too_big.patch = {12, 4, 4};
  CHECK_THROWS_WITH(revox::sliding_window_inference(
                        image, 1, too_big, [](TensorView<const float>, TensorView<float>) {}),
                    Catch::Contains("smaller than the patch"));
}

TEST_CASE("UNet prediction: full volume equals a sliding window that covers the volume",
          "[brats][inference]") {
  revox::UNetConfig config;
  config.widths = {4, 8};
  config.num_groups = 2;
  revox::UNet<float> net(config);
  revox::Parameters<float> params(net);
  revox::Rng rng(3);
  net.reset_parameters(rng);
  const Tensor<float> image = random_tensor<float>(Shape5{1, 4, 8, 8, 8}, 5);

  revox::brats::InferenceOptions full;
  const Tensor<float> a = revox::brats::predict_probabilities(net, image, full);
  revox::brats::InferenceOptions window;
  window.window = 8;
  const Tensor<float> b = revox::brats::predict_probabilities(net, image, window);
  REQUIRE(a.shape() == (Shape5{1, 3, 8, 8, 8}));
  CHECK(max_abs_difference(a, b) < 1e-6f);
  for (index_t i = 0; i < a.numel(); ++i) {
    REQUIRE(a[i] >= 0.0f);
    REQUIRE(a[i] <= 1.0f);
  }

  // An odd-sized volume comes back in its own grid in both modes; a smaller, overlapping
  // window still gives probabilities.
  const Tensor<float> odd = random_tensor<float>(Shape5{1, 4, 7, 5, 9}, 6);
  const Tensor<float> c = revox::brats::predict_probabilities(net, odd, full);
  CHECK(c.shape() == (Shape5{1, 3, 7, 5, 9}));
  window.window = 4;
  const Tensor<float> d = revox::brats::predict_probabilities(net, odd, window);
  CHECK(d.shape() == (Shape5{1, 3, 7, 5, 9}));
  for (index_t i = 0; i < d.numel(); ++i) REQUIRE(std::isfinite(d[i]));

  window.window = 5;
  CHECK_THROWS_WITH(revox::brats::predict_probabilities(net, odd, window),
                    Catch::Contains("must be a positive multiple of 2"));
}

TEST_CASE("region Dice follows the BraTS regions and empty rule", "[brats][inference]") {
  Tensor<std::uint8_t> truth = Tensor<std::uint8_t>::zeros(Shape5{1, 1, 1, 1, 4});
  Tensor<std::uint8_t> pred = Tensor<std::uint8_t>::zeros(Shape5{1, 1, 1, 1, 4});
  truth[0] = 2;
  truth[1] = 1;
  pred[0] = 2;
  pred[1] = 2;
  const auto dice =
      revox::brats::region_dice(pred, truth, revox::data::LabelConvention::brats2017);
  CHECK(dice[0] == Approx(1.0));  // WT {0, 1} both
  CHECK(dice[1] == Approx(0.0));  // TC: truth {1}, prediction none
  CHECK(dice[2] == Approx(1.0));  // ET empty in both
}

TEST_CASE("overlay: size, layout, orientation and Fig. 4 colours", "[brats][overlay]") {
  using revox::brats::Plane;
  using revox::brats::Rgb;
  const Shape5 shape{1, 1, 6, 5, 4};  // D, H, W
  Tensor<float> flair(shape);
  for (index_t i = 0; i < flair.numel(); ++i) flair[i] = 10.0f + static_cast<float>(i);
  flair[0] = 0.0f;  // outside the brain: black
  Tensor<std::uint8_t> truth = Tensor<std::uint8_t>::zeros(shape);
  Tensor<std::uint8_t> pred = Tensor<std::uint8_t>::zeros(shape);
  auto voxel = [&](index_t d, index_t h, index_t w) { return (d * shape.h + h) * shape.w + w; };
  truth[voxel(2, 1, 1)] = 4;  // ET
  truth[voxel(2, 1, 2)] = 1;  // TC
  truth[voxel(2, 3, 2)] = 2;  // WT (edema)
  pred[voxel(2, 1, 1)] = 2;

  const revox::data::Size3 at{2, 1, 1};
  const revox::brats::RgbImage image =
      revox::brats::render_overlay(flair, &truth, pred, 4, Plane::axial, at);
  const int scale = revox::brats::panel_scale(shape, Plane::axial);
  // Longer side H = 5 scaled to at least kMinPanelPixels pixels.
  CHECK(scale == (revox::brats::kMinPanelPixels + 4) / 5);
  const int panel_w = 4 * scale;
  const int panel_h = 5 * scale;
  const auto layout = revox::brats::overlay_layout(
      shape, Plane::axial, 2, revox::brats::overlay_caption_lines({}, Plane::axial, at, true));
  CHECK(layout.panel_w == panel_w);
  CHECK(layout.panel_h == panel_h);
  CHECK(layout.panel_left[1] - layout.panel_left[0] == panel_w + revox::brats::kPanelGap);
  CHECK(image.width >= 2 * panel_w + revox::brats::kPanelGap);
  CHECK(image.width == layout.width);
  CHECK(image.height == layout.height);
  CHECK(image.height > layout.panel_top + panel_h);  // the colour key below the panels
  REQUIRE(image.pixels.size() ==
          static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3);

  const revox::brats::GreyWindow window = revox::brats::grey_window(flair);
  // Pixel centre of voxel column w, row r (axial: row r shows h = H - 1 - r) in panel p.
  auto pixel = [&](int p, index_t h, index_t w) {
    const int x = layout.panel_left[static_cast<std::size_t>(p)] + static_cast<int>(w) * scale +
                  scale / 2;
    const int y = layout.panel_top + static_cast<int>(shape.h - 1 - h) * scale + scale / 2;
    return image.at(x, y);
  };
  auto grey = [&](index_t d, index_t h, index_t w) {
    return revox::brats::grey_level(flair[voxel(d, h, w)], window);
  };
  using revox::brats::blend;
  CHECK(pixel(0, 1, 1) == blend(grey(2, 1, 1), revox::brats::kEtColour));  // truth: ET red
  CHECK(pixel(0, 1, 2) == blend(grey(2, 1, 2), revox::brats::kTcColour));  // TC green
  CHECK(pixel(0, 3, 2) == blend(grey(2, 3, 2), revox::brats::kWtColour));  // WT blue
  CHECK(pixel(1, 1, 1) == blend(grey(2, 1, 1), revox::brats::kWtColour));  // prediction: 2
  const std::uint8_t g = grey(2, 1, 2);
  CHECK(pixel(1, 1, 2) == Rgb{g, g, g});  // no prediction there: plain grey
  CHECK(blend(100, revox::brats::kEtColour) == Rgb{178, 50, 50});
  CHECK(revox::brats::kEtColour == Rgb{255, 0, 0});
  CHECK(revox::brats::kTcColour == Rgb{0, 255, 0});
  CHECK(revox::brats::kWtColour == Rgb{0, 0, 255});
  // The gap between the panels is white.
  CHECK(image.at(layout.panel_left[0] + panel_w + 1, layout.panel_top + 1) ==
        Rgb{255, 255, 255});
  // The caption strip holds dark text pixels.
  bool has_text = false;
  for (int y = 0; y < layout.panel_title_top; ++y) {
    for (int x = 0; x < image.width; ++x) has_text = has_text || image.at(x, y)[0] < 64;
  }
  CHECK(has_text);

  // Voxel (d=0, h=0, w=0) is zero in the FLAIR: black, in the axial slice d = 0.
  const revox::brats::RgbImage top =
      revox::brats::render_overlay(flair, nullptr, pred, 4, Plane::axial, {0, 0, 0});
  const auto top_layout = revox::brats::overlay_layout(
      shape, Plane::axial, 1,
      revox::brats::overlay_caption_lines({}, Plane::axial, {0, 0, 0}, false));
  CHECK(top_layout.panel_left.size() == 1);  // prediction only
  CHECK(top.width == top_layout.width);
  CHECK(top.at(top_layout.panel_left[0] + scale / 2,
               top_layout.panel_top + 4 * scale + scale / 2) == Rgb{0, 0, 0});

  // Coronal and sagittal: rows are D (z up), columns W and H.
  const auto coronal = revox::brats::render_overlay(flair, &truth, pred, 4, Plane::coronal, at);
  const int coronal_scale = revox::brats::panel_scale(shape, Plane::coronal);
  const auto coronal_layout = revox::brats::overlay_layout(
      shape, Plane::coronal, 2, revox::brats::overlay_caption_lines({}, Plane::coronal, at, true));
  CHECK(coronal_layout.panel_h == 6 * coronal_scale);
  CHECK(coronal_layout.panel_w == 4 * coronal_scale);
  CHECK(coronal.height == coronal_layout.height);
  const auto sagittal = revox::brats::render_overlay(flair, &truth, pred, 4, Plane::sagittal, at);
  const int sagittal_scale = revox::brats::panel_scale(shape, Plane::sagittal);
  const auto sagittal_layout = revox::brats::overlay_layout(
      shape, Plane::sagittal, 2,
      revox::brats::overlay_caption_lines({}, Plane::sagittal, at, true));
  CHECK(sagittal_layout.panel_w == 5 * sagittal_scale);
  CHECK(sagittal.width == sagittal_layout.width);
  // ET at (d=2, h=1) in the sagittal slice w = 1: column h = 1, row D - 1 - 2 = 3.
  CHECK(sagittal.at(sagittal_layout.panel_left[0] + 1 * sagittal_scale + sagittal_scale / 2,
                    sagittal_layout.panel_top + 3 * sagittal_scale + sagittal_scale / 2) ==
        blend(grey(2, 1, 1), revox::brats::kEtColour));

  CHECK(revox::brats::tumour_centroid(truth) == revox::data::Size3{2, 2, 2});
  CHECK(revox::brats::tumour_centroid(Tensor<std::uint8_t>::zeros(shape)) ==
        revox::data::Size3{3, 2, 2});
  CHECK_THROWS_WITH(revox::brats::render_overlay(flair, &truth, pred, 4, Plane::axial, {6, 0, 0}),
                    Catch::Contains("outside the volume"));
}

namespace {

// The reference flip of the tests, written independently of flip_spatial: element by element
// through the 5-D index.
Tensor<float> mirrored(const Tensor<float>& t, bool x, bool y, bool z) {
  const Shape5 s = t.shape();
  Tensor<float> out(s);
  for (index_t nc = 0; nc < s.n * s.c; ++nc) {
    for (index_t d = 0; d < s.d; ++d) {
      for (index_t h = 0; h < s.h; ++h) {
        for (index_t w = 0; w < s.w; ++w) {
          const index_t sd = z ? s.d - 1 - d : d, sh = y ? s.h - 1 - h : h,
                        sw = x ? s.w - 1 - w : w;
          out[((nc * s.d + d) * s.h + h) * s.w + w] = t[((nc * s.d + sd) * s.h + sh) * s.w + sw];
        }
      }
    }
  }
  return out;
}

revox::UNetConfig small_net_config() {
  revox::UNetConfig config;
  config.widths = {4, 8};
  config.num_groups = 2;
  return config;
}

}  // namespace

TEST_CASE("predict --tta syntax: none, all, lists of axis combinations, bad entries named",
          "[brats][inference][tta]") {
  using revox::brats::parse_tta;
  using Flips = std::vector<revox::brats::Flip>;
  CHECK(parse_tta("none") == Flips{0});
  CHECK(parse_tta("all") == Flips{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(parse_tta("x,y,xy") == Flips{0, 1, 2, 3});
  CHECK(parse_tta("z") == Flips{0, 4});
  CHECK(parse_tta("zyx,x,xyz") == Flips{0, 1, 7});
  CHECK(revox::brats::describe_tta(parse_tta("x,yz")) == "x, yz (3 predictions)");
  CHECK(revox::brats::describe_tta(parse_tta("none")) == "none");
  CHECK_THROWS_WITH(parse_tta("x,,y"), Catch::Contains("an empty entry"));
  CHECK_THROWS_WITH(parse_tta("xx"), Catch::Contains("entry 'xx'"));
  CHECK_THROWS_WITH(parse_tta("w"), Catch::Contains("entry 'w'"));
  CHECK_THROWS_WITH(parse_tta("x,"), Catch::Contains("an empty entry"));
}

TEST_CASE("flip_spatial mirrors the named axes and is an involution", "[brats][inference][tta]") {
  const Tensor<float> t = random_tensor<float>(Shape5{1, 2, 3, 4, 5}, 21);
  for (revox::brats::Flip f = 0; f < 8; ++f) {
    INFO("flip " << f);
    const Tensor<float> a = revox::brats::flip_spatial(t, f);
    const Tensor<float> b = mirrored(t, f & 1, f & 2, f & 4);
    CHECK(max_abs_difference(a, b) == 0.0f);
    CHECK(max_abs_difference(revox::brats::flip_spatial(a, f), t) == 0.0f);
  }
  // x is the last (W) axis: element (c 0, d 0, h 0, w 0) comes from w = 4.
  CHECK(revox::brats::flip_spatial(t, revox::brats::kFlipX)[0] == t[4]);
  CHECK(revox::brats::flip_spatial(t, revox::brats::kFlipZ)[0] == t[2 * 4 * 5]);
}

TEST_CASE("TTA: the mean of the flipped-back predictions of the flipped images",
          "[brats][inference][tta]") {
  revox::UNet<float> net(small_net_config());
  revox::Parameters<float> params(net);
  revox::Rng rng(7);
  net.reset_parameters(rng);
  // An odd-sized image with zero slices at one end, so the head crop and the padding differ
  // between the image and its flips.
  Tensor<float> image = random_tensor<float>(Shape5{1, 4, 9, 6, 7}, 8);
  for (index_t c = 0; c < 4; ++c) {
    for (index_t i = 0; i < 2 * 6 * 7; ++i) image[c * 9 * 6 * 7 + i] = 0.0f;
  }
  for (const char* tta : {"all", "x,yz", "z"}) {
    INFO("--tta " << tta);
    revox::brats::InferenceOptions options;
    options.flips = revox::brats::parse_tta(tta);
    const Tensor<float> got = revox::brats::predict_probabilities(net, image, options);
    // The reference: each flip predicted without TTA, flipped back, averaged.
    Tensor<float> expected = Tensor<float>::zeros(got.shape());
    for (revox::brats::Flip f : options.flips) {
      const bool x = f & 1, y = f & 2, z = f & 4;
      const Tensor<float> p = mirrored(
          revox::brats::predict_probabilities(net, mirrored(image, x, y, z),
                                              revox::brats::InferenceOptions{}),
          x, y, z);
      for (index_t i = 0; i < p.numel(); ++i) {
        expected[i] += p[i] / static_cast<float>(options.flips.size());
      }
    }
    CHECK(max_abs_difference(got, expected) < 1e-6f);
    // The augmentation changes the prediction (the random net is not mirror-symmetric).
    const Tensor<float> plain =
        revox::brats::predict_probabilities(net, image, revox::brats::InferenceOptions{});
    CHECK(max_abs_difference(got, plain) > 1e-4f);
  }
  // The sliding window composes the same way.
  revox::brats::InferenceOptions window;
  window.window = 4;
  window.flips = revox::brats::parse_tta("y");
  const Tensor<float> got = revox::brats::predict_probabilities(net, image, window);
  revox::brats::InferenceOptions window_plain;
  window_plain.window = 4;
  const Tensor<float> a = revox::brats::predict_probabilities(net, image, window_plain);
  const Tensor<float> b = mirrored(
      revox::brats::predict_probabilities(net, mirrored(image, false, true, false), window_plain),
      false, true, false);
  for (index_t i = 0; i < got.numel(); ++i) REQUIRE(got[i] == Approx((a[i] + b[i]) / 2).margin(1e-6));
}

TEST_CASE("TTA: a constant net gives the plain prediction, a symmetric image a symmetric one",
          "[brats][inference][tta]") {
  revox::UNet<float> net(small_net_config());
  revox::Parameters<float> params(net);
  revox::Rng rng(9);
  net.reset_parameters(rng);
  const Tensor<float> image = random_tensor<float>(Shape5{1, 4, 6, 6, 6}, 10);
  revox::brats::InferenceOptions all;
  all.flips = revox::brats::parse_tta("all");
  // An image mirror-symmetric along y: with flips {0, y} the averaged prediction is
  // symmetric along y too, whatever the net.
  Tensor<float> symmetric = image.clone();
  const Tensor<float> flipped = mirrored(image, false, true, false);
  for (index_t i = 0; i < symmetric.numel(); ++i) symmetric[i] = image[i] + flipped[i];
  revox::brats::InferenceOptions y;
  y.flips = revox::brats::parse_tta("y");
  const Tensor<float> p = revox::brats::predict_probabilities(net, symmetric, y);
  CHECK(max_abs_difference(p, mirrored(p, false, true, false)) < 1e-6f);
  const Tensor<float> plain =
      revox::brats::predict_probabilities(net, symmetric, revox::brats::InferenceOptions{});
  CHECK(max_abs_difference(plain, mirrored(plain, false, true, false)) > 1e-4f);
  // A net whose output does not depend on the input (all weights zero: the head's bias
  // alone): every flip predicts the same, so TTA gives the plain prediction.
  const auto values = params.values();
  for (index_t i = 0; i < values.numel(); ++i) values.data[i] = 0.0f;
  const Tensor<float> a = revox::brats::predict_probabilities(net, image, all);
  const Tensor<float> b =
      revox::brats::predict_probabilities(net, image, revox::brats::InferenceOptions{});
  CHECK(max_abs_difference(a, b) == 0.0f);
}

TEST_CASE("ensemble of checkpoints: the mean of the models' probabilities, same contract",
          "[brats][inference][ensemble]") {
  revox::UNet<float> first(small_net_config());
  revox::Parameters<float> first_params(first);
  revox::Rng rng(13);
  first.reset_parameters(rng);
  revox::UNetConfig deeper = small_net_config();
  deeper.widths = {4, 8, 8};
  revox::UNet<float> second(deeper);
  revox::Parameters<float> second_params(second);
  second.reset_parameters(rng);
  const Tensor<float> image = random_tensor<float>(Shape5{1, 4, 8, 7, 6}, 14);
  for (const char* tta : {"none", "x,xz"}) {
    INFO("--tta " << tta);
    revox::brats::InferenceOptions options;
    options.flips = revox::brats::parse_tta(tta);
    const Tensor<float> both = revox::brats::predict_probabilities(
        revox::Cpu{}, std::vector<const revox::UNet<float>*>{&first, &second}, image, options);
    const Tensor<float> a = revox::brats::predict_probabilities(first, image, options);
    const Tensor<float> b = revox::brats::predict_probabilities(second, image, options);
    for (index_t i = 0; i < both.numel(); ++i) {
      REQUIRE(both[i] == Approx((a[i] + b[i]) / 2).margin(1e-6));
    }
    CHECK(max_abs_difference(a, b) > 1e-4f);
  }
  // Checkpoints of different architectures are fine; different inputs or outputs are not.
  revox::UNetConfig two_inputs = small_net_config();
  two_inputs.in_channels = 2;
  const std::vector<std::string> paths{"a.safetensors", "b.safetensors"};
  CHECK_NOTHROW(revox::brats::check_same_contract(paths, {small_net_config(), deeper}));
  CHECK_THROWS_WITH(revox::brats::check_same_contract(paths, {small_net_config(), two_inputs}),
                    Catch::Contains("'b.safetensors' has a model with 2 input") &&
                        Catch::Contains("same modalities"));
  // The ET threshold of an ensemble: the mean of the checkpoints', or the override.
  CHECK(revox::brats::resolve_et_threshold({100, 300}, -1) == 200.0);
  CHECK(revox::brats::resolve_et_threshold({100, 0, 500}, -1) == 200.0);
  CHECK(revox::brats::resolve_et_threshold({100, 300}, 25) == 25.0);
  CHECK(revox::brats::resolve_et_threshold({100, 300}, 0) == 0.0);
}
