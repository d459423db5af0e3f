// revox/models/sliding_window.hpp — sliding-window inference with Gaussian importance
// weighting (nnU-Net's scheme), for volumes whose full-size forward pass does not fit.
//
//   image (N, C, D, H, W), every spatial extent >= the patch's; patch (pD, pH, pW)
//   fn(TensorView<const float> in (N, C, pD, pH, pW), TensorView<float> out (N, K, pD, pH, pW))
//     writes the per-voxel values to average (e.g. sigmoid probabilities) of one patch;
//     every element of `out` must be written (it is pre-filled with NaN).
//   result (N, K, D, H, W) = sum over windows of w * out / sum over windows of w
//
// Window starts per axis (sliding_window_starts, as nnU-Net's compute_steps_for_sliding_window):
// the target step is patch * (1 - overlap); the number of windows is
// ceil((extent - patch) / target_step) + 1 and the starts are spread evenly over
// [0, extent - patch] (rounded), so the first window touches the start and the last the end.
// overlap 0 tiles without overlap where the extent allows it; overlap must be in [0, 1).
//
// Importance map (gaussian_importance_map): w(d, h, w) = prod over axes of
// exp(-(i - c)^2 / (2 sigma^2)) with c = patch / 2 (integer division) and
// sigma = sigma_scale * patch (nnU-Net: sigma_scale = 1/8), i.e. nnU-Net's scipy
// gaussian_filter of a centred delta normalised to a maximum of 1 (its 4-sigma truncation
// never cuts inside the patch). Voxels near the patch border, where a network sees the least
// context, count least; every weight is > 0, so every voxel covered by a window gets a
// well-defined average.
//
// Preconditions: host (Cpu) tensors; the caller pads the image to at least the patch size
// (data::crop_or_pad) and undoes that afterwards. Each window is copied out, evaluated and
// accumulated in double (sum of w * value and sum of w), windows in a fixed order, so the
// result is deterministic.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox {

struct SlidingWindowOptions {
  std::array<index_t, 3> patch{0, 0, 0};  // D, H, W
  double overlap = 0.5;                   // fraction of the patch shared by neighbours
  double sigma_scale = 1.0 / 8.0;         // Gaussian sigma as a fraction of the patch
};

// The start index of every window along one axis of `extent` voxels.
inline std::vector<index_t> sliding_window_starts(index_t extent, index_t patch,
                                                  double overlap) {
  REVOX_CHECK(patch >= 1, "sliding_window_starts: patch (", patch, ") must be >= 1");
  REVOX_CHECK(extent >= patch, "sliding_window_starts: the volume extent (", extent,
              ") is smaller than the patch (", patch, "); pad the volume first");
  REVOX_CHECK(overlap >= 0.0 && overlap < 1.0, "sliding_window_starts: overlap must be in "
              "[0, 1), got ", overlap);
  const double target_step = static_cast<double>(patch) * (1.0 - overlap);
  const auto windows = static_cast<index_t>(
      std::ceil(static_cast<double>(extent - patch) / target_step - 1e-9)) + 1;
  std::vector<index_t> starts;
  const index_t count = std::max<index_t>(windows, 1);
  if (count == 1) {
    starts.push_back(0);
    return starts;
  }
  const double step = static_cast<double>(extent - patch) / static_cast<double>(count - 1);
  for (index_t i = 0; i < count; ++i) {
    starts.push_back(static_cast<index_t>(std::llround(step * static_cast<double>(i))));
  }
  return starts;
}

// (1, 1, pD, pH, pW), maximum 1 at the patch centre.
inline Tensor<float> gaussian_importance_map(const std::array<index_t, 3>& patch,
                                             double sigma_scale = 1.0 / 8.0) {
  REVOX_CHECK(patch[0] >= 1 && patch[1] >= 1 && patch[2] >= 1,
              "gaussian_importance_map: patch extents must be >= 1, got D=", patch[0], ", H=",
              patch[1], ", W=", patch[2]);
  REVOX_CHECK(sigma_scale > 0.0, "gaussian_importance_map: sigma_scale must be > 0, got ",
              sigma_scale);
  std::array<std::vector<double>, 3> profile;
  for (std::size_t a = 0; a < 3; ++a) {
    const index_t size = patch[a];
    const double centre = static_cast<double>(size / 2);
    const double sigma = sigma_scale * static_cast<double>(size);
    profile[a].resize(static_cast<std::size_t>(size));
    for (index_t i = 0; i < size; ++i) {
      const double x = static_cast<double>(i) - centre;
      profile[a][static_cast<std::size_t>(i)] = std::exp(-x * x / (2.0 * sigma * sigma));
    }
  }
  Tensor<float> map(Shape5{1, 1, patch[0], patch[1], patch[2]});
  // nnU-Net replaces zero weights by the smallest non-zero one; float underflow is the only
  // way to get a zero here (tiny sigma_scale), so the same floor keeps every weight > 0.
  const double floor = static_cast<double>(std::numeric_limits<float>::min());
  index_t i = 0;
  for (index_t d = 0; d < patch[0]; ++d) {
    for (index_t h = 0; h < patch[1]; ++h) {
      for (index_t w = 0; w < patch[2]; ++w, ++i) {
        const double value = profile[0][static_cast<std::size_t>(d)] *
                             profile[1][static_cast<std::size_t>(h)] *
                             profile[2][static_cast<std::size_t>(w)];
        map[i] = static_cast<float>(std::max(value, floor));
      }
    }
  }
  return map;
}

// Runs `fn` on every window of `image` and returns the importance-weighted average of its
// outputs, (N, out_channels, D, H, W). See the header comment.
template <class Fn>
Tensor<float> sliding_window_inference(const Tensor<float>& image, index_t out_channels,
                                       const SlidingWindowOptions& options, Fn&& fn) {
  const Shape5 s = image.shape();
  const auto& p = options.patch;
  REVOX_CHECK(s.valid(), "sliding_window_inference: image extents must be positive, got ", s);
  REVOX_CHECK(out_channels >= 1, "sliding_window_inference: out_channels must be >= 1, got ",
              out_channels);
  REVOX_CHECK(p[0] >= 1 && p[1] >= 1 && p[2] >= 1,
              "sliding_window_inference: patch extents must be >= 1, got D=", p[0], ", H=", p[1],
              ", W=", p[2]);
  REVOX_CHECK(s.d >= p[0] && s.h >= p[1] && s.w >= p[2],
              "sliding_window_inference: the image (D=", s.d, ", H=", s.h, ", W=", s.w,
              ") is smaller than the patch (D=", p[0], ", H=", p[1], ", W=", p[2],
              ") on some axis; pad it first");
  const std::vector<index_t> starts_d = sliding_window_starts(s.d, p[0], options.overlap);
  const std::vector<index_t> starts_h = sliding_window_starts(s.h, p[1], options.overlap);
  const std::vector<index_t> starts_w = sliding_window_starts(s.w, p[2], options.overlap);
  const Tensor<float> weight = gaussian_importance_map(p, options.sigma_scale);

  const Shape5 out_shape = s.with_channels(out_channels);
  std::vector<double> weighted(static_cast<std::size_t>(out_shape.numel()), 0.0);
  std::vector<double> weight_sum(static_cast<std::size_t>(s.spatial()), 0.0);
  Tensor<float> in_patch(Shape5{s.n, s.c, p[0], p[1], p[2]});
  Tensor<float> out_patch(Shape5{s.n, out_channels, p[0], p[1], p[2]});
  const index_t patch_voxels = p[0] * p[1] * p[2];

  for (index_t d0 : starts_d) {
    for (index_t h0 : starts_h) {
      for (index_t w0 : starts_w) {
        // Copy the window out.
        for (index_t plane = 0; plane < s.n * s.c; ++plane) {
          const float* src = image.data() + plane * s.spatial();
          float* dst = in_patch.data() + plane * patch_voxels;
          for (index_t d = 0; d < p[0]; ++d) {
            for (index_t h = 0; h < p[1]; ++h) {
              const float* row = src + ((d0 + d) * s.h + (h0 + h)) * s.w + w0;
              std::copy(row, row + p[2], dst + (d * p[1] + h) * p[2]);
            }
          }
        }
        std::fill(out_patch.data(), out_patch.data() + out_patch.numel(),
                  std::numeric_limits<float>::quiet_NaN());
        fn(in_patch.cview(), out_patch.view());
        // Accumulate it.
        for (index_t plane = 0; plane < s.n * out_channels; ++plane) {
          const float* src = out_patch.data() + plane * patch_voxels;
          double* dst = weighted.data() + plane * s.spatial();
          for (index_t d = 0; d < p[0]; ++d) {
            for (index_t h = 0; h < p[1]; ++h) {
              const index_t in_row = (d * p[1] + h) * p[2];
              const index_t out_row = ((d0 + d) * s.h + (h0 + h)) * s.w + w0;
              for (index_t w = 0; w < p[2]; ++w) {
                dst[out_row + w] += static_cast<double>(weight[in_row + w]) *
                                    static_cast<double>(src[in_row + w]);
              }
            }
          }
        }
        for (index_t d = 0; d < p[0]; ++d) {
          for (index_t h = 0; h < p[1]; ++h) {
            const index_t in_row = (d * p[1] + h) * p[2];
            const index_t out_row = ((d0 + d) * s.h + (h0 + h)) * s.w + w0;
            for (index_t w = 0; w < p[2]; ++w) {
              weight_sum[static_cast<std::size_t>(out_row + w)] +=
                  static_cast<double>(weight[in_row + w]);
            }
          }
        }
      }
    }
  }

  Tensor<float> result(out_shape);
  for (index_t plane = 0; plane < s.n * out_channels; ++plane) {
    const double* src = weighted.data() + plane * s.spatial();
    float* dst = result.data() + plane * s.spatial();
    for (index_t i = 0; i < s.spatial(); ++i) {
      dst[i] = static_cast<float>(src[i] / weight_sum[static_cast<std::size_t>(i)]);
    }
  }
  return result;
}

}  // namespace revox
