// benchmarks/bench_common.hpp — what revox_bench's revox rows and oneDNN peer rows share: the
// machine limits measured at start-up (STREAM-style triad bandwidth, FMA-loop peak FLOP/s),
// the benchmark shapes, the per-row work model (FLOPs and bytes) and the counters derived
// from it, and a fast deterministic random fill.
//
// Counters of every row (from the row's wall-clock time per iteration, see timed_loop):
//   GB/s      bytes of the row's work model per second (inputs read + outputs written once,
//             unless the row's comment says otherwise)
//   GFLOP/s   floating-point operations per second (an FMA counts 2)
//   roofline  t_roofline / t, t_roofline = max(FLOPs / peak FLOP/s, bytes / triad bandwidth):
//             the fraction of this machine's limit the row reaches (1 = at the roofline)
#pragma once

#include <benchmark/benchmark.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "revox/core/shape.hpp"

namespace revox::bench {

// Limits of this machine at the thread count of the run, measured once by measure_limits().
struct MachineLimits {
  double triad_bytes_per_s = 0.0;  // STREAM triad a = b + s*c, 12 bytes per float element
  double peak_flops_per_s = 0.0;   // independent FMA chains on every thread
  int threads = 0;
};

MachineLimits& machine_limits();
MachineLimits measure_limits();

// One benchmark shape: batch 1, (C, D = H = W), float32, NCDHW.
struct BenchShape {
  index_t channels;
  index_t extent;
  Shape5 shape() const { return Shape5{1, channels, extent, extent, extent}; }
  std::string name() const {
    return "C" + std::to_string(channels) + "_D" + std::to_string(extent);
  }
  index_t numel() const { return shape().numel(); }
};

// The shapes: (C, D=H=W) in {(32,64), (32,96), (64,64), (30,128)}.
inline const std::vector<BenchShape>& bench_shapes() {
  static const std::vector<BenchShape> shapes = {{32, 64}, {32, 96}, {64, 64}, {30, 128}};
  return shapes;
}

// GroupNorm groups used for a C-channel tensor in the benchmarks: 8 when C is a multiple of 8,
// otherwise 5 (the MBConv-Base preset's 5 groups for its 30-channel level).
inline index_t bench_groups(index_t channels) { return channels % 8 == 0 ? 8 : 5; }

struct Work {
  double flops = 0.0;
  double bytes = 0.0;
};

// Work models shared by revox's rows and the peers' rows of the same op.
// Depthwise 3x3x3: 27 FMAs per element and pass (54 E FLOPs); a pass reads one or two tensors
// and writes one (8 E bytes: forward, backward-data, backward-weight). The fused backward does
// both backward passes (108 E) reading x and dy and writing dx (12 E).
inline Work depthwise_work(const Shape5& s, bool fused) {
  const double e = static_cast<double>(s.numel());
  return fused ? Work{108.0 * e, 12.0 * e} : Work{54.0 * e, 8.0 * e};
}
// Pointwise 1x1x1, Cin -> Cout, one pass (forward, backward-data or backward-weight):
// 2 Cin Cout S FLOPs; the two activations (Cin + Cout) S are read or written once.
inline Work pointwise_work(const Shape5& x, index_t cout) {
  const double sp = static_cast<double>(x.spatial());
  return {2.0 * static_cast<double>(x.c * cout) * sp, 4.0 * static_cast<double>(x.c + cout) * sp};
}
// Dense 3x3x3, C -> C, one pass: 2 C C 27 S FLOPs, 2 C S elements moved.
inline Work dense_work(const Shape5& s) {
  const double sp = static_cast<double>(s.spatial());
  return {2.0 * 27.0 * static_cast<double>(s.c * s.c) * sp, 8.0 * static_cast<double>(s.c) * sp};
}
// MaxPool3d 2x2x2 of x (E elements): forward reads x (4 E bytes) and writes y and a one-byte
// argmax (5 E / 8); backward reads dy and the argmax and writes dx. Comparisons not counted.
inline Work max_pool_work(const Shape5& x) {
  const double e = static_cast<double>(x.numel());
  return {0.0, 4.0 * e + 5.0 * e / 8.0};
}
// Trilinear x2 upsampling to y (E elements): forward reads x (E / 2 bytes) and writes y (4 E);
// backward the reverse. FLOPs: three 2-tap blends per output voxel, 6 E.
inline Work upsample_work(const Shape5& y) {
  const double e = static_cast<double>(y.numel());
  return {6.0 * e, 4.0 * e + e / 2.0};
}

// Runs `body` once untimed (a warm-up: the allocations a training step repeats are then
// served from the CPU allocator's pool, as from the second step of a training loop on), then
// in the benchmark loop, and sets the row's counters from its own wall-clock time per
// iteration (the same real time the row reports).
template <class Body>
void timed_loop(benchmark::State& state, Work work, Body&& body) {
  body();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double t = elapsed / static_cast<double>(std::max<benchmark::IterationCount>(
                                 state.iterations(), 1));
  const MachineLimits& limits = machine_limits();
  const double t_flops = limits.peak_flops_per_s > 0 ? work.flops / limits.peak_flops_per_s : 0;
  const double t_bytes = limits.triad_bytes_per_s > 0 ? work.bytes / limits.triad_bytes_per_s : 0;
  state.counters["GB/s"] = work.bytes * 1e-9 / t;
  state.counters["GFLOP/s"] = work.flops * 1e-9 / t;
  state.counters["roofline"] = std::max(t_flops, t_bytes) / t;
  state.counters["threads"] = omp_get_max_threads();
}

// Uniform values in [lo, hi) from a hash of (seed, index): deterministic, any thread count.
inline void fill_uniform(float* data, index_t count, std::uint64_t seed, float lo = -1.0f,
                         float hi = 1.0f) {
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < count; ++i) {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    data[i] = lo + (hi - lo) * u;
  }
}

// Registers the oneDNN peer rows (bench_onednn.cpp); a no-op without oneDNN.
void register_onednn_benchmarks();

}  // namespace revox::bench
