// revox/data/augment.hpp — the paper's training augmentations (Pendse et al. 2020, after
// Brügger's PRU): rotation about the longitudinal axis, scaling, flips, intensity change and
// elastic deformation, applied in ONE resampling pass per sample.
//
// Shapes:  image  Tensor<float>        (N, C, D, H, W), e.g. (1, 4, D, H, W) for a BraTS case
//          labels Tensor<std::uint8_t> (N, 1, D, H, W), optional
//          NIfTI x = W (fastest), y = H, z = D; D is the longitudinal (superior-inferior)
//          axis, so the rotation is in the H-W (axial) plane. Distances are in voxels.
// Usage:   AugmentSample s = draw_augmentation(options, rng, image.shape());
//          augment(image, &labels, s);             // both replaced by the augmented volumes
//          augment_into(s, in, out, labels_in, labels_out)  // the same into views you own
//
// The coordinate map. For output voxel p = (d, h, w) and centre c = ((D-1)/2, (H-1)/2,
// (W-1)/2), the source position is
//     q = c + S^-1 R F (p - c) + e(p)
//   F  flips: diag(+-1) per axis, so a flip maps index i to N-1-i exactly (an involution);
//   R  rotation by `rotation_degrees` in the H-W plane:
//        (h', w') = (cos a * h - sin a * w,  sin a * h + cos a * w);
//   S  isotropic scaling by `scale` (> 1 enlarges the content: the output at p - c reads
//      the source at (p - c) / scale, on all three axes);
//   e  elastic displacement (all three components, in voxels): a uniform cubic B-spline
//      over a coarse grid of control points, `elastic_control_points` per axis spanning
//      the volume (plus one padding point beyond each face), each component of each point
//      drawn from N(0, elastic_sigma^2). The spline is C2-smooth; fewer control points
//      give a smoother field. (PRU uses one 3x3 grid in-plane, sigma 10 px, for every
//      slice; here the field is fully 3D.)
// Images are resampled trilinearly with zero outside the volume, labels by nearest
// neighbour (index floor(q + 0.5)) with 0 outside, so labels stay in the input label set.
//
// Intensity change (per channel, drawn once per sample): the resampled value v becomes
//     factor_c * v + shift_c   where v != 0,   and stays 0 where v == 0,
// with factor_c ~ U(1 - intensity, 1 + intensity) and shift_c ~ U(-intensity_shift,
// +intensity_shift). Apply it to z-scored images (BraTS convention: zero background), so
// "10%" is 10% of the signal and the background stays 0. The defaults follow the paper's
// "intensity change by up to 10%" as a multiplicative factor; PRU's variant is an additive
// shift of +-0.1 (intensity = 0, intensity_shift = 0.1).
//
// Every strength can be 0; with all of them 0 the pass is exactly the identity. Results are
// deterministic: every voxel is computed independently (OpenMP over D planes), and all
// randomness is drawn up front in draw_augmentation from the caller's Rng.
// reference::augment_into is the plain per-voxel version the tests compare the fast path with.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"

namespace revox::data {

struct AugmentOptions {
  double rotation_degrees = 20.0;   // angle ~ U(-rotation_degrees, +rotation_degrees)
  double scale = 0.1;               // scale factor ~ U(1 - scale, 1 + scale)
  double flip_probability = 0.5;    // per axis (D, H, W), independently
  double intensity = 0.1;           // per-channel factor ~ U(1 - intensity, 1 + intensity)
  double intensity_shift = 0.0;     // per-channel shift ~ U(-shift, +shift) on nonzero voxels
  double elastic_sigma = 10.0;      // std of control-point displacements, voxels (0: none)
  index_t elastic_control_points = 3;  // control points per axis spanning the volume (>= 2)
};

// The parameters drawn for one sample; augment() applies exactly these.
struct AugmentSample {
  Shape5 shape{};                        // the image shape the sample was drawn for
  bool flip[3] = {false, false, false};  // D, H, W
  double rotation_degrees = 0.0;
  double scale = 1.0;
  std::vector<double> intensity_factor;  // one per channel
  std::vector<double> intensity_shift;   // one per channel
  // Elastic control grid: (elastic_points + 2)^3 points per displacement component
  // (d, h, w), stored component-major then (i, j, k) row-major. Empty: no elastic field.
  index_t elastic_points = 0;
  std::vector<double> elastic;

  bool has_elastic() const { return !elastic.empty(); }
};

inline std::ostream& operator<<(std::ostream& out, const AugmentSample& s) {
  out << "AugmentSample{shape " << s.shape << ", flip(d,h,w) (" << s.flip[0] << ", "
      << s.flip[1] << ", " << s.flip[2] << "), rotation " << s.rotation_degrees
      << " deg, scale " << s.scale << ", intensity factor [";
  for (std::size_t c = 0; c < s.intensity_factor.size(); ++c) {
    out << (c ? ", " : "") << s.intensity_factor[c];
  }
  out << "], shift [";
  for (std::size_t c = 0; c < s.intensity_shift.size(); ++c) {
    out << (c ? ", " : "") << s.intensity_shift[c];
  }
  out << "], elastic ";
  if (s.has_elastic()) {
    double largest = 0.0;
    for (double v : s.elastic) largest = std::max(largest, std::abs(v));
    out << s.elastic_points << "^3 control points, max |displacement| " << largest << " voxels";
  } else {
    out << "none";
  }
  return out << "}";
}

// Draws one sample for an image of `shape`. The draw order is fixed (flips D, H, W;
// rotation; scale; per-channel factors; per-channel shifts; elastic grid), so a seed
// reproduces the sample.
inline AugmentSample draw_augmentation(const AugmentOptions& options, Rng& rng, Shape5 shape) {
  REVOX_CHECK(shape.valid(), "draw_augmentation: image shape must have positive extents, got ",
              shape);
  REVOX_CHECK(options.rotation_degrees >= 0.0 && options.rotation_degrees <= 180.0,
              "draw_augmentation: rotation_degrees must be in [0, 180], got ",
              options.rotation_degrees);
  REVOX_CHECK(options.scale >= 0.0 && options.scale < 1.0,
              "draw_augmentation: scale must be in [0, 1), got ", options.scale);
  REVOX_CHECK(options.flip_probability >= 0.0 && options.flip_probability <= 1.0,
              "draw_augmentation: flip_probability must be in [0, 1], got ",
              options.flip_probability);
  REVOX_CHECK(options.intensity >= 0.0 && options.intensity < 1.0,
              "draw_augmentation: intensity must be in [0, 1), got ", options.intensity);
  REVOX_CHECK(options.intensity_shift >= 0.0,
              "draw_augmentation: intensity_shift must be non-negative, got ",
              options.intensity_shift);
  REVOX_CHECK(options.elastic_sigma >= 0.0,
              "draw_augmentation: elastic_sigma must be non-negative, got ",
              options.elastic_sigma);
  REVOX_CHECK(options.elastic_control_points >= 2,
              "draw_augmentation: elastic_control_points must be at least 2, got ",
              options.elastic_control_points);

  AugmentSample s;
  s.shape = shape;
  for (bool& flip : s.flip) flip = rng.uniform01() < options.flip_probability;
  s.rotation_degrees = rng.uniform(-options.rotation_degrees, options.rotation_degrees);
  s.scale = rng.uniform(1.0 - options.scale, 1.0 + options.scale);
  const auto channels = static_cast<std::size_t>(shape.c);
  s.intensity_factor.resize(channels);
  s.intensity_shift.resize(channels);
  for (double& f : s.intensity_factor) f = rng.uniform(1.0 - options.intensity, 1.0 + options.intensity);
  for (double& f : s.intensity_shift) f = rng.uniform(-options.intensity_shift, options.intensity_shift);
  if (options.elastic_sigma > 0.0) {
    s.elastic_points = options.elastic_control_points;
    const index_t per_axis = s.elastic_points + 2;
    s.elastic.resize(static_cast<std::size_t>(3 * per_axis * per_axis * per_axis));
    for (double& v : s.elastic) v = options.elastic_sigma * rng.normal();
  }
  return s;
}

namespace detail {

// Uniform cubic B-spline basis, support (-2, 2), sum over integer shifts = 1.
inline double cubic_bspline(double t) {
  const double a = std::abs(t);
  if (a < 1.0) return (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0;
  if (a < 2.0) {
    const double b = 2.0 - a;
    return b * b * b / 6.0;
  }
  return 0.0;
}

// Position of voxel x in control-grid units: control point j (0 <= j < points) sits at
// voxel j * (extent - 1) / (points - 1); padding points j = -1 and j = points lie beyond.
inline double control_coordinate(index_t x, index_t extent, index_t points) {
  if (extent <= 1) return 0.0;
  return static_cast<double>(x) * static_cast<double>(points - 1) /
         static_cast<double>(extent - 1);
}

// Weights of the points + 2 control points (j = -1 .. points) for every voxel of an axis:
// table[x * (points + 2) + (j + 1)].
inline std::vector<double> bspline_table(index_t extent, index_t points) {
  const index_t per_axis = points + 2;
  std::vector<double> table(static_cast<std::size_t>(extent * per_axis));
  for (index_t x = 0; x < extent; ++x) {
    const double t = control_coordinate(x, extent, points);
    for (index_t j = 0; j < per_axis; ++j) {
      table[static_cast<std::size_t>(x * per_axis + j)] =
          cubic_bspline(t - static_cast<double>(j - 1));
    }
  }
  return table;
}

inline void check_resample_shapes(const AugmentSample& s, Shape5 in, Shape5 out,
                                  Shape5 labels_in, Shape5 labels_out, bool with_labels) {
  REVOX_CHECK(in == s.shape, "augment: image shape ", in, " does not match the shape ",
              s.shape, " the sample was drawn for");
  REVOX_CHECK(out == in, "augment: output shape ", out, " must equal the input shape ", in);
  REVOX_CHECK(s.intensity_factor.size() == static_cast<std::size_t>(in.c) &&
                  s.intensity_shift.size() == static_cast<std::size_t>(in.c),
              "augment: the sample has ", s.intensity_factor.size(),
              " intensity factors, expected one per channel (", in.c, ")");
  const index_t per_axis = s.elastic_points + 2;
  REVOX_CHECK(!s.has_elastic() ||
                  (s.elastic_points >= 2 &&
                   s.elastic.size() == static_cast<std::size_t>(3 * per_axis * per_axis * per_axis)),
              "augment: elastic grid has ", s.elastic.size(), " values, expected 3 * (",
              s.elastic_points, " + 2)^3");
  if (with_labels) {
    REVOX_CHECK(labels_in == in.with_channels(1), "augment: labels shape ", labels_in,
                " must be ", in.with_channels(1));
    REVOX_CHECK(labels_out == labels_in, "augment: labels output shape ", labels_out,
                " must equal the labels input shape ", labels_in);
  }
}

// Trilinear taps of source position q on an extent of n: corner indices and weights, with
// corners outside the volume given weight 0 (zero padding).
struct LinearTap {
  index_t i0 = 0;
  index_t i1 = 0;
  double w0 = 0.0;
  double w1 = 0.0;
};

inline LinearTap linear_tap(double q, index_t n) {
  LinearTap tap;
  const double f = std::floor(q);
  const double frac = q - f;
  // Far outside: both corners invalid (also keeps the index conversion in range).
  if (!(f >= -1.0 && f <= static_cast<double>(n))) return tap;
  tap.i0 = static_cast<index_t>(f);
  tap.i1 = tap.i0 + 1;
  tap.w0 = (tap.i0 >= 0 && tap.i0 < n) ? 1.0 - frac : 0.0;
  tap.w1 = (tap.i1 >= 0 && tap.i1 < n) ? frac : 0.0;
  if (tap.w0 == 0.0) tap.i0 = 0;  // keep unused indices in range
  if (tap.w1 == 0.0) tap.i1 = 0;
  return tap;
}

// Nearest index floor(q + 0.5), or -1 outside [0, n).
inline index_t nearest_index(double q, index_t n) {
  const double r = std::floor(q + 0.5);
  if (!(r >= 0.0 && r < static_cast<double>(n))) return -1;
  return static_cast<index_t>(r);
}

inline float apply_intensity(double v, double factor, double shift) {
  return v == 0.0 ? 0.0f : static_cast<float>(factor * v + shift);
}

}  // namespace detail

namespace reference {

// The source position q = (d, h, w) of output voxel (d, h, w), written out step by step:
// centre, flip, rotate, scale, then the B-spline sum over every control point.
inline void source_position(const AugmentSample& s, index_t d, index_t h, index_t w,
                            double q[3]) {
  const index_t extent[3] = {s.shape.d, s.shape.h, s.shape.w};
  const index_t p[3] = {d, h, w};
  double centre[3];
  double u[3];
  for (int a = 0; a < 3; ++a) {
    centre[a] = 0.5 * static_cast<double>(extent[a] - 1);
    u[a] = static_cast<double>(p[a]) - centre[a];
    if (s.flip[a]) u[a] = -u[a];
  }
  const double angle = s.rotation_degrees * 3.14159265358979323846 / 180.0;
  const double rotated[3] = {u[0], std::cos(angle) * u[1] - std::sin(angle) * u[2],
                             std::sin(angle) * u[1] + std::cos(angle) * u[2]};
  for (int a = 0; a < 3; ++a) q[a] = centre[a] + rotated[a] / s.scale;
  if (!s.has_elastic()) return;
  const index_t points = s.elastic_points;
  const index_t per_axis = points + 2;
  for (int component = 0; component < 3; ++component) {
    double displacement = 0.0;
    for (index_t i = 0; i < per_axis; ++i) {
      for (index_t j = 0; j < per_axis; ++j) {
        for (index_t k = 0; k < per_axis; ++k) {
          const double weight =
              detail::cubic_bspline(detail::control_coordinate(d, extent[0], points) -
                                    static_cast<double>(i - 1)) *
              detail::cubic_bspline(detail::control_coordinate(h, extent[1], points) -
                                    static_cast<double>(j - 1)) *
              detail::cubic_bspline(detail::control_coordinate(w, extent[2], points) -
                                    static_cast<double>(k - 1));
          displacement += weight * s.elastic[static_cast<std::size_t>(
                                       ((component * per_axis + i) * per_axis + j) * per_axis + k)];
        }
      }
    }
    q[component] += displacement;
  }
}

// Plain per-voxel version of revox::data::augment_into below.
inline void augment_into(const AugmentSample& s, TensorView<const float> image_in,
                     TensorView<float> image_out, TensorView<const std::uint8_t> labels_in,
                     TensorView<std::uint8_t> labels_out) {
  const bool with_labels = !labels_in.empty();
  detail::check_resample_shapes(s, image_in.shape, image_out.shape, labels_in.shape,
                                labels_out.shape, with_labels);
  const Shape5 shape = image_in.shape;
  for (index_t d = 0; d < shape.d; ++d) {
    for (index_t h = 0; h < shape.h; ++h) {
      for (index_t w = 0; w < shape.w; ++w) {
        double q[3];
        source_position(s, d, h, w, q);
        for (index_t n = 0; n < shape.n; ++n) {
          for (index_t c = 0; c < shape.c; ++c) {
            double value = 0.0;
            for (int corner = 0; corner < 8; ++corner) {
              const double base[3] = {std::floor(q[0]), std::floor(q[1]), std::floor(q[2])};
              const index_t extent[3] = {shape.d, shape.h, shape.w};
              index_t index[3];
              double weight = 1.0;
              bool inside = true;
              for (int a = 0; a < 3; ++a) {
                const int upper = (corner >> (2 - a)) & 1;
                const double frac = q[a] - base[a];
                weight *= upper ? frac : 1.0 - frac;
                const double i = base[a] + upper;
                inside = inside && i >= 0.0 && i < static_cast<double>(extent[a]);
                index[a] = inside ? static_cast<index_t>(i) : 0;
              }
              if (inside) value += weight * image_in.at(n, c, index[0], index[1], index[2]);
            }
            image_out.at(n, c, d, h, w) = detail::apply_intensity(
                value, s.intensity_factor[static_cast<std::size_t>(c)],
                s.intensity_shift[static_cast<std::size_t>(c)]);
          }
          if (with_labels) {
            const index_t id = detail::nearest_index(q[0], shape.d);
            const index_t ih = detail::nearest_index(q[1], shape.h);
            const index_t iw = detail::nearest_index(q[2], shape.w);
            labels_out.at(n, 0, d, h, w) =
                (id < 0 || ih < 0 || iw < 0) ? std::uint8_t{0} : labels_in.at(n, 0, id, ih, iw);
          }
        }
      }
    }
  }
}

}  // namespace reference

// Writes the augmented image_in to image_out (same shape as the sample's) and, when labels_in
// is not empty, the augmented labels_in to labels_out ((N, 1, D, H, W)); outputs ASSIGNED and
// must not alias the inputs. Pass empty label views ({}) for an image alone.
// Fast path of the same map: the affine part is one 3x4 matrix (q = M p + t); the elastic
// spline is separable, so per D plane and per H row the control grid is contracted down to
// one row of (points + 2) coefficients per component, and each voxel costs a short dot
// product. Memory: three small weight tables and per-thread scratch of O(points^2).
inline void augment_into(const AugmentSample& s, TensorView<const float> image_in,
                     TensorView<float> image_out, TensorView<const std::uint8_t> labels_in,
                     TensorView<std::uint8_t> labels_out) {
  const bool with_labels = !labels_in.empty();
  detail::check_resample_shapes(s, image_in.shape, image_out.shape, labels_in.shape,
                                labels_out.shape, with_labels);
  const Shape5 shape = image_in.shape;
  const index_t extent[3] = {shape.d, shape.h, shape.w};

  // q = c + S^-1 R F (p - c) = M p + t.
  const double angle = s.rotation_degrees * 3.14159265358979323846 / 180.0;
  const double cos_a = std::cos(angle);
  const double sin_a = std::sin(angle);
  const double rotation[3][3] = {{1.0, 0.0, 0.0}, {0.0, cos_a, -sin_a}, {0.0, sin_a, cos_a}};
  double matrix[3][3];
  for (int r = 0; r < 3; ++r) {
    for (int col = 0; col < 3; ++col) {
      matrix[r][col] = rotation[r][col] * (s.flip[col] ? -1.0 : 1.0) / s.scale;
    }
  }
  double centre[3];
  for (int a = 0; a < 3; ++a) centre[a] = 0.5 * static_cast<double>(extent[a] - 1);
  double offset[3];
  for (int r = 0; r < 3; ++r) {
    offset[r] = centre[r];
    for (int col = 0; col < 3; ++col) offset[r] -= matrix[r][col] * centre[col];
  }

  const index_t points = s.elastic_points;
  const index_t per_axis = points + 2;
  std::vector<double> table_d, table_h, table_w;
  if (s.has_elastic()) {
    table_d = detail::bspline_table(shape.d, points);
    table_h = detail::bspline_table(shape.h, points);
    table_w = detail::bspline_table(shape.w, points);
  }
  const index_t channel_stride = shape.spatial();

#pragma omp parallel
  {
    // plane[component][j][k] and row[component][k]: the grid contracted over D, then H.
    std::vector<double> plane(static_cast<std::size_t>(s.has_elastic() ? 3 * per_axis * per_axis : 0));
    std::vector<double> row(static_cast<std::size_t>(s.has_elastic() ? 3 * per_axis : 0));
#pragma omp for schedule(static)
    for (index_t d = 0; d < shape.d; ++d) {
      if (s.has_elastic()) {
        for (index_t cj = 0; cj < 3 * per_axis * per_axis; ++cj) {
          const index_t component = cj / (per_axis * per_axis);
          const index_t jk = cj % (per_axis * per_axis);
          double sum = 0.0;
          for (index_t i = 0; i < per_axis; ++i) {
            sum += table_d[static_cast<std::size_t>(d * per_axis + i)] *
                   s.elastic[static_cast<std::size_t>((component * per_axis + i) * per_axis * per_axis + jk)];
          }
          plane[static_cast<std::size_t>(cj)] = sum;
        }
      }
      for (index_t h = 0; h < shape.h; ++h) {
        if (s.has_elastic()) {
          for (index_t component = 0; component < 3; ++component) {
            for (index_t k = 0; k < per_axis; ++k) {
              double sum = 0.0;
              for (index_t j = 0; j < per_axis; ++j) {
                sum += table_h[static_cast<std::size_t>(h * per_axis + j)] *
                       plane[static_cast<std::size_t>((component * per_axis + j) * per_axis + k)];
              }
              row[static_cast<std::size_t>(component * per_axis + k)] = sum;
            }
          }
        }
        double row_base[3];
        for (int r = 0; r < 3; ++r) {
          row_base[r] = offset[r] + matrix[r][0] * static_cast<double>(d) +
                        matrix[r][1] * static_cast<double>(h);
        }
        for (index_t w = 0; w < shape.w; ++w) {
          double q[3];
          for (int r = 0; r < 3; ++r) q[r] = row_base[r] + matrix[r][2] * static_cast<double>(w);
          if (s.has_elastic()) {
            const double* weights = table_w.data() + w * per_axis;
            for (int component = 0; component < 3; ++component) {
              const double* coefficients = row.data() + component * per_axis;
              double displacement = 0.0;
              for (index_t k = 0; k < per_axis; ++k) displacement += weights[k] * coefficients[k];
              q[component] += displacement;
            }
          }
          const detail::LinearTap td = detail::linear_tap(q[0], shape.d);
          const detail::LinearTap th = detail::linear_tap(q[1], shape.h);
          const detail::LinearTap tw = detail::linear_tap(q[2], shape.w);
          const index_t taps_d[2] = {td.i0, td.i1};
          const index_t taps_h[2] = {th.i0, th.i1};
          const index_t taps_w[2] = {tw.i0, tw.i1};
          const double weights_d[2] = {td.w0, td.w1};
          const double weights_h[2] = {th.w0, th.w1};
          const double weights_w[2] = {tw.w0, tw.w1};
          index_t corner_offset[8];
          double corner_weight[8];
          int corners = 0;
          for (int a = 0; a < 2; ++a) {
            for (int b = 0; b < 2; ++b) {
              for (int e = 0; e < 2; ++e) {
                const double weight = weights_d[a] * weights_h[b] * weights_w[e];
                if (weight == 0.0) continue;
                corner_offset[corners] = (taps_d[a] * shape.h + taps_h[b]) * shape.w + taps_w[e];
                corner_weight[corners] = weight;
                ++corners;
              }
            }
          }
          const index_t out_offset = (d * shape.h + h) * shape.w + w;
          for (index_t nc = 0; nc < shape.n * shape.c; ++nc) {
            const float* source = image_in.data + nc * channel_stride;
            double value = 0.0;
            for (int k = 0; k < corners; ++k) value += corner_weight[k] * source[corner_offset[k]];
            const auto c = static_cast<std::size_t>(nc % shape.c);
            image_out.data[nc * channel_stride + out_offset] =
                detail::apply_intensity(value, s.intensity_factor[c], s.intensity_shift[c]);
          }
          if (with_labels) {
            const index_t id = detail::nearest_index(q[0], shape.d);
            const index_t ih = detail::nearest_index(q[1], shape.h);
            const index_t iw = detail::nearest_index(q[2], shape.w);
            const bool inside = id >= 0 && ih >= 0 && iw >= 0;
            const index_t source_offset = inside ? (id * shape.h + ih) * shape.w + iw : 0;
            for (index_t n = 0; n < shape.n; ++n) {
              labels_out.data[n * channel_stride + out_offset] =
                  inside ? labels_in.data[n * channel_stride + source_offset] : std::uint8_t{0};
            }
          }
        }
      }
    }
  }
}

// Applies `sample` to image (and labels, when not null) in one resampling pass; both are
// replaced by new tensors of the same shape (the inputs are read while the outputs are
// written, so the pass cannot run in place).
inline void augment(Tensor<float>& image, Tensor<std::uint8_t>* labels, const AugmentSample& sample) {
  Tensor<float> image_out(image.shape());
  Tensor<std::uint8_t> labels_out;
  TensorView<const std::uint8_t> labels_in{};
  if (labels != nullptr) {
    labels_out = Tensor<std::uint8_t>(labels->shape());
    labels_in = labels->cview();
  }
  augment_into(sample, image.cview(), image_out.view(), labels_in, labels_out.view());
  image = std::move(image_out);
  if (labels != nullptr) *labels = std::move(labels_out);
}

}  // namespace revox::data
