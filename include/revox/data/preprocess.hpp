// revox/data/preprocess.hpp — the volume preprocessing of the BraTS pipeline: per-modality
// z-score over brain voxels, centered crop/pad to the network size with its exact inverse,
// and seeded random crops for patch training.
//
// Shapes: volumes are NCDHW host tensors (N, C, D, H, W); NIfTI x is W, y is H, z is D, so
// a BraTS volume (240 x 240 x 155 in NIfTI order x, y, z) has D=155, H=240, W=240, and the
// paper's full-volume size (256 x 256 x 160 in x, y, z) is Size3{160, 256, 256} (D, H, W).
//
// A CropPad describes one placement of a volume of `source` size into a grid of `target`
// size: output voxel o (per axis) reads input voxel o - offset, and voxels with no input
// are zero. A positive offset pads before the volume, a negative one crops. Applying it with
// crop_or_pad and then undo_crop_or_pad gives back the input exactly wherever the window
// kept the voxel (everywhere when the target is at least as large on every axis), and zero
// (background) where it was cropped away, which is what a prediction needs to return to its
// original grid. The same CropPad applied to an image and to its labels crops them alike.
//
// Preconditions: tensors are on the host (Cpu); zscore_nonzero takes float volumes.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"

namespace revox::data {

// A spatial size or position (D, H, W), i.e. NIfTI (z, y, x).
using Size3 = std::array<index_t, 3>;

// The paper's full-volume training size, 256 x 256 x 160 in NIfTI (x, y, z) order.
inline constexpr Size3 paper_volume_size{160, 256, 256};
// The size of every BraTS volume, 240 x 240 x 155 in NIfTI (x, y, z) order.
inline constexpr Size3 brats_volume_size{155, 240, 240};

inline Size3 spatial_size(const Shape5& shape) { return Size3{shape.d, shape.h, shape.w}; }

// "W x H x D" (NIfTI x, y, z order), the way BraTS sizes are usually quoted.
inline std::string format_size(const Size3& size) {
  return revox::detail::concat(size[2], " x ", size[1], " x ", size[0], " (W x H x D)");
}

struct CropPad {
  Size3 source{};  // spatial size of the volume before (D, H, W)
  Size3 target{};  // spatial size after (D, H, W)
  Size3 offset{};  // output index = input index + offset, per axis; > 0 pads, < 0 crops

  friend bool operator==(const CropPad& a, const CropPad& b) {
    return a.source == b.source && a.target == b.target && a.offset == b.offset;
  }
  friend std::ostream& operator<<(std::ostream& out, const CropPad& c) {
    return out << "CropPad{source " << format_size(c.source) << ", target "
               << format_size(c.target) << ", offset (d=" << c.offset[0] << ", h=" << c.offset[1]
               << ", w=" << c.offset[2] << ")}";
  }
};

namespace detail {

inline void check_size(const char* who, const char* what, const Size3& size) {
  REVOX_CHECK(size[0] > 0 && size[1] > 0 && size[2] > 0, who, ": ", what,
              " must be positive on every axis, got D=", size[0], ", H=", size[1], ", W=",
              size[2]);
}

// Copies src into dst (both zero-initialised or not): dst voxel o = src voxel o - offset
// where that exists, zero elsewhere. N and C must agree.
template <class T>
void shifted_copy(TensorView<const T> src, TensorView<T> dst, const Size3& offset) {
  const Shape5 s = src.shape;
  const Shape5 t = dst.shape;
  const Size3 src_size{s.d, s.h, s.w};
  const Size3 dst_size{t.d, t.h, t.w};
  // Output range [lo, hi) per axis that has an input voxel.
  Size3 lo{};
  Size3 hi{};
  for (int axis = 0; axis < 3; ++axis) {
    lo[axis] = std::max<index_t>(0, offset[axis]);
    hi[axis] = std::min<index_t>(dst_size[axis], src_size[axis] + offset[axis]);
    if (hi[axis] < lo[axis]) hi[axis] = lo[axis];
  }
  const index_t planes = t.n * t.c;
  // Threads pay off only for real volumes; a small patch is copied faster by one thread.
#pragma omp parallel for schedule(static) if (t.numel() > (index_t{1} << 16))
  for (index_t plane = 0; plane < planes; ++plane) {
    const T* in = src.data + plane * s.spatial();
    T* out = dst.data + plane * t.spatial();
    std::fill(out, out + t.spatial(), T{});
    for (index_t d = lo[0]; d < hi[0]; ++d) {
      for (index_t h = lo[1]; h < hi[1]; ++h) {
        const T* in_row = in + ((d - offset[0]) * s.h + (h - offset[1])) * s.w - offset[2];
        T* out_row = out + (d * t.h + h) * t.w;
        std::copy(in_row + lo[2], in_row + hi[2], out_row + lo[2]);
      }
    }
  }
}

}  // namespace detail

// The centered placement of `source` into `target` (D, H, W). Per axis the difference is
// split evenly; an odd remainder goes after the volume (one more voxel of padding after, or
// one more voxel cropped after), as in MONAI's SpatialPad/CenterSpatialCrop.
inline CropPad centered_crop_pad(const Size3& source, const Size3& target) {
  detail::check_size("centered_crop_pad", "source size", source);
  detail::check_size("centered_crop_pad", "target size", target);
  CropPad plan{source, target, {}};
  for (int axis = 0; axis < 3; ++axis) {
    const index_t difference = target[axis] - source[axis];
    plan.offset[axis] = difference >= 0 ? difference / 2 : -((-difference) / 2);
  }
  return plan;
}

// A uniformly random window of `patch` size inside a volume of `source` size, seeded by
// rng: per axis the crop start is drawn from [0, source - patch]; an axis where the patch
// is larger than the volume is padded, centered, instead. Apply it with crop_or_pad to the
// image and to the labels so that both get the same window.
inline CropPad random_crop_window(const Size3& source, const Size3& patch, Rng& rng) {
  detail::check_size("random_crop_window", "volume size", source);
  detail::check_size("random_crop_window", "patch size", patch);
  CropPad plan = centered_crop_pad(source, patch);
  for (int axis = 0; axis < 3; ++axis) {
    if (source[axis] > patch[axis]) {
      const auto starts = static_cast<std::uint64_t>(source[axis] - patch[axis] + 1);
      plan.offset[axis] = -static_cast<index_t>(rng.below(starts));
    }
  }
  return plan;
}

// Places every (n, c) volume of `input` (spatial size plan.source) into a zero grid of size
// plan.target. Works for any element type and channel count.
template <class T>
Tensor<T> crop_or_pad(const Tensor<T>& input, const CropPad& plan) {
  REVOX_CHECK(spatial_size(input.shape()) == plan.source,
              "crop_or_pad: input size ", format_size(spatial_size(input.shape())),
              " does not match the plan's source size ", format_size(plan.source));
  detail::check_size("crop_or_pad", "target size", plan.target);
  const Shape5 s = input.shape();
  Tensor<T> output(Shape5{s.n, s.c, plan.target[0], plan.target[1], plan.target[2]});
  detail::shifted_copy(input.cview(), output.view(), plan.offset);
  return output;
}

// The same for a view (e.g. of a mapped case, revox/data/case_store.hpp).
template <class T>
Tensor<std::remove_const_t<T>> crop_or_pad(TensorView<T> input, const CropPad& plan) {
  using U = std::remove_const_t<T>;
  REVOX_CHECK(spatial_size(input.shape) == plan.source,
              "crop_or_pad: input size ", format_size(spatial_size(input.shape)),
              " does not match the plan's source size ", format_size(plan.source));
  detail::check_size("crop_or_pad", "target size", plan.target);
  const Shape5 s = input.shape;
  Tensor<U> output(Shape5{s.n, s.c, plan.target[0], plan.target[1], plan.target[2]});
  detail::shifted_copy(TensorView<const U>{input.data, input.shape}, output.view(), plan.offset);
  return output;
}

// The centered crop/pad of `input` to `target` (D, H, W); `plan` receives the placement so
// that undo_crop_or_pad can put a prediction back.
template <class T>
Tensor<T> crop_or_pad(const Tensor<T>& input, const Size3& target, CropPad& plan) {
  plan = centered_crop_pad(spatial_size(input.shape()), target);
  return crop_or_pad(input, plan);
}

// The inverse placement: takes a tensor of spatial size plan.target (e.g. a prediction, any
// channel count) back to plan.source; voxels that the plan cropped away become zero.
template <class T>
Tensor<T> undo_crop_or_pad(const Tensor<T>& prediction, const CropPad& plan) {
  REVOX_CHECK(spatial_size(prediction.shape()) == plan.target,
              "undo_crop_or_pad: prediction size ", format_size(spatial_size(prediction.shape())),
              " does not match the plan's target size ", format_size(plan.target));
  detail::check_size("undo_crop_or_pad", "source size", plan.source);
  const Shape5 s = prediction.shape();
  Tensor<T> output(Shape5{s.n, s.c, plan.source[0], plan.source[1], plan.source[2]});
  const Size3 inverse{-plan.offset[0], -plan.offset[1], -plan.offset[2]};
  detail::shifted_copy(prediction.cview(), output.view(), inverse);
  return output;
}

// A training patch: the image and its labels cropped by the same random window.
struct Patch {
  Tensor<float> image;           // (N, C, patch D, H, W)
  Tensor<std::uint8_t> labels;   // (N, 1, patch D, H, W)
  CropPad window;
};

// Draws one random_crop_window of `patch` size and applies it to the image and the labels,
// which must have the same spatial size.
inline Patch random_crop(const Tensor<float>& image, const Tensor<std::uint8_t>& labels,
                         const Size3& patch, Rng& rng) {
  REVOX_CHECK(spatial_size(image.shape()) == spatial_size(labels.shape()),
              "random_crop: image size ", format_size(spatial_size(image.shape())),
              " and labels size ", format_size(spatial_size(labels.shape())), " differ");
  Patch result;
  result.window = random_crop_window(spatial_size(image.shape()), patch, rng);
  result.image = crop_or_pad(image, result.window);
  result.labels = crop_or_pad(labels, result.window);
  return result;
}

// The BraTS modality order of a case image, and the names used in messages.
inline constexpr std::array<const char*, 4> modality_names{"t1", "t1ce", "t2", "flair"};

inline std::string channel_name(index_t channels, index_t c) {
  if (channels == static_cast<index_t>(modality_names.size())) {
    return modality_names[static_cast<std::size_t>(c)];
  }
  return revox::detail::concat("channel ", c);
}

// Per-channel z-score over the brain: for each (n, c), the mean and (population) standard
// deviation of the NON-ZERO voxels are computed in double, those voxels become
// (v - mean) / std, and zero voxels (background outside the skull-stripped brain) stay 0.
// A channel with no non-zero voxel, or whose non-zero voxels are all equal, throws
// revox::Error naming the case and the modality instead of dividing by zero. The result is
// deterministic: each channel is reduced in a fixed order by one thread.
inline void zscore_nonzero(Tensor<float>& image, const std::string& case_id) {
  const Shape5 s = image.shape();
  const index_t planes = s.n * s.c;
  const index_t voxels = s.spatial();
  std::vector<index_t> counts(static_cast<std::size_t>(planes), 0);
  std::vector<double> means(static_cast<std::size_t>(planes), 0.0);
  std::vector<double> stds(static_cast<std::size_t>(planes), 0.0);
  std::vector<int> finite(static_cast<std::size_t>(planes), 1);
#pragma omp parallel for schedule(static) if (image.numel() > (index_t{1} << 16))
  for (index_t plane = 0; plane < planes; ++plane) {
    const float* v = image.data() + plane * voxels;
    index_t count = 0;
    double sum = 0.0;
    for (index_t i = 0; i < voxels; ++i) {
      if (v[i] != 0.0f) {
        ++count;
        sum += static_cast<double>(v[i]);
      }
    }
    const auto p = static_cast<std::size_t>(plane);
    counts[p] = count;
    if (count == 0) continue;
    const double mean = sum / static_cast<double>(count);
    double squares = 0.0;
    for (index_t i = 0; i < voxels; ++i) {
      if (v[i] != 0.0f) {
        const double centered = static_cast<double>(v[i]) - mean;
        squares += centered * centered;
      }
    }
    means[p] = mean;
    stds[p] = std::sqrt(squares / static_cast<double>(count));
    finite[p] = std::isfinite(mean) && std::isfinite(stds[p]) ? 1 : 0;
  }
  for (index_t plane = 0; plane < planes; ++plane) {
    const auto p = static_cast<std::size_t>(plane);
    const std::string where = revox::detail::concat(
        "zscore_nonzero: case ", case_id, ", modality ", channel_name(s.c, plane % s.c),
        s.n > 1 ? revox::detail::concat(" of batch item ", plane / s.c) : std::string());
    REVOX_CHECK(counts[p] > 0, where, " is all zero (no brain voxels to normalise over)");
    REVOX_CHECK(finite[p] != 0, where, " has non-finite values (NaN or Inf)");
    REVOX_CHECK(stds[p] > 0.0, where, " is constant over its ", counts[p],
                " non-zero voxels (value ", means[p], "); its standard deviation is zero");
  }
#pragma omp parallel for schedule(static) if (image.numel() > (index_t{1} << 16))
  for (index_t plane = 0; plane < planes; ++plane) {
    const auto p = static_cast<std::size_t>(plane);
    float* v = image.data() + plane * voxels;
    const double mean = means[p];
    const double inv_std = 1.0 / stds[p];
    for (index_t i = 0; i < voxels; ++i) {
      if (v[i] != 0.0f) v[i] = static_cast<float>((static_cast<double>(v[i]) - mean) * inv_std);
    }
  }
}

}  // namespace revox::data
