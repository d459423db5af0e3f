// revox/losses/deep_supervision.hpp — the pieces of nnU-Net's deep supervision loss for a
// UNet with auxiliary heads (UNetConfig::deep_supervision = K; revox/models/unet.hpp):
//
//   loss = sum over levels j = 0 .. K of weight[j] * loss(output_j, targets_j)
//
// where output_0 is the full-resolution output and output_j (j >= 1) has each spatial extent
// divided by 2^j.
//
//   deep_supervision_weights(K):  weight[j] = 2^-j / sum_i 2^-i, i = 0 .. K (sums to 1;
//                                 K = 0 gives {1}). nnU-Net v2 uses the same halving but
//                                 sets its lowest resolution's weight to 0; here every head
//                                 counts.
//   downsample_targets(targets, j): region targets (N, C, D, H, W) in [0, 1] averaged over
//                                 each 2^j x 2^j x 2^j cube ("area" downsampling): the
//                                 share of the coarse voxel's fine voxels inside each region,
//                                 a soft target in [0, 1] that keeps each region's volume
//                                 (the soft Dice and BCE accept soft targets). D, H and W must
//                                 be divisible by 2^j. Sums run in double in a fixed order.
#pragma once

#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::losses {

inline std::vector<double> deep_supervision_weights(index_t extra_levels) {
  REVOX_CHECK(extra_levels >= 0 && extra_levels < 31,
              "deep_supervision_weights: extra levels must be in [0, 30], got ", extra_levels);
  std::vector<double> weights;
  double sum = 0.0;
  for (index_t j = 0; j <= extra_levels; ++j) {
    weights.push_back(1.0 / static_cast<double>(index_t{1} << j));
    sum += weights.back();
  }
  for (double& w : weights) w /= sum;
  return weights;
}

template <class T>
Tensor<T> downsample_targets(const Tensor<T>& targets, index_t level) {
  REVOX_CHECK(level >= 0 && level < 31, "downsample_targets: level must be in [0, 30], got ",
              level);
  const Shape5 in = targets.shape();
  const index_t f = index_t{1} << level;
  REVOX_CHECK(in.d % f == 0 && in.h % f == 0 && in.w % f == 0, "downsample_targets: extents ",
              in, " must be divisible by 2^", level, " = ", f);
  const Shape5 out{in.n, in.c, in.d / f, in.h / f, in.w / f};
  Tensor<T> result(out);
  const double inv = 1.0 / static_cast<double>(f * f * f);
  const auto src = targets.cview();
  auto dst = result.view();
  for (index_t n = 0; n < out.n; ++n) {
    for (index_t c = 0; c < out.c; ++c) {
      for (index_t d = 0; d < out.d; ++d) {
        for (index_t h = 0; h < out.h; ++h) {
          for (index_t w = 0; w < out.w; ++w) {
            double sum = 0.0;
            for (index_t a = 0; a < f; ++a) {
              for (index_t b = 0; b < f; ++b) {
                for (index_t e = 0; e < f; ++e) {
                  sum += static_cast<double>(src.at(n, c, d * f + a, h * f + b, w * f + e));
                }
              }
            }
            dst.at(n, c, d, h, w) = static_cast<T>(sum * inv);
          }
        }
      }
    }
  }
  return result;
}

}  // namespace revox::losses
