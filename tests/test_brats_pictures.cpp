// Tests of revox-brats' pictures: the drawing primitives and fonts
// (examples/brats/drawing.hpp), the learning curve's ticks and layout
// (examples/brats/plots.hpp) and the overlays' caption and colour key
// (examples/brats/overlay.hpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../examples/brats/overlay.hpp"
#include "../examples/brats/plots.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::brats::Rgb;

namespace {

const Rgb kWhite{255, 255, 255};

std::size_t count_pixels(const revox::brats::RgbImage& image, int x0, int y0, int x1, int y1,
                         bool (*predicate)(Rgb)) {
  std::size_t count = 0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) count += predicate(image.at(x, y)) ? 1 : 0;
  }
  return count;
}

bool dark(Rgb c) { return c[0] < 100 && c[1] < 100 && c[2] < 100; }

}  // namespace

TEST_CASE("pictures: nice ticks step by 1, 2 or 5 times a power of ten", "[brats][plots]") {
  using revox::brats::nice_ticks;
  auto ticks = nice_ticks(0.0, 1.0, 5);
  CHECK(ticks.step == Approx(0.2));
  REQUIRE(ticks.values.size() == 6);
  for (std::size_t k = 0; k < 6; ++k) CHECK(ticks.values[k] == Approx(0.2 * double(k)));
  CHECK(ticks.values[3] == 0.6);  // rounded: no 0.6000000000000001

  ticks = nice_ticks(1.0, 30.0, 6, 1.0);  // epochs 1..30
  CHECK(ticks.step == 5.0);
  CHECK(ticks.first == 0.0);
  CHECK(ticks.last == 30.0);
  CHECK(ticks.values.size() == 7);

  ticks = nice_ticks(0.23, 0.97, 5);
  CHECK(ticks.step == Approx(0.2));
  CHECK(ticks.first == Approx(0.2));
  CHECK(ticks.last == Approx(1.0));

  ticks = nice_ticks(0.0, 1.37, 5);
  CHECK(ticks.step == Approx(0.5));
  CHECK(ticks.last == Approx(1.5));

  ticks = nice_ticks(1.0, 3.0, 2, 1.0);  // few epochs: never a step below one epoch
  CHECK(ticks.step == 1.0);
  CHECK(ticks.values == std::vector<double>{1.0, 2.0, 3.0});

  ticks = nice_ticks(4.0, 4.0, 5, 1.0);  // zero width: one step either side
  CHECK(ticks.first < 4.0);
  CHECK(ticks.last > 4.0);

  // Over many ranges: the step is 1, 2 or 5 x 10^k, every tick a whole multiple of it, the
  // ticks cover the range and there are about `target` intervals.
  for (double low : {0.0, 0.013, 0.4, 2.0, 17.0}) {
    for (double width : {0.004, 0.37, 1.0, 9.5, 240.0, 1234.0}) {
      const auto t = nice_ticks(low, low + width, 5);
      const double mantissa = t.step / std::pow(10.0, std::floor(std::log10(t.step) + 1e-9));
      INFO("low " << low << " width " << width << " step " << t.step);
      CHECK((mantissa == Approx(1.0) || mantissa == Approx(2.0) || mantissa == Approx(5.0)));
      CHECK(t.first <= low + 1e-12);
      CHECK(t.last >= low + width - 1e-12);
      CHECK(t.values.size() >= 3);
      CHECK(t.values.size() <= 12);
      for (double v : t.values) {
        CHECK(std::abs(v / t.step - std::round(v / t.step)) < 1e-6);
      }
    }
  }

  using revox::brats::tick_label;
  CHECK(tick_label(0.2, 0.2) == "0.2");
  CHECK(tick_label(1.0, 0.2) == "1.0");
  CHECK(tick_label(15.0, 5.0) == "15");
  CHECK(tick_label(0.015, 0.005) == "0.015");
  CHECK(tick_label(-0.0, 0.1) == "0.0");
}

TEST_CASE("pictures: the learning curve's legend lies outside the data", "[brats][plots]") {
  using revox::brats::CurvePoint;
  using revox::brats::PlotRect;
  std::vector<CurvePoint> points;
  for (int e = 1; e <= 12; ++e) {
    CurvePoint p;
    p.epoch = e;
    p.loss = 1.3 / e;
    if (e % 3 == 0) p.dice = std::array<double, 3>{0.5 + 0.04 * e, 0.3 + 0.05 * e, 0.05 * e};
    points.push_back(p);
  }
  // In DejaVu Sans (when installed) and in the wider bitmap font.
  for (const revox::brats::TrueTypeFont* font :
       {revox::brats::picture_font(), static_cast<const revox::brats::TrueTypeFont*>(nullptr)}) {
    INFO("TrueType font: " << (font != nullptr));
    revox::brats::LearningCurveLayout layout;
    layout.font = font;
    const PlotRect image_rect{0, 0, layout.width, layout.height};
    const std::vector<PlotRect> data{layout.loss, layout.dice};
    const std::vector<PlotRect> legends{layout.loss_legend, layout.dice_legend};
    for (const auto& d : data) {
      for (const auto& l : legends) CHECK_FALSE(d.overlaps(l));
  }
  CHECK_FALSE(layout.loss.overlaps(layout.dice));

  const auto with = revox::brats::render_learning_curve(points, true, layout);
  const auto without = revox::brats::render_learning_curve(points, false, layout);
  REQUIRE(with.width == layout.width);
  REQUIRE(with.height == layout.height);
  // The legend's pixels (those that differ) are all inside the legends' boxes, none in the data.
  std::size_t legend_pixels = 0, in_data = 0, outside_boxes = 0;
  for (int y = 0; y < with.height; ++y) {
    for (int x = 0; x < with.width; ++x) {
      if (with.at(x, y) == without.at(x, y)) continue;
      ++legend_pixels;
      for (const auto& d : data) in_data += d.contains(x, y) ? 1 : 0;
      bool boxed = false;
      for (const auto& l : legends) boxed = boxed || l.contains(x, y);
      outside_boxes += boxed ? 0 : 1;
      CHECK(image_rect.contains(x, y));
    }
  }
  CHECK(legend_pixels > 500);  // four names, a title and line samples
  CHECK(in_data == 0);
  CHECK(outside_boxes == 0);

  // The legends hold dark text and each Dice colour.
  CHECK(count_pixels(with, layout.dice_legend.x0, layout.dice_legend.y0, layout.dice_legend.x1,
                     layout.dice_legend.y1, dark) > 100);
  for (const Rgb colour : revox::brats::kDiceCurveColours) {
    bool found = false;
    for (int y = layout.dice_legend.y0; y < layout.dice_legend.y1 && !found; ++y) {
      for (int x = layout.dice_legend.x0; x < layout.dice_legend.x1 && !found; ++x) {
        found = with.at(x, y) == colour;
      }
    }
    CHECK(found);
  }
  }
}

TEST_CASE("pictures: the learning curve has grid, tick labels and curves in its panels",
          "[brats][plots]") {
  using revox::brats::CurvePoint;
  std::vector<CurvePoint> points;
  for (int e = 1; e <= 20; ++e) {
    CurvePoint p;
    p.epoch = e;
    p.loss = 0.9 - 0.03 * e;
    if (e % 2 == 0) p.dice = std::array<double, 3>{0.9, 0.6, 0.3};
    points.push_back(p);
  }
  points[4].loss = std::nan("");  // a non-finite loss is left out, not drawn off the panel
  const revox::brats::LearningCurveLayout layout;
  const auto image = revox::brats::render_learning_curve(points, true, layout);
  const auto& d = layout.dice;
  // Dice axis [0, 1] in steps of 0.2 from y1 - 1 - pad (0) to y0 + pad (1).
  const int pad = layout.inner_pad;
  auto dice_y = [&](double v) {
    return static_cast<int>(std::lround((d.y1 - 1 - pad) - v * (d.y1 - 1 - pad - d.y0 - pad)));
  };
  for (int k = 0; k <= 5; ++k) {
    const int y = dice_y(k / 5.0);
    CHECK(image.at(d.x0 + 3, y) == revox::brats::kPlotGrid);
    // A tick label ("0.0" .. "1.0") left of the axis at that height.
    CHECK(count_pixels(image, d.x0 - 60, y - 8, d.x0 - 8, y + 9, dark) > 5);
  }
  // The WT curve is flat at 0.9, drawn across the panel in its colour.
  const int y_wt = dice_y(0.9);
  const int x_mid = (d.x0 + d.x1) / 2;
  CHECK(image.at(x_mid, y_wt) == revox::brats::kDiceCurveColours[0]);
  // The epoch axis' labels (below the Dice panel) and its title.
  CHECK(count_pixels(image, d.x0 - 20, d.y1 + 6, d.x1 + 20, d.y1 + 30, dark) > 30);
  CHECK(count_pixels(image, x_mid - 40, d.y1 + 30, x_mid + 40, layout.height, dark) > 20);
  // No tick labels under the loss panel (the epoch axis is shared).
  CHECK(count_pixels(image, layout.loss.x0 + 20, layout.loss.y1 + 8, layout.loss.x1 - 20,
                     layout.dice.y0 - 2, dark) == 0);

  // plot_learning_curve: the same image from training records.
  struct Record {
    int epoch;
    double loss;
    bool validated;
    std::array<double, 3> dice;
  };
  std::vector<Record> records;
  for (const auto& p : points) {
    records.push_back({p.epoch, p.loss, p.dice.has_value(),
                       p.dice.value_or(std::array<double, 3>{0, 0, 0})});
  }
  int w = 0, h = 0;
  const auto rgb = revox::brats::plot_learning_curve(records, w, h);
  CHECK(w == layout.width);
  CHECK(h == layout.height);
  CHECK(rgb == image.pixels);
}

TEST_CASE("pictures: text renders in the TrueType and the bitmap font", "[brats][plots]") {
  using revox::brats::render_text;
  auto covered = [](const revox::brats::TextMask& m) {
    std::size_t n = 0;
    for (auto a : m.alpha) n += a > 128 ? 1 : 0;
    return n;
  };
  const auto bitmap = render_text("Dice WT 0.912", 18, nullptr);
  CHECK(bitmap.height >= 18);
  CHECK(covered(bitmap) > 100);
  CHECK(render_text("Dice WT 0.912 TC", 18, nullptr).width > bitmap.width);
  CHECK(render_text("Dice", 36, nullptr).height > render_text("Dice", 18, nullptr).height);

  // Not a font: no font, no error (the pictures fall back to the bitmap font).
  const auto path = std::filesystem::temp_directory_path() / "revox_not_a_font.ttf";
  std::ofstream(path) << "this is not a TrueType font";
  CHECK(revox::brats::load_truetype_font(path.string()) == nullptr);
  CHECK(revox::brats::load_truetype_font("/nonexistent/font.ttf") == nullptr);
  std::filesystem::remove(path);

  if (const auto* font = revox::brats::picture_font()) {
    const auto truetype = render_text("Dice WT 0.912", 18, font);
    CHECK(truetype.height >= 18);
    CHECK(truetype.width > 60);
    CHECK(covered(truetype) > 60);
    bool partial = false;  // antialiased: edge pixels are partly covered
    for (auto a : truetype.alpha) partial = partial || (a > 20 && a < 235);
    CHECK(partial);
  } else {
    WARN("DejaVu Sans is not installed: only the bitmap font was tested");
  }

  // Turned a quarter: the box is the upright box transposed; anchored at its centre.
  revox::brats::RgbImage image(200, 200, kWhite);
  const auto upright = render_text("epoch", 18);
  const auto box = revox::brats::draw_text(image, 100, 100, "epoch", Rgb{0, 0, 0}, 18, 0.5, 0.5,
                                           revox::brats::TextDirection::up);
  CHECK(box[0] == upright.height);
  CHECK(box[1] == upright.width);
  CHECK(count_pixels(image, 100 - box[0] / 2 - 1, 100 - box[1] / 2 - 1, 100 + box[0] / 2 + 1,
                     100 + box[1] / 2 + 1, dark) > 20);
  CHECK(count_pixels(image, 0, 0, 200, 100 - box[1] / 2 - 2, dark) == 0);
}

TEST_CASE("pictures: the overlay's caption names the case and its Dice, the key the colours",
          "[brats][overlay]") {
  using revox::brats::Plane;
  const Shape5 shape{1, 1, 8, 12, 10};
  Tensor<float> flair(shape);
  for (index_t i = 0; i < flair.numel(); ++i) flair[i] = 1.0f + static_cast<float>(i % 17);
  Tensor<std::uint8_t> truth = Tensor<std::uint8_t>::zeros(shape);
  for (index_t i = 300; i < 340; ++i) {
    truth[i] = static_cast<std::uint8_t>(i % 3 == 2 ? 4 : 1 + i % 3);
  }
  const Tensor<std::uint8_t> pred = truth.clone();
  const revox::data::Size3 at{3, 6, 5};

  const revox::brats::OverlayCaption caption{"BraTS2021_00042",
                                             std::array<double, 3>{0.91, 0.8, 0.7}};
  const auto lines = revox::brats::overlay_caption_lines(caption, Plane::axial, at, true);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "BraTS2021_00042   axial, z = 3");
  CHECK(lines[1] == "Dice   WT 0.910   TC 0.800   ET 0.700   mean 0.803");
  CHECK(revox::brats::overlay_caption_lines({}, Plane::sagittal, at, false) ==
        std::vector<std::string>{"sagittal, x = 5", "no ground truth: prediction only"});

  const auto image =
      revox::brats::render_overlay(flair, &truth, pred, 4, Plane::axial, at, caption);
  const auto layout = revox::brats::overlay_layout(shape, Plane::axial, 2, lines);
  REQUIRE(image.width == layout.width);
  REQUIRE(image.height == layout.height);
  CHECK(std::max(layout.panel_w, layout.panel_h) >= revox::brats::kMinPanelPixels);
  // Both caption lines hold dark text, the second (the Dice) only when the Dice is known.
  const int line = revox::brats::kOverlayTextSize + 8;
  for (int top : layout.caption_top) {
    CHECK(count_pixels(image, 0, top, image.width, top + line - 4, dark) > 50);
  }
  const auto no_dice = revox::brats::render_overlay(flair, &truth, pred, 4, Plane::axial, at,
                                                    {"BraTS2021_00042", std::nullopt});
  CHECK(no_dice.height == image.height - line);
  // The colour key: one swatch per region, in the colour the region takes over mid grey,
  // below the panels, each followed by its name.
  for (std::size_t i = 0; i < revox::brats::kColourKey.size(); ++i) {
    const auto [x, y] = layout.key_at[i];
    CHECK(y >= layout.panel_top + layout.panel_h);
    const Rgb swatch =
        revox::brats::blend(revox::brats::kKeyGrey, *revox::brats::kColourKey[i].colour);
    CHECK(image.at(x + 2, y + 2) == swatch);
    CHECK(image.at(x + revox::brats::kSwatchWidth - 2, y + revox::brats::kSwatchHeight - 2) ==
          swatch);
    CHECK(count_pixels(image, x + revox::brats::kSwatchWidth + 4, y - 4,
                       std::min(image.width, x + revox::brats::kSwatchWidth + 100),
                       y + revox::brats::kSwatchHeight + 4, dark) > 30);
  }
  CHECK(revox::brats::blend(revox::brats::kKeyGrey, revox::brats::kWtColour) == Rgb{64, 64, 192});
  // Panel titles above each panel.
  for (int left : layout.panel_left) {
    CHECK(count_pixels(image, left, layout.panel_title_top, left + layout.panel_w,
                       layout.panel_top, dark) > 30);
  }
  // A single narrow panel: the key wraps onto more rows but stays inside the image.
  const Shape5 thin{1, 1, 40, 4, 4};
  Tensor<float> thin_flair = Tensor<float>::zeros(thin);
  const auto thin_image = revox::brats::render_overlay(
      thin_flair, nullptr, Tensor<std::uint8_t>::zeros(thin), 4, Plane::axial, {0, 0, 0});
  const auto thin_layout = revox::brats::overlay_layout(
      thin, Plane::axial, 1,
      revox::brats::overlay_caption_lines({}, Plane::axial, {0, 0, 0}, false));
  for (const auto& [x, y] : thin_layout.key_at) {
    CHECK(x + revox::brats::kSwatchWidth <= thin_image.width);
    CHECK(y + revox::brats::kSwatchHeight <= thin_layout.key_bottom);
  }
  CHECK(thin_layout.key_bottom <= thin_image.height);
}
