// revox-brats overlays: PNG pictures of a segmentation over the FLAIR image, in the colours
// of the paper's Fig. 4: WT (whole tumour: labels 1, 2, ET) blue, TC (tumour core: 1, ET)
// green, ET (enhancing tumour) red. Regions are nested, so each voxel takes the colour of
// the innermost region it is in, alpha-blended (kOverlayAlpha) over the grey FLAIR.
//
// One picture per plane through a point (the tumour centroid): axial (fixed z = D index;
// columns x = W, rows y = H), coronal (fixed y; columns x, rows z) and sagittal (fixed x;
// columns y, rows z). Rows are flipped so that y (axial) and z (coronal, sagittal) grow
// upwards, the way a viewer shows a volume stored in RAS order. Voxels are drawn square
// (BraTS is 1 mm isotropic) and every panel is scaled up by an integer factor to at least
// kMinPanelPixels on its longer side, so tiny phantom volumes stay visible.
//
// Layout of render_overlay (overlay_layout), top to bottom on white: a caption (the case id
// and the plane with the slice's index; then, when the case has ground truth, the Dice of
// the prediction per region as `predict` reports it), the panels' titles ("ground truth",
// "prediction"), the panels (ground truth on the left and the prediction on the right, or
// the prediction alone without ground truth), and a colour key: one swatch per region in
// the colour a region takes over a mid-grey image, with its name. Text uses drawing.hpp's
// fonts (DejaVu Sans when installed, else a bitmap font).
//
// Grey: FLAIR linearly from its 0.5th percentile (black) to its 99.5th percentile (white)
// over brain voxels (non-zero); voxels outside the brain (zero) are black.
//
// Images are 8-bit RGB, rows top to bottom. write_png (overlay_png.cpp) writes one with
// stb_image_write.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "drawing.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/preprocess.hpp"

namespace revox::brats {

inline constexpr Rgb kWtColour{0, 0, 255};
inline constexpr Rgb kTcColour{0, 255, 0};
inline constexpr Rgb kEtColour{255, 0, 0};
inline constexpr double kOverlayAlpha = 0.5;
inline constexpr int kMinPanelPixels = 448;
inline constexpr int kPanelGap = 12;
inline constexpr int kOverlayMargin = 12;
inline constexpr int kOverlayTextSize = 18;
inline constexpr std::uint8_t kKeyGrey = 128;  // the grey the key's swatches are blended over

enum class Plane { axial, coronal, sagittal };

inline const char* plane_name(Plane plane) {
  return plane == Plane::axial ? "axial" : plane == Plane::coronal ? "coronal" : "sagittal";
}

struct GreyWindow {
  float low = 0.0f;
  float high = 1.0f;
};

// The 0.5th and 99.5th percentiles of the non-zero voxels of a (1, 1, D, H, W) volume.
inline GreyWindow grey_window(const Tensor<float>& flair) {
  std::vector<float> values;
  for (index_t i = 0; i < flair.numel(); ++i) {
    if (flair[i] != 0.0f) values.push_back(flair[i]);
  }
  if (values.empty()) return {};
  auto quantile = [&](double q) {
    const auto k = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k),
                     values.end());
    return values[k];
  };
  GreyWindow window{quantile(0.005), quantile(0.995)};
  if (!(window.high > window.low)) window.high = window.low + 1.0f;
  return window;
}

inline std::uint8_t grey_level(float value, const GreyWindow& window) {
  if (value == 0.0f) return 0;
  const double t = (static_cast<double>(value) - window.low) / (window.high - window.low);
  return static_cast<std::uint8_t>(std::lround(std::clamp(t, 0.0, 1.0) * 255.0));
}

inline Rgb blend(std::uint8_t grey, const Rgb& colour, double alpha = kOverlayAlpha) {
  Rgb out{};
  for (std::size_t k = 0; k < 3; ++k) {
    out[k] = static_cast<std::uint8_t>(
        std::lround((1.0 - alpha) * grey + alpha * static_cast<double>(colour[k])));
  }
  return out;
}

// The colour of a label, or nullptr for background.
inline const Rgb* label_colour(std::uint8_t label, std::uint8_t enhancing) {
  if (label == 0) return nullptr;
  if (label == enhancing) return &kEtColour;
  if (label == 1) return &kTcColour;
  return &kWtColour;
}

// Mean position (D, H, W) of the non-zero voxels, rounded; the volume centre if none.
inline data::Size3 tumour_centroid(const Tensor<std::uint8_t>& labels) {
  const Shape5 s = labels.shape();
  double sum[3] = {0, 0, 0};
  double count = 0;
  index_t i = 0;
  for (index_t d = 0; d < s.d; ++d) {
    for (index_t h = 0; h < s.h; ++h) {
      for (index_t w = 0; w < s.w; ++w, ++i) {
        if (labels[i] == 0) continue;
        sum[0] += static_cast<double>(d);
        sum[1] += static_cast<double>(h);
        sum[2] += static_cast<double>(w);
        count += 1;
      }
    }
  }
  if (count == 0) return {s.d / 2, s.h / 2, s.w / 2};
  return {static_cast<index_t>(std::lround(sum[0] / count)),
          static_cast<index_t>(std::lround(sum[1] / count)),
          static_cast<index_t>(std::lround(sum[2] / count))};
}

// Columns and rows of a plane's slice of a volume of shape s.
inline std::array<index_t, 2> slice_size(const Shape5& s, Plane plane) {
  switch (plane) {
    case Plane::axial: return {s.w, s.h};
    case Plane::coronal: return {s.w, s.d};
    case Plane::sagittal: return {s.h, s.d};
  }
  return {0, 0};
}

// The flat voxel index shown at (column, row) of a plane's slice through `at`.
inline index_t slice_voxel(const Shape5& s, Plane plane, const data::Size3& at, index_t column,
                           index_t row) {
  index_t d = at[0], h = at[1], w = at[2];
  switch (plane) {
    case Plane::axial: w = column; h = s.h - 1 - row; break;
    case Plane::coronal: w = column; d = s.d - 1 - row; break;
    case Plane::sagittal: h = column; d = s.d - 1 - row; break;
  }
  return (d * s.h + h) * s.w + w;
}

inline int panel_scale(const Shape5& s, Plane plane) {
  const auto size = slice_size(s, plane);
  const index_t longer = std::max(size[0], size[1]);
  return static_cast<int>(std::max<index_t>(1, (kMinPanelPixels + longer - 1) / longer));
}

// One panel: the FLAIR slice, with `labels` (may be null) blended over it, scaled by `scale`.
inline RgbImage render_panel(const Tensor<float>& flair, const Tensor<std::uint8_t>* labels,
                             std::uint8_t enhancing, Plane plane, const data::Size3& at,
                             const GreyWindow& window, int scale) {
  const Shape5 s = flair.shape();
  const auto size = slice_size(s, plane);
  RgbImage image(static_cast<int>(size[0]) * scale, static_cast<int>(size[1]) * scale);
  for (index_t row = 0; row < size[1]; ++row) {
    for (index_t column = 0; column < size[0]; ++column) {
      const index_t voxel = slice_voxel(s, plane, at, column, row);
      const std::uint8_t grey = grey_level(flair[voxel], window);
      const Rgb* colour = labels != nullptr ? label_colour((*labels)[voxel], enhancing) : nullptr;
      const Rgb pixel = colour != nullptr ? blend(grey, *colour) : Rgb{grey, grey, grey};
      for (int dy = 0; dy < scale; ++dy) {
        for (int dx = 0; dx < scale; ++dx) {
          image.set(static_cast<int>(column) * scale + dx, static_cast<int>(row) * scale + dy,
                    pixel);
        }
      }
    }
  }
  return image;
}

// What the caption says about the case: its id and, when it has ground truth, the Dice of
// the prediction (WT, TC, ET).
struct OverlayCaption {
  std::string case_id;
  std::optional<std::array<double, 3>> dice;
};

// "axial, z = 37": the plane and the index of the fixed axis (z = D, y = H, x = W).
inline std::string slice_description(Plane plane, const data::Size3& at) {
  switch (plane) {
    case Plane::axial: return "axial, z = " + std::to_string(at[0]);
    case Plane::coronal: return "coronal, y = " + std::to_string(at[1]);
    case Plane::sagittal: return "sagittal, x = " + std::to_string(at[2]);
  }
  return {};
}

// The caption's lines: the case and slice; then the Dice, or that there is no ground truth.
inline std::vector<std::string> overlay_caption_lines(const OverlayCaption& caption, Plane plane,
                                                      const data::Size3& at, bool has_truth) {
  std::vector<std::string> lines;
  lines.push_back((caption.case_id.empty() ? std::string() : caption.case_id + "   ") +
                  slice_description(plane, at));
  if (caption.dice) {
    const auto& d = *caption.dice;
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "Dice   WT %.3f   TC %.3f   ET %.3f   mean %.3f", d[0],
                  d[1], d[2], (d[0] + d[1] + d[2]) / 3.0);
    lines.emplace_back(buffer);
  } else if (!has_truth) {
    lines.emplace_back("no ground truth: prediction only");
  }
  return lines;
}

struct KeyEntry {
  const Rgb* colour;
  const char* name;
};
inline constexpr std::array<KeyEntry, 3> kColourKey{KeyEntry{&kWtColour, "WT whole tumour"},
                                                    KeyEntry{&kTcColour, "TC tumour core"},
                                                    KeyEntry{&kEtColour, "ET enhancing tumour"}};
inline constexpr int kSwatchWidth = 28;
inline constexpr int kSwatchHeight = 18;

// Where everything of an overlay goes (pixels, y down).
struct OverlayLayout {
  int width = 0, height = 0;
  int panel_w = 0, panel_h = 0;
  int panel_top = 0;                      // first row of the panels
  std::vector<int> panel_left;            // first column of each panel
  int panel_title_top = 0;                // top of the panels' titles
  std::vector<int> caption_top;           // top of each caption line
  std::vector<std::array<int, 2>> key_at; // top-left corner of each key swatch
  int key_top = 0, key_bottom = 0;        // the colour key's strip
};

inline OverlayLayout overlay_layout(const Shape5& s, Plane plane, int panels,
                                    const std::vector<std::string>& caption_lines) {
  const int text = kOverlayTextSize;
  const int line = text + 8;
  OverlayLayout layout;
  const int scale = panel_scale(s, plane);
  const auto size = slice_size(s, plane);
  layout.panel_w = static_cast<int>(size[0]) * scale;
  layout.panel_h = static_cast<int>(size[1]) * scale;
  const int panels_w = panels * layout.panel_w + (panels - 1) * kPanelGap;
  int widest = panels_w;
  for (const auto& l : caption_lines) widest = std::max(widest, text_width(l, text));
  std::vector<int> key_w;
  for (const auto& entry : kColourKey) {
    key_w.push_back(kSwatchWidth + 8 + text_width(entry.name, text));
    widest = std::max(widest, key_w.back());
  }
  layout.width = widest + 2 * kOverlayMargin;
  int y = kOverlayMargin;
  for (std::size_t i = 0; i < caption_lines.size(); ++i, y += line) layout.caption_top.push_back(y);
  y += 4;
  layout.panel_title_top = y;
  y += line;
  layout.panel_top = y;
  const int left = (layout.width - panels_w) / 2;
  for (int p = 0; p < panels; ++p) {
    layout.panel_left.push_back(left + p * (layout.panel_w + kPanelGap));
  }
  y += layout.panel_h + 10;
  // The key's entries left to right, wrapped onto more rows when the width is too small.
  layout.key_top = y;
  int x = kOverlayMargin;
  for (std::size_t i = 0; i < kColourKey.size(); ++i) {
    if (x > kOverlayMargin && x + key_w[i] > layout.width - kOverlayMargin) {
      x = kOverlayMargin;
      y += line;
    }
    layout.key_at.push_back({x, y + (line - kSwatchHeight) / 2});
    x += key_w[i] + 24;
  }
  y += line;
  layout.key_bottom = y;
  layout.height = y + kOverlayMargin - 4;
  return layout;
}

// The picture for one plane through `at`: [ground truth | prediction] (or the prediction
// alone when `truth` is null) under a caption, over a colour key. All volumes are
// (1, 1, D, H, W) alike.
inline RgbImage render_overlay(const Tensor<float>& flair, const Tensor<std::uint8_t>* truth,
                               const Tensor<std::uint8_t>& prediction, std::uint8_t enhancing,
                               Plane plane, const data::Size3& at,
                               const OverlayCaption& caption = {}) {
  const Shape5 s = flair.shape();
  REVOX_CHECK(s.n == 1 && s.c == 1 && s.valid(),
              "render_overlay: FLAIR must be (1, 1, D, H, W), got ", s);
  REVOX_CHECK(prediction.shape() == s, "render_overlay: prediction shape ", prediction.shape(),
              " differs from the FLAIR's ", s);
  REVOX_CHECK(truth == nullptr || truth->shape() == s, "render_overlay: ground truth shape ",
              truth->shape(), " differs from the FLAIR's ", s);
  REVOX_CHECK(at[0] >= 0 && at[0] < s.d && at[1] >= 0 && at[1] < s.h && at[2] >= 0 && at[2] < s.w,
              "render_overlay: slice position (d=", at[0], ", h=", at[1], ", w=", at[2],
              ") is outside the volume ", s);
  const GreyWindow window = grey_window(flair);
  const int scale = panel_scale(s, plane);
  std::vector<RgbImage> panels;
  std::vector<std::string> titles;
  if (truth != nullptr) {
    panels.push_back(render_panel(flair, truth, enhancing, plane, at, window, scale));
    titles.emplace_back("ground truth");
  }
  panels.push_back(render_panel(flair, &prediction, enhancing, plane, at, window, scale));
  titles.emplace_back("prediction");
  const std::vector<std::string> lines =
      overlay_caption_lines(caption, plane, at, truth != nullptr);
  const OverlayLayout layout =
      overlay_layout(s, plane, static_cast<int>(panels.size()), lines);
  const Rgb ink{20, 20, 20};
  RgbImage image(layout.width, layout.height, Rgb{255, 255, 255});
  for (std::size_t i = 0; i < lines.size(); ++i) {
    draw_text(image, kOverlayMargin, layout.caption_top[i], lines[i], ink, kOverlayTextSize);
  }
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const int x0 = layout.panel_left[p];
    for (int y = 0; y < layout.panel_h; ++y) {
      for (int x = 0; x < layout.panel_w; ++x) {
        image.set(x0 + x, layout.panel_top + y, panels[p].at(x, y));
      }
    }
    draw_text(image, x0 + layout.panel_w / 2.0, layout.panel_title_top, titles[p], ink,
              kOverlayTextSize, 0.5, 0.0);
  }
  for (std::size_t i = 0; i < kColourKey.size(); ++i) {
    const auto [x, y] = layout.key_at[i];
    fill_rect(image, x, y, x + kSwatchWidth, y + kSwatchHeight,
              blend(kKeyGrey, *kColourKey[i].colour));
    draw_text(image, x + kSwatchWidth + 8, y + kSwatchHeight / 2.0, kColourKey[i].name, ink,
              kOverlayTextSize, 0.0, 0.5);
  }
  return image;
}

// Writes an RGB image as PNG (stb_image_write, in overlay_png.cpp); throws revox::Error
// naming the file when it cannot.
void write_png(const std::filesystem::path& path, const RgbImage& image);

}  // namespace revox::brats
