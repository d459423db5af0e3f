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
// Layout of render_overlay: a caption strip ("ground truth", "prediction") above the
// panels, ground truth on the left and the prediction on the right separated by a white
// gap; without ground truth, only the prediction panel.
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
#include <filesystem>
#include <string>
#include <vector>

#include <stb/stb_easy_font.h>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/preprocess.hpp"

namespace revox::brats {

using Rgb = std::array<std::uint8_t, 3>;

inline constexpr Rgb kWtColour{0, 0, 255};
inline constexpr Rgb kTcColour{0, 255, 0};
inline constexpr Rgb kEtColour{255, 0, 0};
inline constexpr double kOverlayAlpha = 0.5;
inline constexpr int kMinPanelPixels = 256;
inline constexpr int kPanelGap = 4;
inline constexpr int kCaptionHeight = 24;
inline constexpr int kCaptionTextScale = 2;

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  // width * height * 3, rows top to bottom

  RgbImage() = default;
  RgbImage(int w, int h, Rgb fill = {0, 0, 0})
      : width(w), height(h), pixels(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3) {
    for (std::size_t i = 0; i < pixels.size(); i += 3) {
      pixels[i] = fill[0];
      pixels[i + 1] = fill[1];
      pixels[i + 2] = fill[2];
    }
  }
  std::size_t offset(int x, int y) const {
    return (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
            static_cast<std::size_t>(x)) * 3;
  }
  Rgb at(int x, int y) const {
    const std::size_t o = offset(x, y);
    return {pixels[o], pixels[o + 1], pixels[o + 2]};
  }
  void set(int x, int y, Rgb colour) {
    const std::size_t o = offset(x, y);
    pixels[o] = colour[0];
    pixels[o + 1] = colour[1];
    pixels[o + 2] = colour[2];
  }
};

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

// Draws a straight line of `thickness` pixels from (x0, y0) to (x1, y1), clipped.
inline void draw_line(RgbImage& image, double x0, double y0, double x1, double y1, Rgb colour,
                      int thickness = 2) {
  const int steps = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
  for (int s = 0; s <= steps; ++s) {
    const double t = static_cast<double>(s) / steps;
    const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0)));
    const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
    for (int dx = 0; dx < thickness; ++dx) {
      for (int dy = 0; dy < thickness; ++dy) {
        if (x + dx >= 0 && y + dy >= 0 && x + dx < image.width && y + dy < image.height) {
          image.set(x + dx, y + dy, colour);
        }
      }
    }
  }
}

// Draws `text` with stb_easy_font at (x, y), each font unit `scale` pixels, clipped.
inline void draw_text(RgbImage& image, int x, int y, const std::string& text, Rgb colour,
                      int scale) {
  std::string buffer_text = text;
  std::vector<char> vertices(static_cast<std::size_t>(text.size()) * 1024 + 64);
  const int quads = stb_easy_font_print(0.0f, 0.0f, buffer_text.data(), nullptr,
                                        vertices.data(), static_cast<int>(vertices.size()));
  for (int q = 0; q < quads; ++q) {
    float lo[2] = {1e9f, 1e9f};
    float hi[2] = {-1e9f, -1e9f};
    for (int v = 0; v < 4; ++v) {
      // Each vertex: x, y, z (float) and a 4-byte colour.
      const char* vertex = vertices.data() + (q * 4 + v) * 16;
      float xy[2];
      std::copy(vertex, vertex + sizeof xy, reinterpret_cast<char*>(xy));
      for (int k = 0; k < 2; ++k) {
        lo[k] = std::min(lo[k], xy[k]);
        hi[k] = std::max(hi[k], xy[k]);
      }
    }
    const int x0 = x + static_cast<int>(std::lround(lo[0] * float(scale)));
    const int x1 = x + static_cast<int>(std::lround(hi[0] * float(scale)));
    const int y0 = y + static_cast<int>(std::lround(lo[1] * float(scale)));
    const int y1 = y + static_cast<int>(std::lround(hi[1] * float(scale)));
    for (int py = std::max(0, y0); py < std::min(image.height, y1); ++py) {
      for (int px = std::max(0, x0); px < std::min(image.width, x1); ++px) {
        image.set(px, py, colour);
      }
    }
  }
}

// The picture for one plane through `at`: [ground truth | prediction] (or the prediction
// alone when `truth` is null) under a caption strip. All volumes are (1, 1, D, H, W) alike.
inline RgbImage render_overlay(const Tensor<float>& flair, const Tensor<std::uint8_t>* truth,
                               const Tensor<std::uint8_t>& prediction, std::uint8_t enhancing,
                               Plane plane, const data::Size3& at) {
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
  std::vector<std::string> captions;
  if (truth != nullptr) {
    panels.push_back(render_panel(flair, truth, enhancing, plane, at, window, scale));
    captions.emplace_back("ground truth");
  }
  panels.push_back(render_panel(flair, &prediction, enhancing, plane, at, window, scale));
  captions.emplace_back("prediction");
  const int panel_w = panels.front().width;
  const int panel_h = panels.front().height;
  const int count = static_cast<int>(panels.size());
  RgbImage image(count * panel_w + (count - 1) * kPanelGap, kCaptionHeight + panel_h,
                 Rgb{255, 255, 255});
  for (int p = 0; p < count; ++p) {
    const int x0 = p * (panel_w + kPanelGap);
    for (int y = 0; y < panel_h; ++y) {
      for (int x = 0; x < panel_w; ++x) {
        image.set(x0 + x, kCaptionHeight + y, panels[static_cast<std::size_t>(p)].at(x, y));
      }
    }
    draw_text(image, x0 + 4, 4, captions[static_cast<std::size_t>(p)] + " (" +
                                    plane_name(plane) + ")",
              Rgb{0, 0, 0}, kCaptionTextScale);
  }
  return image;
}

// Writes an RGB image as PNG (stb_image_write, in overlay_png.cpp); throws revox::Error
// naming the file when it cannot.
void write_png(const std::filesystem::path& path, const RgbImage& image);

}  // namespace revox::brats
