// revox-brats inference: one BraTS case through a trained UNet, back into the case's grid.
//
//   image (1, 4, D, H, W), z-scored (data::zscore_nonzero)
//   -> cropped to the head: data::nonzero_box with kHeadMargin, the crop the training cases
//      got (revox/data/case_store.hpp), so the network sees heads framed as in training;
//      voxels outside the box are background in the result
//   -> full volume: centred zero padding of every axis up to the next multiple of
//      2^(levels - 1) (the U-Net's size divisor), one forward pass (no saved activations);
//      sliding window: centred zero padding of every axis up to at least the window, then
//      revox::sliding_window_inference with Gaussian importance weighting (window^3 patches,
//      the window a multiple of the divisor)
//   -> sigmoid of the three logits (WT, TC, ET), averaged across windows
//   -> test-time augmentation by mirroring (InferenceOptions::flips, parse_tta): the cropped
//      image is also predicted flipped along each listed combination of the axes x (W),
//      y (H), z (D); every prediction is flipped back and the probabilities (after the
//      sigmoid) are averaged with the unflipped one; with several models (an ensemble of
//      checkpoints, e.g. cross-validation folds) every model predicts every flip and all the
//      probabilities are averaged (the nnU-Net way)
//   -> data::undo_crop_or_pad back to (1, 3, D, H, W) in the original grid
//   -> labels (1, 1, D, H, W) by data::labels_from_regions at 0.5 in the case's convention
//      (nested: ET -> 4 or 3, else TC -> 1, else WT -> 2, else 0).
// The forward pass runs on the CPU or, in a CUDA build, on the GPU (predict_probabilities(dev,
// ...)); everything else runs on the host.
// Predictions are written as <out>/<case id>.nii.gz (uint8) with the case's geometry, and
// probability maps as <case id>_prob_{wt,tc,et}.nii.gz (float32).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "device.hpp"
#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/metrics/segmentation.hpp"
#include "revox/models/sliding_window.hpp"
#include "revox/models/unet.hpp"

namespace revox::brats {

// A mirror flip for test-time augmentation: a bit mask over the spatial axes, bit 0 = x (W,
// the last axis), bit 1 = y (H), bit 2 = z (D); 0 is the image as it is.
using Flip = unsigned;
inline constexpr Flip kFlipX = 1, kFlipY = 2, kFlipZ = 4;

struct InferenceOptions {
  index_t window = 0;    // sliding-window patch edge (a cube); 0 = full volume
  double overlap = 0.5;  // sliding window only
  // Test-time mirroring: the flips whose predictions are averaged (parse_tta); empty = {0},
  // no augmentation.
  std::vector<Flip> flips;
};

// "x", "yz", "xyz", ... (axes in x, y, z order); "none" for 0.
inline std::string flip_name(Flip flip) {
  if (flip == 0) return "none";
  std::string name;
  if (flip & kFlipX) name += 'x';
  if (flip & kFlipY) name += 'y';
  if (flip & kFlipZ) name += 'z';
  return name;
}

// The --tta syntax: "none" (no augmentation: {0}), "all" (the 8 combinations of the three
// axes, nnU-Net's mirroring) or a comma-separated list of combinations of the letters x, y,
// z, e.g. "x,y,z" or "x,y,xy,xyz" (each a flip along every letter's axis at once). The
// unflipped image is always included; the result is sorted with duplicates removed.
// Throws revox::Error naming the bad entry.
inline std::vector<Flip> parse_tta(const std::string& text) {
  if (text == "none" || text.empty()) return {0};
  if (text == "all") return {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<Flip> flips{0};
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    Flip flip = 0;
    REVOX_CHECK(!item.empty(), "--tta '", text, "': an empty entry (expected 'all', 'none' or "
                "a comma-separated list of axis combinations such as x,y,z,xy,xyz)");
    for (char c : item) {
      const Flip bit = c == 'x' ? kFlipX : c == 'y' ? kFlipY : c == 'z' ? kFlipZ : 0;
      REVOX_CHECK(bit != 0 && (flip & bit) == 0, "--tta '", text, "': entry '", item,
                  "' must combine the axes x, y, z, each at most once (e.g. x, yz, xyz)");
      flip |= bit;
    }
    flips.push_back(flip);
    begin = end + 1;
  }
  std::sort(flips.begin(), flips.end());
  flips.erase(std::unique(flips.begin(), flips.end()), flips.end());
  return flips;
}

// "none", or the flips after the unflipped image: "x, y, xy (4 predictions)".
inline std::string describe_tta(const std::vector<Flip>& flips) {
  if (flips.size() <= 1) return "none";
  std::string text;
  for (Flip flip : flips) {
    if (flip == 0) continue;
    text += (text.empty() ? "" : ", ") + flip_name(flip);
  }
  return text + " (" + std::to_string(flips.size()) + " predictions)";
}

// A copy of a (N, C, D, H, W) tensor mirrored along the axes of `flip` (an involution).
template <class T>
Tensor<T> flip_spatial(const Tensor<T>& tensor, Flip flip) {
  const Shape5 s = tensor.shape();
  Tensor<T> out(s);
  const bool fd = (flip & kFlipZ) != 0, fh = (flip & kFlipY) != 0, fw = (flip & kFlipX) != 0;
  for (index_t nc = 0; nc < s.n * s.c; ++nc) {
    const T* src = tensor.data() + nc * s.spatial();
    T* dst = out.data() + nc * s.spatial();
    for (index_t d = 0; d < s.d; ++d) {
      const index_t sd = fd ? s.d - 1 - d : d;
      for (index_t h = 0; h < s.h; ++h) {
        const index_t sh = fh ? s.h - 1 - h : h;
        const T* row = src + (sd * s.h + sh) * s.w;
        T* target = dst + (d * s.h + h) * s.w;
        if (fw) {
          for (index_t w = 0; w < s.w; ++w) target[w] = row[s.w - 1 - w];
        } else {
          std::copy(row, row + s.w, target);
        }
      }
    }
  }
  return out;
}

inline constexpr std::array<const char*, 3> kRegionFileTags{"wt", "tc", "et"};

inline void sigmoid_in_place(float* values, index_t count) {
  for (index_t i = 0; i < count; ++i) values[i] = 1.0f / (1.0f + std::exp(-values[i]));
}

inline index_t round_up(index_t value, index_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Checks the options against the model; throws revox::Error naming the problem.
inline void check_inference_options(const UNetConfig& config, const InferenceOptions& options) {
  if (options.window == 0) return;
  const index_t divisor = config.size_divisor();
  REVOX_CHECK(options.window > 0 && options.window % divisor == 0, "--sliding-window ",
              options.window, " must be a positive multiple of ", divisor, " (the model has ",
              config.levels(), " levels, so every input extent must be divisible by ", divisor,
              ")");
  REVOX_CHECK(options.overlap >= 0.0 && options.overlap < 1.0, "--overlap must be in [0, 1), got ",
              options.overlap);
}

// Region probabilities (1, 3, D, H, W) = sigmoid(logits) in the image's own grid, with the
// model on `dev` (Cpu, or Cuda when `net`'s parameters live on the GPU: the padded volume or
// each window is copied to the GPU and its logits back; padding, the sigmoid and the window
// blending stay on the host, so both devices share every step but the forward pass).
// The voxels kept around the head's box (the margin of `revox-brats preprocess`'s crop).
inline constexpr int kHeadMargin = 2;

// Below: the whole image as given, padded (no crop to the head).
template <class Dev>
Tensor<float> predict_probabilities_of_volume(const Dev& dev, const UNet<float>& net,
                                              const Tensor<float>& image,
                                              const InferenceOptions& options) {
  const UNetConfig& config = net.config();
  check_inference_options(config, options);
  const Shape5 s = image.shape();
  REVOX_CHECK(s.n == 1 && s.c == config.in_channels, "predict: the image has shape ", s,
              ", the model expects (1, ", config.in_channels, ", D, H, W)");
  const data::Size3 source = data::spatial_size(s);
  data::Size3 target{};
  for (std::size_t a = 0; a < 3; ++a) {
    target[a] = options.window == 0 ? round_up(source[a], config.size_divisor())
                                    : std::max(source[a], options.window);
  }
  data::CropPad plan;
  const Tensor<float> padded = data::crop_or_pad(image, target, plan);
  Tensor<float> probabilities;
  if (options.window == 0) {
    probabilities = Tensor<float>(net.output_shape(padded.shape()));
    if constexpr (is_cpu_v<Dev>) {
      net.forward(dev, padded.cview(), probabilities.view(), nullptr);
    } else {
      const Staged<Dev> in = stage(dev, padded);
      Tensor<float, Dev> out(probabilities.shape());
      net.forward(dev, in.view, out.view(), nullptr);
      device_to_host(dev, probabilities.data(), out.data(), out.numel());
    }
    sigmoid_in_place(probabilities.data(), probabilities.numel());
  } else {
    SlidingWindowOptions window;
    window.patch = {options.window, options.window, options.window};
    window.overlap = options.overlap;
    probabilities = sliding_window_inference(
        padded, config.out_channels, window,
        [&](TensorView<const float> in, TensorView<float> out) {
          if constexpr (is_cpu_v<Dev>) {
            net.forward(dev, in, out, nullptr);
          } else {
            Tensor<float, Dev> in_device(in.shape);
            host_to_device(dev, in_device.data(), in.data, in.numel());
            Tensor<float, Dev> out_device(out.shape);
            net.forward(dev, in_device.cview(), out_device.view(), nullptr);
            device_to_host(dev, out.data, out_device.data(), out.numel());
          }
          sigmoid_in_place(out.data, out.shape.numel());
        });
  }
  return data::undo_crop_or_pad(probabilities, plan);
}

// The mean of the probabilities of every model in `nets` on every flip of options.flips
// (each flipped back), on the image as given (predict_probabilities_of_volume for each).
template <class Dev>
Tensor<float> predict_probabilities_mirrored(const Dev& dev,
                                             const std::vector<const UNet<float>*>& nets,
                                             const Tensor<float>& image,
                                             const InferenceOptions& options) {
  REVOX_CHECK(!nets.empty(), "predict: no model given");
  const std::vector<Flip> flips = options.flips.empty() ? std::vector<Flip>{0} : options.flips;
  for (Flip flip : flips) {
    REVOX_CHECK(flip < 8, "predict: flip mask ", flip, " is not a combination of x, y, z");
  }
  Tensor<float> sum;
  std::size_t count = 0;
  for (Flip flip : flips) {
    const Tensor<float> flipped = flip == 0 ? Tensor<float>() : flip_spatial(image, flip);
    for (const UNet<float>* net : nets) {
      Tensor<float> p = predict_probabilities_of_volume(dev, *net, flip == 0 ? image : flipped,
                                                        options);
      if (flip != 0) p = flip_spatial(p, flip);
      if (count == 0) {
        sum = std::move(p);
      } else {
        for (index_t i = 0; i < sum.numel(); ++i) sum[i] += p[i];
      }
      ++count;
    }
  }
  if (count > 1) {
    const float scale = 1.0f / static_cast<float>(count);
    for (index_t i = 0; i < sum.numel(); ++i) sum[i] *= scale;
  }
  return sum;
}

// The image cropped to its head (nonzero_box, kHeadMargin), predicted (every model, every
// flip, averaged), and put back: (1, 3, D, H, W) in the image's grid, zero outside the box.
// An all-zero image is predicted whole.
template <class Dev>
Tensor<float> predict_probabilities(const Dev& dev, const std::vector<const UNet<float>*>& nets,
                                    const Tensor<float>& image, const InferenceOptions& options) {
  const auto box = data::nonzero_box(image.cview(), nullptr, kHeadMargin);
  if (!box || box->target == box->source) {
    return predict_probabilities_mirrored(dev, nets, image, options);
  }
  return data::undo_crop_or_pad(
      predict_probabilities_mirrored(dev, nets, data::crop_or_pad(image, *box), options), *box);
}

// One model.
template <class Dev>
Tensor<float> predict_probabilities(const Dev& dev, const UNet<float>& net,
                                    const Tensor<float>& image, const InferenceOptions& options) {
  return predict_probabilities(dev, std::vector<const UNet<float>*>{&net}, image, options);
}

// The same on the CPU.
inline Tensor<float> predict_probabilities(const UNet<float>& net, const Tensor<float>& image,
                                           const InferenceOptions& options) {
  return predict_probabilities(Cpu{}, net, image, options);
}

// Dice of WT, TC, ET (BraTS rule: 1 when both are empty) between two label volumes.
inline std::array<double, 3> region_dice(const Tensor<std::uint8_t>& pred,
                                         const Tensor<std::uint8_t>& truth,
                                         data::LabelConvention convention) {
  REVOX_CHECK(pred.shape() == truth.shape(), "region_dice: prediction shape ", pred.shape(),
              " differs from the ground truth's ", truth.shape());
  const std::uint8_t et = data::enhancing_label(convention);
  std::array<metrics::ConfusionCounts, 3> counts{};
  for (index_t i = 0; i < pred.numel(); ++i) {
    const std::uint8_t p = pred[i];
    const std::uint8_t t = truth[i];
    const bool in_p[3] = {p != 0, p == 1 || p == et, p == et};
    const bool in_t[3] = {t != 0, t == 1 || t == et, t == et};
    for (std::size_t r = 0; r < 3; ++r) {
      auto& c = counts[r];
      if (in_p[r] && in_t[r]) ++c.true_positives;
      else if (in_p[r]) ++c.false_positives;
      else if (in_t[r]) ++c.false_negatives;
      else ++c.true_negatives;
    }
  }
  return {metrics::dice(counts[0]), metrics::dice(counts[1]), metrics::dice(counts[2])};
}

inline std::filesystem::path prediction_path(const std::filesystem::path& out,
                                             const std::string& case_id) {
  return out / (case_id + ".nii.gz");
}

inline std::filesystem::path probability_path(const std::filesystem::path& out,
                                              const std::string& case_id, std::size_t region) {
  return out / (case_id + "_prob_" + kRegionFileTags[region] + ".nii.gz");
}

// One channel (1, 1, D, H, W) of a (1, C, D, H, W) tensor, copied.
inline Tensor<float> channel_copy(const Tensor<float>& tensor, index_t channel) {
  const Shape5 s = tensor.shape();
  Tensor<float> out(s.with_channels(1));
  const float* src = tensor.data() + channel * s.spatial();
  std::copy(src, src + s.spatial(), out.data());
  return out;
}

}  // namespace revox::brats
