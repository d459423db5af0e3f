// Segmentation metrics on one BraTS-sized volume (240 x 240 x 155 voxels, 1 mm): the exact
// distance transform over the full grid, HD95 of a tumour-sized pair of masks, and the
// three BraTS regions of a label volume. Threads: OMP_NUM_THREADS.
//   OMP_NUM_THREADS=2 build/benchmarks/bench_metrics
#include <benchmark/benchmark.h>

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/metrics/distance_transform.hpp"
#include "revox/metrics/segmentation.hpp"

namespace {

using revox::index_t;
using revox::Shape5;

const Shape5 kShape{1, 1, 155, 240, 240};  // (N, C, D, H, W): NIfTI 240 x 240 x 155
const revox::metrics::Spacing kSpacing{1.0, 1.0, 1.0};

// An ellipsoid with radii (rd, rh, rw) voxels around (cd, ch, cw), with a rough boundary:
// each voxel near the surface is flipped with probability 0.3.
std::vector<std::uint8_t> ellipsoid(double cd, double ch, double cw, double rd, double rh,
                                    double rw, std::uint64_t seed) {
  revox::Rng rng(seed);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(kShape.spatial()));
  for (index_t d = 0; d < kShape.d; ++d) {
    for (index_t h = 0; h < kShape.h; ++h) {
      for (index_t w = 0; w < kShape.w; ++w) {
        const double x = (static_cast<double>(d) - cd) / rd;
        const double y = (static_cast<double>(h) - ch) / rh;
        const double z = (static_cast<double>(w) - cw) / rw;
        const double r = std::sqrt(x * x + y * y + z * z);
        bool inside = r <= 1.0;
        if (std::abs(r - 1.0) < 0.05 && rng.uniform01() < 0.3) inside = !inside;
        mask[static_cast<std::size_t>(kShape.offset(0, 0, d, h, w))] = inside ? 1 : 0;
      }
    }
  }
  return mask;
}

const std::vector<std::uint8_t>& truth_mask() {
  static const auto mask = ellipsoid(80, 110, 125, 25, 35, 30, 1);
  return mask;
}
const std::vector<std::uint8_t>& pred_mask() {
  static const auto mask = ellipsoid(82, 113, 121, 23, 37, 31, 2);
  return mask;
}

void set_counters(benchmark::State& state, index_t voxels) {
  state.SetItemsProcessed(state.iterations() * voxels);
  state.counters["threads"] = omp_get_max_threads();
}

// Full-grid EDT to the surface of a tumour-sized mask (what HD95 needs, without cropping).
void BM_SquaredDistanceTransform(benchmark::State& state) {
  const auto surface = revox::metrics::surface_voxels(truth_mask().data(), kShape);
  std::vector<double> out(static_cast<std::size_t>(kShape.spatial()));
  for (auto _ : state) {
    revox::metrics::squared_distance_transform(surface.data(), kShape, kSpacing, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, kShape.spatial());
}
BENCHMARK(BM_SquaredDistanceTransform)->Unit(benchmark::kMillisecond)->UseRealTime();

// HD95 of a predicted vs a true tumour (works on their bounding box).
void BM_Hausdorff95(benchmark::State& state) {
  double hd95 = 0.0;
  for (auto _ : state) {
    hd95 = revox::metrics::hausdorff95(pred_mask().data(), truth_mask().data(), kShape, kSpacing);
    benchmark::DoNotOptimize(hd95);
  }
  state.counters["hd95_mm"] = hd95;
  set_counters(state, kShape.spatial());
}
BENCHMARK(BM_Hausdorff95)->Unit(benchmark::kMillisecond)->UseRealTime();

// Dice, HD95, sensitivity, specificity of WT, TC and ET for one case.
void BM_ScoreBrats(benchmark::State& state) {
  auto labels = [](const std::vector<std::uint8_t>& outer, std::uint64_t seed) {
    revox::Tensor<std::uint8_t> t(kShape);
    revox::Rng rng(seed);
    for (index_t i = 0; i < kShape.spatial(); ++i) {
      t[i] = outer[static_cast<std::size_t>(i)] == 0
                 ? std::uint8_t{0}
                 : static_cast<std::uint8_t>(std::uint8_t{1} + rng.below(2) +
                                             (rng.uniform01() < 0.3 ? 2 : 0));  // 1, 2, 3, 4
      if (t[i] == 3) t[i] = 1;
    }
    return t;
  };
  const auto truth = labels(truth_mask(), 3);
  const auto pred = labels(pred_mask(), 4);
  for (auto _ : state) {
    auto scores = revox::metrics::score_brats(pred, truth, 4, kSpacing);
    benchmark::DoNotOptimize(scores);
  }
  set_counters(state, kShape.spatial());
}
BENCHMARK(BM_ScoreBrats)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
