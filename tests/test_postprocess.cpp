// The revox-brats post-processing (examples/brats/postprocess.hpp): ET suppression below a
// threshold, the choice of that threshold on hold-out counts, 26-connected components and
// the removal of small components per region.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "revox/core/random.hpp"

#include "../examples/brats/postprocess.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::brats::EnhancingCounts;
using revox::data::LabelConvention;

namespace {

Tensor<std::uint8_t> label_volume(index_t d, index_t h, index_t w) {
  return Tensor<std::uint8_t>::zeros(Shape5{1, 1, d, h, w});
}

std::uint8_t& at(Tensor<std::uint8_t>& t, index_t d, index_t h, index_t w) {
  const Shape5 s = t.shape();
  return t[(d * s.h + h) * s.w + w];
}

// Components by a slow reference: repeated relaxation of the minimum voxel index over the 26
// neighbours until nothing changes; returns each voxel's representative (-1 outside).
std::vector<index_t> reference_components(const std::vector<std::uint8_t>& mask, index_t D,
                                          index_t H, index_t W) {
  std::vector<index_t> rep(mask.size(), -1);
  for (index_t i = 0; i < D * H * W; ++i) {
    if (mask[static_cast<std::size_t>(i)]) rep[static_cast<std::size_t>(i)] = i;
  }
  bool changed = true;
  while (changed) {
    changed = false;
    for (index_t d = 0; d < D; ++d) {
      for (index_t h = 0; h < H; ++h) {
        for (index_t w = 0; w < W; ++w) {
          const index_t v = (d * H + h) * W + w;
          if (rep[static_cast<std::size_t>(v)] < 0) continue;
          for (index_t dd = -1; dd <= 1; ++dd) {
            for (index_t hh = -1; hh <= 1; ++hh) {
              for (index_t ww = -1; ww <= 1; ++ww) {
                const index_t a = d + dd, b = h + hh, c = w + ww;
                if (a < 0 || b < 0 || c < 0 || a >= D || b >= H || c >= W) continue;
                const index_t u = (a * H + b) * W + c;
                if (rep[static_cast<std::size_t>(u)] >= 0 &&
                    rep[static_cast<std::size_t>(u)] < rep[static_cast<std::size_t>(v)]) {
                  rep[static_cast<std::size_t>(v)] = rep[static_cast<std::size_t>(u)];
                  changed = true;
                }
              }
            }
          }
        }
      }
    }
  }
  return rep;
}

}  // namespace

TEST_CASE("ET suppression: below the threshold ET becomes label 1, at or above it stays",
          "[brats][postprocess]") {
  for (const auto convention : {LabelConvention::brats2017, LabelConvention::brats2023}) {
    const std::uint8_t et = revox::data::enhancing_label(convention);
    Tensor<std::uint8_t> labels = label_volume(4, 4, 4);
    at(labels, 1, 1, 1) = et;
    at(labels, 1, 1, 2) = et;
    at(labels, 1, 2, 1) = et;
    at(labels, 2, 2, 2) = 2;
    at(labels, 3, 3, 3) = 1;
    Tensor<std::uint8_t> kept = labels.clone();
    // 3 ET voxels: threshold 3 keeps them (not below), 4 relabels them.
    CHECK(revox::brats::suppress_small_enhancing(kept, convention, 3) == 0);
    for (index_t i = 0; i < labels.numel(); ++i) REQUIRE(kept[i] == labels[i]);
    CHECK(revox::brats::suppress_small_enhancing(kept, convention, 0) == 0);
    Tensor<std::uint8_t> changed = labels.clone();
    CHECK(revox::brats::suppress_small_enhancing(changed, convention, 4) == 3);
    CHECK(at(changed, 1, 1, 1) == 1);
    CHECK(at(changed, 1, 1, 2) == 1);
    CHECK(at(changed, 1, 2, 1) == 1);
    CHECK(at(changed, 2, 2, 2) == 2);  // oedema untouched
    CHECK(at(changed, 3, 3, 3) == 1);
    CHECK(at(changed, 0, 0, 0) == 0);
  }
}

TEST_CASE("ET threshold choice: BraTS empty rule, best mean ET Dice, smallest on ties",
          "[brats][postprocess]") {
  using revox::brats::enhancing_dice_after;
  // A case without true ET and a 30-voxel false positive: Dice 0, 1 once suppressed.
  const EnhancingCounts false_positive{30, 0, 0};
  CHECK(enhancing_dice_after(false_positive, 0) == 0.0);
  CHECK(enhancing_dice_after(false_positive, 30) == 0.0);
  CHECK(enhancing_dice_after(false_positive, 31) == 1.0);
  // A case with a small true ET found: 2 * 40 / (50 + 60); suppressing it gives 0.
  const EnhancingCounts small_hit{50, 60, 40};
  CHECK(enhancing_dice_after(small_hit, 50) == Approx(80.0 / 110.0));
  CHECK(enhancing_dice_after(small_hit, 51) == 0.0);
  // Empty and empty: 1 whatever the threshold.
  CHECK(enhancing_dice_after(EnhancingCounts{0, 0, 0}, 1000) == 1.0);
  // True ET missed entirely: 0.
  CHECK(enhancing_dice_after(EnhancingCounts{0, 20, 0}, 0) == 0.0);

  // Two false positives (30 and 80 voxels) and one small hit of 150 voxels: thresholds in
  // (80, 150] make every case right; the smallest candidate there is 100.
  const std::vector<EnhancingCounts> cases{{30, 0, 0}, {80, 0, 0}, {150, 140, 130}};
  const auto choice = revox::brats::choose_et_threshold(cases);
  CHECK(choice.threshold == 100);
  CHECK(choice.dice_without == Approx((0.0 + 0.0 + 260.0 / 290.0) / 3.0));
  CHECK(choice.dice_with == Approx((1.0 + 1.0 + 260.0 / 290.0) / 3.0));
  REQUIRE(choice.mean_dice.size() == revox::brats::et_threshold_candidates().size());
  // 50 suppresses only the first false positive.
  CHECK(choice.mean_dice[3] == Approx((1.0 + 0.0 + 260.0 / 290.0) / 3.0));
  // Nothing to gain: 0 (the smallest of the tied candidates).
  CHECK(revox::brats::choose_et_threshold({{500, 400, 300}, {0, 0, 0}}).threshold == 0);
  // No cases: 0.
  CHECK(revox::brats::choose_et_threshold({}).threshold == 0);
  // Counts from label maps.
  Tensor<std::uint8_t> pred = label_volume(2, 2, 2), truth = label_volume(2, 2, 2);
  pred[0] = 4;
  pred[1] = 4;
  pred[2] = 1;
  truth[1] = 4;
  truth[2] = 4;
  truth[3] = 4;
  const EnhancingCounts c =
      revox::brats::enhancing_counts(pred, truth, LabelConvention::brats2017);
  CHECK(c.predicted == 2);
  CHECK(c.truth == 3);
  CHECK(c.overlap == 1);
}

TEST_CASE("connected components are 26-connected and match a reference labelling",
          "[brats][postprocess]") {
  // Two voxels touching only at a corner are one component; a gap of one voxel splits.
  {
    std::vector<std::uint8_t> mask(3 * 3 * 3, 0);
    mask[0] = 1;                    // (0, 0, 0)
    mask[(1 * 3 + 1) * 3 + 1] = 1;  // (1, 1, 1): corner neighbour
    mask[(2 * 3 + 2) * 3 + 2] = 1;  // (2, 2, 2): corner neighbour of (1, 1, 1)
    mask[(0 * 3 + 0) * 3 + 2] = 1;  // (0, 0, 2): 2 away from (0, 0, 0), 1 from (1, 1, 1)
    const revox::Shape5 shape{1, 1, 3, 3, 3};
    const auto one = revox::metrics::connected_components(mask.data(), shape);
    REQUIRE(one.count == 1);
    CHECK(one.voxels[0] == 4);
    mask[(1 * 3 + 1) * 3 + 1] = 0;  // without the centre: three separate voxels
    const auto split = revox::metrics::connected_components(mask.data(), shape);
    CHECK(split.count == 3);
    CHECK(split.label[1] == 0);
  }
  // Random masks against the reference relaxation.
  revox::Rng rng(11);
  for (int trial = 0; trial < 5; ++trial) {
    const index_t D = 5, H = 6, W = 7;
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(D * H * W));
    for (auto& m : mask) m = rng.uniform(0.0, 1.0) < 0.25 ? 1 : 0;
    const auto c = revox::metrics::connected_components(mask.data(), revox::Shape5{1, 1, D, H, W});
    const auto& component = c.label;
    const auto rep = reference_components(mask, D, H, W);
    std::vector<revox::index_t> counted(static_cast<std::size_t>(c.count), 0);
    for (std::size_t i = 0; i < mask.size(); ++i) {
      REQUIRE((component[i] > 0) == (mask[i] != 0));
      if (component[i] == 0) continue;
      ++counted[static_cast<std::size_t>(component[i] - 1)];
      // Same component here <=> same representative in the reference.
      for (std::size_t j = 0; j < i; ++j) {
        if (component[j] == 0) continue;
        REQUIRE((component[i] == component[j]) == (rep[i] == rep[j]));
      }
    }
    for (std::size_t k = 0; k < counted.size(); ++k) CHECK(counted[k] == c.voxels[k]);
  }
}

TEST_CASE("small components leave their region for the one around it", "[brats][postprocess]") {
  // A 5x5x5 tumour (oedema, a TC core of 1 and ET) and, apart, a single ET voxel and a
  // two-voxel oedema blob.
  Tensor<std::uint8_t> labels = label_volume(8, 8, 8);
  for (index_t d = 0; d < 5; ++d) {
    for (index_t h = 0; h < 5; ++h) {
      for (index_t w = 0; w < 5; ++w) at(labels, d, h, w) = 2;
    }
  }
  at(labels, 2, 2, 2) = 1;
  at(labels, 2, 2, 3) = 4;
  at(labels, 0, 0, 0) = 4;  // ET touching the core only through oedema: its own TC component
  at(labels, 6, 6, 6) = 4;  // an isolated ET voxel: WT component of size 1
  at(labels, 6, 0, 0) = 2;
  at(labels, 6, 0, 1) = 2;  // a WT component of 2 voxels
  Tensor<std::uint8_t> off = labels.clone();
  CHECK(revox::brats::remove_small_components(off, LabelConvention::brats2017, 0) == 0);
  for (index_t i = 0; i < labels.numel(); ++i) REQUIRE(off[i] == labels[i]);

  Tensor<std::uint8_t> out = labels.clone();
  const auto changed = revox::brats::remove_small_components(out, LabelConvention::brats2017, 2);
  // WT: the isolated voxel (1) goes to 0; the 2-voxel blob stays. TC: {(0,0,0)} alone (1
  // voxel) -> oedema; the core {(2,2,2),(2,2,3)} (2 voxels) stays. ET: (2,2,3) alone, 1
  // voxel -> necrosis.
  CHECK(at(out, 6, 6, 6) == 0);
  CHECK(at(out, 6, 0, 0) == 2);
  CHECK(at(out, 6, 0, 1) == 2);
  CHECK(at(out, 0, 0, 0) == 2);
  CHECK(at(out, 2, 2, 2) == 1);
  CHECK(at(out, 2, 2, 3) == 1);
  CHECK(at(out, 4, 4, 4) == 2);
  CHECK(changed == 3);

  // apply_postprocess: ET suppression first (on 3 ET voxels), then components.
  Tensor<std::uint8_t> both = labels.clone();
  revox::brats::PostprocessOptions options;
  options.et_threshold = 4;
  options.min_component = 2;
  const auto report = revox::brats::apply_postprocess(both, LabelConvention::brats2017, options);
  CHECK(report.et_relabelled == 3);
  CHECK(at(both, 2, 2, 3) == 1);
  CHECK(at(both, 0, 0, 0) == 2);  // now a 1-voxel TC component -> oedema
  CHECK(at(both, 6, 6, 6) == 0);
  for (index_t i = 0; i < both.numel(); ++i) REQUIRE(both[i] != 4);
}
