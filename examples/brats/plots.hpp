// revox-brats learning curve: RUN_DIR/learning_curve.png, written by the trainer after every
// epoch.
//
// Two stacked panels over a shared epoch axis: the training loss per epoch (top) and the
// hold-out Dice of the validated epochs (bottom: WT blue, TC green, ET red, their mean
// black, one dot per validation so a single validation shows). Both have ticks at "nice"
// values (steps of 1, 2 or 5 times a power of ten, nice_ticks), a light grid and axis
// titles; the legends sit to the right of the panels, outside the data (LearningCurveLayout
// says where everything is). The loss axis runs from 0 (or the lowest loss, if negative) to
// the first tick at or above the highest loss; the Dice axis is [0, 1]; the epoch axis
// spans the first to the last epoch, widened to whole ticks. Non-finite losses are left out.
//
// Text uses drawing.hpp's fonts (DejaVu Sans when installed, else a bitmap font).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "drawing.hpp"

namespace revox::brats {

// Tick positions for an axis over [low, high]: the step is 1, 2 or 5 times a power of ten
// (at least `min_step`), chosen so that about `target` intervals cover the range; the axis
// is widened to whole steps (first <= low, last >= high), and `values` runs from first to
// last. A range of zero width is widened by one step on each side.
struct Ticks {
  double first = 0.0;
  double last = 1.0;
  double step = 1.0;
  std::vector<double> values;
};

inline Ticks nice_ticks(double low, double high, int target = 5, double min_step = 0.0) {
  if (!(std::isfinite(low) && std::isfinite(high))) low = 0.0, high = 1.0;
  if (high < low) std::swap(low, high);
  const double span = high - low;
  const double raw = (span > 0.0 ? span : std::max(std::abs(low), 1.0)) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalised = raw / magnitude;
  double step = magnitude * (normalised <= 1.0   ? 1.0
                             : normalised <= 2.0 ? 2.0
                             : normalised <= 5.0 ? 5.0
                                                 : 10.0);
  step = std::max(step, min_step);
  Ticks ticks;
  ticks.step = step;
  // A small tolerance keeps 0.30000000000000004 / 0.1 from starting a fourth step.
  ticks.first = std::floor(low / step + 1e-9) * step;
  ticks.last = std::ceil(high / step - 1e-9) * step;
  if (ticks.last <= ticks.first) {
    ticks.first -= step;
    ticks.last += step;
  }
  const long long count = std::llround((ticks.last - ticks.first) / step);
  for (long long k = 0; k <= count; ++k) {
    // Rounded to the step's decimals, so labels and positions hold no binary residue.
    const double value = ticks.first + static_cast<double>(k) * step;
    const double unit = std::pow(10.0, std::floor(std::log10(step)) - 6);
    ticks.values.push_back(std::round(value / unit) * unit);
  }
  ticks.first = ticks.values.front();
  ticks.last = ticks.values.back();
  return ticks;
}

// A tick's label with as many decimals as the step needs: 0.2 -> "0.2", 5 -> "5".
inline std::string tick_label(double value, double step) {
  const int decimals =
      std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  std::string label = buffer;
  if (label.find_first_not_of("-0.") == std::string::npos) label = label.substr(label[0] == '-');
  return label;
}

// One epoch of the curve: the training loss, and the hold-out Dice (WT, TC, ET) when the
// epoch was validated.
struct CurvePoint {
  int epoch = 0;
  double loss = 0.0;
  std::optional<std::array<double, 3>> dice;
};

struct PlotRect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels x0 <= x < x1, y0 <= y < y1

  bool contains(int x, int y) const { return x >= x0 && x < x1 && y >= y0 && y < y1; }
  bool overlaps(const PlotRect& o) const {
    return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1;
  }
};

// Where the parts of the learning curve are: the data rectangles of the two panels (the
// curves are drawn inside them, their frame on their border) and the legends' boxes.
struct LearningCurveLayout {
  int width = 1020;
  int height = 640;
  int text_size = 17;
  const TrueTypeFont* font = picture_font();  // null: the bitmap font
  int inner_pad = 8;  // pixels between the outermost ticks and the frame, so curves show there
  PlotRect loss{96, 24, 760, 268};
  PlotRect dice{96, 308, 760, 560};
  PlotRect loss_legend{784, 24, 1012, 80};
  PlotRect dice_legend{784, 308, 1012, 470};
};

inline constexpr Rgb kPlotText{30, 30, 30};
inline constexpr Rgb kPlotGrid{225, 225, 225};
inline constexpr Rgb kPlotFrame{110, 110, 110};
inline constexpr Rgb kLossColour{0, 0, 0};
inline constexpr std::array<Rgb, 4> kDiceCurveColours{Rgb{40, 80, 230}, Rgb{20, 150, 50},
                                                      Rgb{220, 40, 40}, Rgb{0, 0, 0}};

namespace detail {

struct Axis {
  Ticks ticks;
  int pixel_low = 0, pixel_high = 0;  // pixels of ticks.first and ticks.last

  double map(double value) const {
    const double span = ticks.last - ticks.first;
    return pixel_low + (pixel_high - pixel_low) * (value - ticks.first) / span;
  }
};

// Grid, frame, ticks and tick labels of one panel; y labels always, x labels if asked.
inline void draw_panel_axes(RgbImage& image, const PlotRect& r, const Axis& x_axis,
                            const Axis& y_axis, bool x_labels, int text_size,
                            const TrueTypeFont* font) {
  fill_rect(image, r.x0, r.y0, r.x1, r.y1, Rgb{255, 255, 255});
  for (double v : x_axis.ticks.values) {
    const int px = static_cast<int>(std::lround(x_axis.map(v)));
    fill_rect(image, px, r.y0, px + 1, r.y1, kPlotGrid);
    fill_rect(image, px, r.y1, px + 1, r.y1 + 6, kPlotFrame);
    if (x_labels) {
      draw_text(image, px, r.y1 + 8, tick_label(v, x_axis.ticks.step), kPlotText, text_size, 0.5,
                0.0, TextDirection::right, font);
    }
  }
  for (double v : y_axis.ticks.values) {
    const int py = static_cast<int>(std::lround(y_axis.map(v)));
    fill_rect(image, r.x0, py, r.x1, py + 1, kPlotGrid);
    fill_rect(image, r.x0 - 6, py, r.x0, py + 1, kPlotFrame);
    draw_text(image, r.x0 - 9, py, tick_label(v, y_axis.ticks.step), kPlotText, text_size, 1.0,
              0.5, TextDirection::right, font);
  }
  fill_rect(image, r.x0 - 1, r.y0, r.x0, r.y1 + 1, kPlotFrame);
  fill_rect(image, r.x0 - 1, r.y1, r.x1, r.y1 + 1, kPlotFrame);
  fill_rect(image, r.x1 - 1, r.y0, r.x1, r.y1, kPlotFrame);
  fill_rect(image, r.x0 - 1, r.y0, r.x1, r.y0 + 1, kPlotFrame);
}

inline void draw_legend(RgbImage& image, const PlotRect& box, const std::string& title,
                        const std::vector<std::string>& names, const std::vector<Rgb>& colours,
                        int text_size, const TrueTypeFont* font) {
  const int line = text_size + 9;
  int y = box.y0 + 4;
  draw_text(image, box.x0, y, title, kPlotText, text_size, 0.0, 0.0, TextDirection::right, font);
  y += line;
  for (std::size_t i = 0; i < names.size(); ++i, y += line) {
    const double mid = y + text_size / 2.0;
    draw_line(image, box.x0 + 2, mid, box.x0 + 30, mid, colours[i], 2.5);
    fill_disc(image, box.x0 + 16, mid, 3.5, colours[i]);
    draw_text(image, box.x0 + 40, y, names[i], kPlotText, text_size, 0.0, 0.0,
              TextDirection::right, font);
  }
}

}  // namespace detail

// The learning curve of `points` (in epoch order) as an image of layout.width x
// layout.height; without the legends when `legend` is false (tests compare the two).
inline RgbImage render_learning_curve(const std::vector<CurvePoint>& points, bool legend = true,
                                      const LearningCurveLayout& layout = {}) {
  RgbImage image(layout.width, layout.height, Rgb{255, 255, 255});
  const int ts = layout.text_size;

  int first_epoch = 1, last_epoch = 1;
  double loss_low = 0.0, loss_high = 0.0;
  bool any_loss = false;
  if (!points.empty()) {
    first_epoch = points.front().epoch;
    last_epoch = points.back().epoch;
  }
  for (const auto& p : points) {
    first_epoch = std::min(first_epoch, p.epoch);
    last_epoch = std::max(last_epoch, p.epoch);
    if (!std::isfinite(p.loss)) continue;
    loss_low = std::min(loss_low, p.loss);
    loss_high = std::max(loss_high, p.loss);
    any_loss = true;
  }
  if (!any_loss) loss_high = 1.0;
  const int x_target = std::clamp(last_epoch - first_epoch, 1, 8);
  const int pad = layout.inner_pad;
  detail::Axis x_loss{nice_ticks(first_epoch, std::max(last_epoch, first_epoch + 1), x_target, 1.0),
                      layout.loss.x0 + pad, layout.loss.x1 - 1 - pad};
  detail::Axis x_dice = x_loss;
  x_dice.pixel_low = layout.dice.x0 + pad;
  x_dice.pixel_high = layout.dice.x1 - 1 - pad;
  const detail::Axis y_loss{nice_ticks(loss_low, loss_high, 5), layout.loss.y1 - 1 - pad,
                            layout.loss.y0 + pad};
  const detail::Axis y_dice{nice_ticks(0.0, 1.0, 5), layout.dice.y1 - 1 - pad,
                            layout.dice.y0 + pad};

  const TrueTypeFont* font = layout.font;
  detail::draw_panel_axes(image, layout.loss, x_loss, y_loss, false, ts, font);
  detail::draw_panel_axes(image, layout.dice, x_dice, y_dice, true, ts, font);
  const int title_x = layout.loss.x0 - 72;
  draw_text(image, title_x, (layout.loss.y0 + layout.loss.y1) / 2.0, "training loss", kPlotText,
            ts, 0.0, 0.5, TextDirection::up, font);
  draw_text(image, title_x, (layout.dice.y0 + layout.dice.y1) / 2.0, "hold-out Dice", kPlotText,
            ts, 0.0, 0.5, TextDirection::up, font);
  draw_text(image, (layout.dice.x0 + layout.dice.x1) / 2.0, layout.dice.y1 + ts + 16, "epoch",
            kPlotText, ts, 0.5, 0.0, TextDirection::right, font);

  // Curves, clipped to their panel: drawn into a copy and pasted back inside the frame.
  RgbImage curves = image;
  std::vector<std::array<double, 2>> loss_line;
  for (const auto& p : points) {
    if (std::isfinite(p.loss)) loss_line.push_back({x_loss.map(p.epoch), y_loss.map(p.loss)});
  }
  for (std::size_t i = 1; i < loss_line.size(); ++i) {
    draw_line(curves, loss_line[i - 1][0], loss_line[i - 1][1], loss_line[i][0], loss_line[i][1],
              kLossColour, 2.0);
  }
  if (loss_line.size() <= 60) {
    for (const auto& q : loss_line) fill_disc(curves, q[0], q[1], 2.5, kLossColour);
  }
  for (std::size_t r = 0; r < 4; ++r) {
    std::vector<std::array<double, 2>> line;
    for (const auto& p : points) {
      if (!p.dice) continue;
      const auto& d = *p.dice;
      const double value = r < 3 ? d[r] : (d[0] + d[1] + d[2]) / 3.0;
      if (std::isfinite(value)) line.push_back({x_dice.map(p.epoch), y_dice.map(value)});
    }
    for (std::size_t i = 1; i < line.size(); ++i) {
      draw_line(curves, line[i - 1][0], line[i - 1][1], line[i][0], line[i][1],
                kDiceCurveColours[r], r < 3 ? 2.0 : 1.5);
    }
    for (const auto& q : line) {
      fill_disc(curves, q[0], q[1], r < 3 ? 3.0 : 2.5, kDiceCurveColours[r]);
    }
  }
  for (const PlotRect& r : {layout.loss, layout.dice}) {
    for (int y = r.y0 + 1; y < r.y1 - 1; ++y) {
      for (int x = r.x0; x < r.x1 - 1; ++x) image.set(x, y, curves.at(x, y));
    }
  }

  if (legend) {
    detail::draw_legend(image, layout.loss_legend, "training", {"loss per epoch"}, {kLossColour},
                        ts, font);
    detail::draw_legend(image, layout.dice_legend, "hold-out Dice",
                        {"WT whole tumour", "TC tumour core", "ET enhancing", "mean of the 3"},
                        {kDiceCurveColours.begin(), kDiceCurveColours.end()}, ts, font);
  }
  return image;
}

// The learning curve of a training history (records with epoch, loss, validated and dice
// WT/TC/ET, e.g. EpochRecord) as RGB rows for stbi_write_png; sets width and height.
template <class Record>
std::vector<std::uint8_t> plot_learning_curve(const std::vector<Record>& history, int& width,
                                              int& height) {
  std::vector<CurvePoint> points;
  for (const auto& record : history) {
    CurvePoint p;
    p.epoch = record.epoch;
    p.loss = record.loss;
    if (record.validated) p.dice = record.dice;
    points.push_back(p);
  }
  RgbImage image = render_learning_curve(points);
  width = image.width;
  height = image.height;
  return std::move(image.pixels);
}

}  // namespace revox::brats
