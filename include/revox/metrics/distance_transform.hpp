// revox/metrics/distance_transform.hpp — the exact Euclidean distance transform of a 3-D
// binary volume, with anisotropic voxel spacing.
//
// squared_distance_transform(features, shape, spacing, out): for every voxel v of the
// (1, 1, D, H, W) volume, out[v] = min over voxels f with features[f] != 0 of
//   (sx * (v.w - f.w))^2 + (sy * (v.h - f.h))^2 + (sz * (v.d - f.d))^2
// in mm^2, and +infinity for every voxel when there is no feature voxel at all.
// This is scipy.ndimage.distance_transform_edt(features == 0, sampling=(sz, sy, sx))
// squared, for a NumPy array indexed [d, h, w].
//
// spacing is (x, y, z) = (W, H, D) in mm, the order of the NIfTI pixdim fields.
//
// Algorithm: Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions"
// (Theory of Computing 8, 2012): the squared distance is separable, so one exact 1-D
// lower-envelope-of-parabolas pass along W, then H, then D gives the exact 3-D result in
// O(D*H*W). OpenMP runs over the lines of each pass; each thread owns its line buffers.
// reference::squared_distance_transform is the brute-force O(N * features) definition that
// the tests compare against.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"

namespace revox::metrics {

// Voxel spacing in mm, in NIfTI pixdim order: (x = W, y = H, z = D).
using Spacing = std::array<double, 3>;

namespace detail {

inline void check_volume(const char* who, Shape5 shape) {
  REVOX_CHECK(shape.n == 1 && shape.c == 1, who,
              ": a mask is one volume of shape (1, 1, D, H, W), got ", shape);
  REVOX_CHECK(shape.d > 0 && shape.h > 0 && shape.w > 0, who,
              ": the volume must have positive extents, got ", shape);
}

inline void check_spacing(const char* who, const Spacing& spacing) {
  for (double s : spacing) {
    REVOX_CHECK(s > 0.0 && s < std::numeric_limits<double>::infinity(), who,
                ": voxel spacing must be positive and finite, got (", spacing[0], ", ",
                spacing[1], ", ", spacing[2], ")");
  }
}

// One exact 1-D pass over a line of n samples f (squared distances so far, +inf where no
// feature has been seen) with sample spacing `step` (mm): d[q] = min_p step^2 (q-p)^2 + f[p].
// v and z are scratch of n and n + 1 elements. f and d may not alias.
inline void squared_edt_line(const double* f, double* d, index_t n, double step, index_t* v,
                             double* z) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double step2 = step * step;
  index_t k = -1;
  // Intersection abscissa of the parabolas rooted at p and q (p < q), in sample units.
  auto intersect = [&](index_t p, index_t q) {
    const double fp = f[p] / step2 + static_cast<double>(p) * static_cast<double>(p);
    const double fq = f[q] / step2 + static_cast<double>(q) * static_cast<double>(q);
    return (fq - fp) / (2.0 * static_cast<double>(q - p));
  };
  for (index_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
      continue;
    }
    double s = intersect(v[k], q);
    while (s <= z[k]) {  // z[0] = -inf ends the loop at k = 0
      --k;
      s = intersect(v[k], q);
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (k < 0) {
    for (index_t q = 0; q < n; ++q) d[q] = kInf;
    return;
  }
  k = 0;
  for (index_t q = 0; q < n; ++q) {
    while (z[k + 1] < static_cast<double>(q)) ++k;
    const double offset = static_cast<double>(q - v[k]);
    d[q] = step2 * offset * offset + f[v[k]];
  }
}

// Runs squared_edt_line over every line of `data` along one axis: `count` lines of
// `length` samples, sample i of line l at data[base(l) + i * stride], in place.
template <class Base>
void edt_pass(double* data, index_t count, index_t length, index_t stride, double step,
              Base base) {
#pragma omp parallel if (count * length > (index_t{1} << 15))
  {
    std::vector<double> line(static_cast<std::size_t>(length));
    std::vector<double> result(static_cast<std::size_t>(length));
    std::vector<index_t> v(static_cast<std::size_t>(length));
    std::vector<double> z(static_cast<std::size_t>(length) + 1);
#pragma omp for schedule(static)
    for (index_t l = 0; l < count; ++l) {
      double* start = data + base(l);
      for (index_t i = 0; i < length; ++i) line[i] = start[i * stride];
      squared_edt_line(line.data(), result.data(), length, step, v.data(), z.data());
      for (index_t i = 0; i < length; ++i) start[i * stride] = result[i];
    }
  }
}

}  // namespace detail

// out: D*H*W doubles (mm^2), every element assigned. features: D*H*W bytes, non-zero = feature.
inline void squared_distance_transform(const std::uint8_t* features, Shape5 shape,
                                       const Spacing& spacing, double* out) {
  detail::check_volume("squared_distance_transform", shape);
  detail::check_spacing("squared_distance_transform", spacing);
  const index_t depth = shape.d, height = shape.h, width = shape.w;
  const index_t plane = height * width;
  const index_t voxels = depth * plane;
  constexpr double kInf = std::numeric_limits<double>::infinity();
#pragma omp parallel for simd schedule(static) if (voxels > (index_t{1} << 16))
  for (index_t i = 0; i < voxels; ++i) out[i] = features[i] != 0 ? 0.0 : kInf;
  // Along W: lines are rows (d, h), contiguous.
  detail::edt_pass(out, depth * height, width, 1, spacing[0],
                   [width](index_t l) { return l * width; });
  // Along H: lines are (d, w), stride W.
  detail::edt_pass(out, depth * width, height, width, spacing[1], [=](index_t l) {
    return (l / width) * plane + l % width;
  });
  // Along D: lines are (h, w), stride H*W; consecutive lines share cache lines.
  detail::edt_pass(out, plane, depth, plane, spacing[2], [](index_t l) { return l; });
}

inline std::vector<double> squared_distance_transform(const std::uint8_t* features,
                                                      Shape5 shape, const Spacing& spacing) {
  detail::check_volume("squared_distance_transform", shape);
  std::vector<double> out(static_cast<std::size_t>(shape.spatial()));
  squared_distance_transform(features, shape, spacing, out.data());
  return out;
}

namespace reference {

// The definition, by brute force over every (voxel, feature) pair: for tests only.
inline std::vector<double> squared_distance_transform(const std::uint8_t* features,
                                                      Shape5 shape, const Spacing& spacing) {
  detail::check_volume("reference::squared_distance_transform", shape);
  detail::check_spacing("reference::squared_distance_transform", spacing);
  std::vector<std::array<index_t, 3>> points;
  for (index_t d = 0; d < shape.d; ++d) {
    for (index_t h = 0; h < shape.h; ++h) {
      for (index_t w = 0; w < shape.w; ++w) {
        if (features[(d * shape.h + h) * shape.w + w] != 0) points.push_back({d, h, w});
      }
    }
  }
  std::vector<double> out(static_cast<std::size_t>(shape.spatial()),
                          std::numeric_limits<double>::infinity());
  for (index_t d = 0; d < shape.d; ++d) {
    for (index_t h = 0; h < shape.h; ++h) {
      for (index_t w = 0; w < shape.w; ++w) {
        double& best = out[static_cast<std::size_t>((d * shape.h + h) * shape.w + w)];
        for (const auto& p : points) {
          const double dz = spacing[2] * static_cast<double>(d - p[0]);
          const double dy = spacing[1] * static_cast<double>(h - p[1]);
          const double dx = spacing[0] * static_cast<double>(w - p[2]);
          best = std::min(best, dx * dx + dy * dy + dz * dz);
        }
      }
    }
  }
  return out;
}

}  // namespace reference
}  // namespace revox::metrics
