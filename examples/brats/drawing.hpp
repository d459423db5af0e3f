// revox-brats drawing: the raster primitives of the pictures (overlay.hpp, plots.hpp).
//
// RgbImage: 8-bit RGB, rows top to bottom. Pixel (x, y) has its centre at the coordinates
// (x, y), so a line from (0, 5) to (9, 5) of width 1 covers row 5 exactly.
//
// Lines and discs are antialiased: a pixel is blended with the colour by the part of it the
// shape covers (1 - distance beyond the edge, clamped to [0, 1]). fill_rect is crisp.
//
// Text: DejaVu Sans (Debian's fonts-dejavu-core), rasterised antialiased with stb_truetype,
// when the font file is installed; otherwise stb_easy_font's bitmap font scaled up to about
// the same height, so the pictures never depend on a font being there. `size` is the height
// of a line in pixels (ascender to descender); render_text gives a coverage mask of the
// text, draw_text blends it into an image anchored at a fraction of its box, upright or
// turned a quarter counter-clockwise (read bottom to top, for a y-axis title).
//
// stb_truetype is compiled here with STBTT_STATIC, so its functions are private to each
// file that includes this header.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <stb/stb_easy_font.h>
#ifndef __STB_INCLUDE_STB_TRUETYPE_H__
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb/stb_truetype.h>
#endif

namespace revox::brats {

using Rgb = std::array<std::uint8_t, 3>;

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
  bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }
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
  // Mixes `colour` into pixel (x, y) with weight `coverage` in [0, 1]; outside: nothing.
  void blend_pixel(int x, int y, Rgb colour, double coverage) {
    if (!contains(x, y) || coverage <= 0.0) return;
    if (coverage >= 1.0) return set(x, y, colour);
    const std::size_t o = offset(x, y);
    for (std::size_t k = 0; k < 3; ++k) {
      pixels[o + k] = static_cast<std::uint8_t>(std::lround(
          (1.0 - coverage) * pixels[o + k] + coverage * static_cast<double>(colour[k])));
    }
  }
};

// Fills the pixels x0 <= x < x1, y0 <= y < y1 (clipped).
inline void fill_rect(RgbImage& image, int x0, int y0, int x1, int y1, Rgb colour) {
  for (int y = std::max(0, y0); y < std::min(image.height, y1); ++y) {
    for (int x = std::max(0, x0); x < std::min(image.width, x1); ++x) image.set(x, y, colour);
  }
}

// A straight antialiased line of `thickness` pixels from (x0, y0) to (x1, y1), clipped.
inline void draw_line(RgbImage& image, double x0, double y0, double x1, double y1, Rgb colour,
                      double thickness = 2.0) {
  const double half = thickness / 2.0;
  const double dx = x1 - x0, dy = y1 - y0;
  const double length2 = dx * dx + dy * dy;
  const int xa = static_cast<int>(std::floor(std::min(x0, x1) - half - 1));
  const int xb = static_cast<int>(std::ceil(std::max(x0, x1) + half + 1));
  const int ya = static_cast<int>(std::floor(std::min(y0, y1) - half - 1));
  const int yb = static_cast<int>(std::ceil(std::max(y0, y1) + half + 1));
  for (int y = std::max(0, ya); y <= std::min(image.height - 1, yb); ++y) {
    for (int x = std::max(0, xa); x <= std::min(image.width - 1, xb); ++x) {
      const double t =
          length2 == 0.0 ? 0.0 : std::clamp(((x - x0) * dx + (y - y0) * dy) / length2, 0.0, 1.0);
      const double distance = std::hypot(x - (x0 + t * dx), y - (y0 + t * dy));
      image.blend_pixel(x, y, colour, std::clamp(half + 0.5 - distance, 0.0, 1.0));
    }
  }
}

// An antialiased filled disc of radius `radius` around (cx, cy).
inline void fill_disc(RgbImage& image, double cx, double cy, double radius, Rgb colour) {
  for (int y = static_cast<int>(std::floor(cy - radius - 1));
       y <= static_cast<int>(std::ceil(cy + radius + 1)); ++y) {
    for (int x = static_cast<int>(std::floor(cx - radius - 1));
         x <= static_cast<int>(std::ceil(cx + radius + 1)); ++x) {
      const double distance = std::hypot(x - cx, y - cy);
      image.blend_pixel(x, y, colour, std::clamp(radius + 0.5 - distance, 0.0, 1.0));
    }
  }
}

// ---- text ------------------------------------------------------------------------------

struct TrueTypeFont {
  std::vector<unsigned char> data;  // the font file; info points into it
  stbtt_fontinfo info{};
};

// The font at `path`, or null when it cannot be read or is not a TrueType font.
inline std::unique_ptr<TrueTypeFont> load_truetype_font(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return nullptr;
  auto font = std::make_unique<TrueTypeFont>();
  font->data.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  if (font->data.size() < 12) return nullptr;
  const int offset = stbtt_GetFontOffsetForIndex(font->data.data(), 0);
  if (offset < 0 || stbtt_InitFont(&font->info, font->data.data(), offset) == 0) return nullptr;
  return font;
}

// DejaVu Sans where a distribution installs it (Debian and Ubuntu, Arch, Fedora), loaded
// once; null when none is there (the pictures then use the bitmap font).
inline const TrueTypeFont* picture_font() {
  static const std::unique_ptr<TrueTypeFont> font = [] {
    for (const char* path : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                             "/usr/share/fonts/TTF/DejaVuSans.ttf",
                             "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                             "/usr/share/fonts/dejavu/DejaVuSans.ttf"}) {
      if (auto loaded = load_truetype_font(path)) return loaded;
    }
    return std::unique_ptr<TrueTypeFont>();
  }();
  return font.get();
}

// Coverage (0..255) of a line of text, `width` x `height` pixels, rows top to bottom.
struct TextMask {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> alpha;

  std::uint8_t at(int x, int y) const {
    return alpha[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                 static_cast<std::size_t>(x)];
  }
};

namespace detail {

inline TextMask render_text_truetype(const TrueTypeFont& font, const std::string& text,
                                     int size) {
  const float scale = stbtt_ScaleForPixelHeight(&font.info, static_cast<float>(size));
  const double scale_d = scale;
  int ascent = 0, descent = 0, line_gap = 0;
  stbtt_GetFontVMetrics(&font.info, &ascent, &descent, &line_gap);
  const int baseline = static_cast<int>(std::lround(ascent * scale_d));
  double advance_total = 1.0;  // one pixel of margin on the left for antialiased edges
  std::vector<double> pen;
  for (std::size_t i = 0; i < text.size(); ++i) {
    pen.push_back(advance_total);
    int advance = 0, bearing = 0;
    const int c = static_cast<unsigned char>(text[i]);
    stbtt_GetCodepointHMetrics(&font.info, c, &advance, &bearing);
    advance_total += advance * scale_d;
    if (i + 1 < text.size()) {
      advance_total +=
          scale_d * stbtt_GetCodepointKernAdvance(&font.info, c,
                                                static_cast<unsigned char>(text[i + 1]));
    }
  }
  TextMask mask;
  mask.width = static_cast<int>(std::ceil(advance_total)) + 1;
  mask.height = std::max(size, baseline - static_cast<int>(std::lround(descent * scale_d)));
  mask.alpha.assign(static_cast<std::size_t>(mask.width) * static_cast<std::size_t>(mask.height),
                    0);
  std::vector<unsigned char> glyph;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const int c = static_cast<unsigned char>(text[i]);
    const double whole = std::floor(pen[i]);
    const float shift = static_cast<float>(pen[i] - whole);
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    stbtt_GetCodepointBitmapBoxSubpixel(&font.info, c, scale, scale, shift, 0.0f, &x0, &y0, &x1,
                                        &y1);
    const int w = x1 - x0, h = y1 - y0;
    if (w <= 0 || h <= 0) continue;
    glyph.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h), 0);
    stbtt_MakeCodepointBitmapSubpixel(&font.info, glyph.data(), w, h, w, scale, scale, shift,
                                      0.0f, c);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int mx = static_cast<int>(whole) + x0 + x, my = baseline + y0 + y;
        if (mx < 0 || my < 0 || mx >= mask.width || my >= mask.height) continue;
        auto& a = mask.alpha[static_cast<std::size_t>(my) * static_cast<std::size_t>(mask.width) +
                             static_cast<std::size_t>(mx)];
        a = std::max(a, glyph[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) +
                              static_cast<std::size_t>(x)]);
      }
    }
  }
  return mask;
}

// stb_easy_font draws a line in 12 units with capitals 7 units tall; each unit becomes
// `unit` pixels, rounded so that the capitals are about as tall as the TrueType font's.
inline TextMask render_text_bitmap(const std::string& text, int size) {
  const int unit = std::max(1, static_cast<int>(std::lround(size * 0.72 / 7.0)));
  std::string buffer_text = text;
  TextMask mask;
  mask.width = stb_easy_font_width(buffer_text.data()) * unit + 2;
  mask.height = std::max(size, 11 * unit);
  mask.alpha.assign(static_cast<std::size_t>(mask.width) * static_cast<std::size_t>(mask.height),
                    0);
  std::vector<char> vertices(static_cast<std::size_t>(text.size()) * 1024 + 64);
  const int quads = stb_easy_font_print(0.0f, 0.0f, buffer_text.data(), nullptr,
                                        vertices.data(), static_cast<int>(vertices.size()));
  // Capitals span units 1..8 of the line; shift them to sit where the TrueType font's do.
  const int top = std::max(0, (mask.height - 10 * unit) / 2);
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
    const int x0 = 1 + static_cast<int>(std::lround(lo[0] * float(unit)));
    const int x1 = 1 + static_cast<int>(std::lround(hi[0] * float(unit)));
    const int y0 = top + static_cast<int>(std::lround(lo[1] * float(unit)));
    const int y1 = top + static_cast<int>(std::lround(hi[1] * float(unit)));
    for (int y = std::max(0, y0); y < std::min(mask.height, y1); ++y) {
      for (int x = std::max(0, x0); x < std::min(mask.width, x1); ++x) {
        mask.alpha[static_cast<std::size_t>(y) * static_cast<std::size_t>(mask.width) +
                   static_cast<std::size_t>(x)] = 255;
      }
    }
  }
  return mask;
}

}  // namespace detail

// The mask of `text` at line height `size` pixels in `font`, or in the bitmap font when
// `font` is null.
inline TextMask render_text(const std::string& text, int size,
                            const TrueTypeFont* font = picture_font()) {
  return font != nullptr ? detail::render_text_truetype(*font, text, size)
                         : detail::render_text_bitmap(text, size);
}

enum class TextDirection { right, up };

// Draws `text` (line height `size` pixels) so that the point (x, y) lies at the fraction
// (anchor_x, anchor_y) of its box, e.g. (0, 0) top left, (1, 0.5) right middle. For
// TextDirection::up the text is turned a quarter counter-clockwise and the anchor refers to
// the turned box. Returns the box's width and height as drawn.
inline std::array<int, 2> draw_text(RgbImage& image, double x, double y, const std::string& text,
                                    Rgb colour, int size, double anchor_x = 0.0,
                                    double anchor_y = 0.0,
                                    TextDirection direction = TextDirection::right,
                                    const TrueTypeFont* font = picture_font()) {
  const TextMask mask = render_text(text, size, font);
  const bool up = direction == TextDirection::up;
  const int box_w = up ? mask.height : mask.width;
  const int box_h = up ? mask.width : mask.height;
  const int left = static_cast<int>(std::lround(x - anchor_x * box_w));
  const int top = static_cast<int>(std::lround(y - anchor_y * box_h));
  for (int by = 0; by < box_h; ++by) {
    for (int bx = 0; bx < box_w; ++bx) {
      // Turned: box column bx is mask row bx; box row by is mask column width - 1 - by.
      const std::uint8_t a = up ? mask.at(mask.width - 1 - by, bx) : mask.at(bx, by);
      if (a != 0) image.blend_pixel(left + bx, top + by, colour, a / 255.0);
    }
  }
  return {box_w, box_h};
}

// The width in pixels of `text` at line height `size`.
inline int text_width(const std::string& text, int size,
                      const TrueTypeFont* font = picture_font()) {
  return render_text(text, size, font).width;
}

}  // namespace revox::brats
