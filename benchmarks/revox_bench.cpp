// revox_bench — revox's CPU kernels against this machine's limits and against oneDNN, in one
// run: depthwise 3x3x3 (forward, backward-data, backward-weight, fused backward), pointwise
// 1x1x1 (forward, backward-data, backward-weight; in float32 and, as the *_bf16 rows, with
// bfloat16 activations on the CPU path printed at start-up), dense 3x3x3 convolution, GroupNorm,
// InstanceNorm3d (affine), 2x2x2 MaxPool3d and trilinear x2 upsampling (forward and
// backward), an MBConv block forward+backward, a reversible MBConv block forward+backward,
// and U-Net training steps.
// Shapes (batch 1, float32, NCDHW): (C, D=H=W) in {(32,64), (32,96), (64,64), (30,128)}.
//
// At start-up the executable measures this machine's limits at the run's thread count (a
// STREAM-style triad for bandwidth, independent FMA chains for peak FLOP/s), prints them and
// records them in the JSON context; every row's "roofline" counter is relative to them (see
// bench_common.hpp). Unless given on the command line, each row is repeated 5 times and only
// the aggregates (mean, median, stddev, cv) are reported: quote the medians.
//   OMP_NUM_THREADS=2 build/benchmarks/revox_bench --benchmark_out=revox.json
//       --benchmark_out_format=json
// Thread count: OMP_NUM_THREADS (oneDNN's OpenMP runtime obeys it too).
#include <benchmark/benchmark.h>

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_common.hpp"
#include "revox/core/bfloat16.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"
#include "revox/ops/cpu/group_norm.hpp"
#include "revox/ops/instance_norm.hpp"
#include "revox/ops/cpu/max_pool3d.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/ops/cpu/upsample_trilinear.hpp"
#include "revox/optim/adam.hpp"

namespace revox::bench {

// ---- machine limits ------------------------------------------------------------------------

MachineLimits& machine_limits() {
  static MachineLimits limits;
  return limits;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// a = b + s * c over arrays far larger than the last-level cache, every thread streaming its
// own static share; best of 10 passes, counted as STREAM counts it (12 bytes per element).
double measure_triad() {
  const index_t count = index_t{1} << 25;  // 128 MiB per array
  std::unique_ptr<float[]> a(new float[static_cast<std::size_t>(count)]);
  std::unique_ptr<float[]> b(new float[static_cast<std::size_t>(count)]);
  std::unique_ptr<float[]> c(new float[static_cast<std::size_t>(count)]);
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < count; ++i) {
    pa[i] = 0.0f;
    pb[i] = 1.0f;
    pc[i] = 2.0f;
  }
  const float s = 3.0f;
  double best = 1e30;
  for (int pass = 0; pass < 10; ++pass) {
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < count; ++i) pa[i] = pb[i] + s * pc[i];
    best = std::min(best, seconds_since(start));
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
  }
  return 12.0 * static_cast<double>(count) / best;
}

// The widest vector the compiler targets; the FMA loop keeps enough independent chains in
// registers to cover the FMA latency on two pipes.
#if defined(__AVX512F__)
constexpr int kPeakLanes = 16;
constexpr int kPeakChains = 16;
#elif defined(__AVX__)
constexpr int kPeakLanes = 8;
constexpr int kPeakChains = 10;
#else
constexpr int kPeakLanes = 4;
constexpr int kPeakChains = 10;
#endif
typedef float PeakVec __attribute__((vector_size(kPeakLanes * sizeof(float))));

double measure_fma_peak() {
  const long iterations = 20'000'000;
  double best = 1e30;
  float sink = 0.0f;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
    {
      PeakVec acc[kPeakChains];
      PeakVec mul;
      PeakVec add;
      for (int l = 0; l < kPeakLanes; ++l) {
        mul[l] = 0.999999f;
        add[l] = 1e-7f;
      }
      for (int k = 0; k < kPeakChains; ++k) {
        for (int l = 0; l < kPeakLanes; ++l) acc[k][l] = static_cast<float>(k + l);
      }
      // The multiplier and addend come through an opaque asm so the loop cannot be folded.
      asm volatile("" : "+x"(mul), "+x"(add));
      for (long it = 0; it < iterations; ++it) {
        for (int k = 0; k < kPeakChains; ++k) acc[k] = acc[k] * mul + add;
      }
      for (int k = 0; k < kPeakChains; ++k) {
        for (int l = 0; l < kPeakLanes; ++l) sink += acc[k][l];
      }
    }
    best = std::min(best, seconds_since(start));
  }
  benchmark::DoNotOptimize(sink);
  const int threads = omp_get_max_threads();
  return 2.0 * kPeakLanes * kPeakChains * static_cast<double>(iterations) * threads / best;
}

}  // namespace

MachineLimits measure_limits() {
  MachineLimits limits;
  limits.threads = omp_get_max_threads();
  limits.peak_flops_per_s = measure_fma_peak();
  limits.triad_bytes_per_s = measure_triad();
  return limits;
}

namespace {

// ---- helpers -------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

Tensor<float> random_tensor(Shape5 shape, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor<float> t(shape);
  fill_uniform(t.data(), t.numel(), seed, lo, hi);
  return t;
}

std::vector<float> random_vector(index_t count, std::uint64_t seed, float scale) {
  std::vector<float> v(static_cast<std::size_t>(count));
  fill_uniform(v.data(), count, seed, -scale, scale);
  return v;
}

void keep(const Tensor<float>& t) {
  benchmark::DoNotOptimize(t.data());
  benchmark::ClobberMemory();
}

// Every row (each repetition) starts from an empty CPU pool: blocks cached by earlier rows
// (other shapes) would otherwise stay reserved beside this row's and change what the row
// measures (page faults on memory the process never touched before; measured on this
// machine: the MBConv block at (30,128) took 8-9 s after the other block rows and 3 s
// alone). timed_loop's warm-up call then fills the pool with the row's own blocks, so the
// timed iterations run as the steps of a training loop do.
benchmark::internal::Benchmark* add_row(const std::string& name,
                                        std::function<void(benchmark::State&)> fn) {
  auto row = [fn](benchmark::State& state) {
    cpu_allocator().release_cached();
    fn(state);
  };
  return benchmark::RegisterBenchmark(name.c_str(), row)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

// ---- depthwise 3x3x3 (work models in bench_common.hpp) ----------------------------------

void depthwise_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const std::vector<float> weight = random_vector(27 * s.c, 2, 0.2f);
  Tensor<float> y(s);
  timed_loop(state, depthwise_work(s, false), [&] {
    ops::DepthwiseConv3dKernels<Cpu>::depthwise_conv3d_forward<float>(Cpu{}, x.cview(), weight.data(), nullptr, y.view());
    keep(y);
  });
}

void depthwise_backward_data(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> dy = random_tensor(s, 3);
  const std::vector<float> weight = random_vector(27 * s.c, 2, 0.2f);
  Tensor<float> dx(s);
  timed_loop(state, depthwise_work(s, false), [&] {
    ops::DepthwiseConv3dKernels<Cpu>::depthwise_conv3d_backward_data<float>(Cpu{}, dy.cview(), weight.data(), dx.view());
    keep(dx);
  });
}

void depthwise_backward_weight(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  std::vector<float> dweight(static_cast<std::size_t>(27 * s.c), 0.0f);
  timed_loop(state, depthwise_work(s, false), [&] {
    ops::DepthwiseConv3dKernels<Cpu>::depthwise_conv3d_backward_weight<float>(Cpu{}, x.cview(), dy.cview(), dweight.data(), nullptr);
    benchmark::DoNotOptimize(dweight.data());
  });
}

void depthwise_backward_fused(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  const std::vector<float> weight = random_vector(27 * s.c, 2, 0.2f);
  std::vector<float> dweight(static_cast<std::size_t>(27 * s.c), 0.0f);
  Tensor<float> dx(s);
  timed_loop(state, depthwise_work(s, true), [&] {
    ops::DepthwiseConv3dKernels<Cpu>::depthwise_conv3d_backward<float>(Cpu{}, x.cview(), dy.cview(), weight.data(), dx.view(),
                                          dweight.data(), nullptr);
    keep(dx);
  });
}

// ---- pointwise 1x1x1, C -> 2C (an MBConv expansion) --------------------------------------

// Activations of type T: float, or bfloat16 (rounded from the same float values), with float
// weights either way. bfloat16 rows count 2 bytes per activation element.
template <class T>
Tensor<T> random_activation(Shape5 shape, std::uint64_t seed) {
  Tensor<float> t = random_tensor(shape, seed);
  if constexpr (std::is_same_v<T, float>) {
    return t;
  } else {
    Tensor<T> out(shape);
    to_bfloat16(t.data(), out.data(), t.numel());
    return out;
  }
}

template <class T>
Work activation_work(Work w) {
  if constexpr (!std::is_same_v<T, float>) w.bytes *= static_cast<double>(sizeof(T)) / 4.0;
  return w;
}

template <class T>
void keep_any(const Tensor<T>& t) {
  benchmark::DoNotOptimize(t.data());
  benchmark::ClobberMemory();
}

template <class T>
void pointwise_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 xs = bs.shape();
  const Shape5 ys = xs.with_channels(2 * xs.c);
  const Tensor<T> x = random_activation<T>(xs, 1);
  const std::vector<float> weight = random_vector(xs.c * ys.c, 2, 0.2f);
  Tensor<T> y(ys);
  timed_loop(state, activation_work<T>(pointwise_work(xs, ys.c)), [&] {
    ops::PointwiseConv3dKernels<Cpu>::pointwise_conv3d_forward<T>(Cpu{}, x.cview(), weight.data(), nullptr, y.view());
    keep_any(y);
  });
}

template <class T>
void pointwise_backward_data(benchmark::State& state, BenchShape bs) {
  const Shape5 xs = bs.shape();
  const Shape5 ys = xs.with_channels(2 * xs.c);
  const Tensor<T> dy = random_activation<T>(ys, 3);
  const std::vector<float> weight = random_vector(xs.c * ys.c, 2, 0.2f);
  Tensor<T> dx(xs);
  timed_loop(state, activation_work<T>(pointwise_work(xs, ys.c)), [&] {
    ops::PointwiseConv3dKernels<Cpu>::pointwise_conv3d_backward_data<T>(Cpu{}, dy.cview(), weight.data(), dx.view());
    keep_any(dx);
  });
}

template <class T>
void pointwise_backward_weight(benchmark::State& state, BenchShape bs) {
  const Shape5 xs = bs.shape();
  const Shape5 ys = xs.with_channels(2 * xs.c);
  const Tensor<T> x = random_activation<T>(xs, 1);
  const Tensor<T> dy = random_activation<T>(ys, 3);
  std::vector<float> dweight(static_cast<std::size_t>(xs.c * ys.c), 0.0f);
  timed_loop(state, activation_work<T>(pointwise_work(xs, ys.c)), [&] {
    ops::PointwiseConv3dKernels<Cpu>::pointwise_conv3d_backward_weight<T>(Cpu{}, x.cview(), dy.cview(), dweight.data(), nullptr);
    benchmark::DoNotOptimize(dweight.data());
  });
}

// ---- dense 3x3x3, C -> C -------------------------------------------------------------------

void dense_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const std::vector<float> weight = random_vector(27 * s.c * s.c, 2, 0.05f);
  Tensor<float> y(s);
  timed_loop(state, dense_work(s), [&] {
    ops::Conv3dKernels<Cpu>::conv3d_forward<float>(Cpu{}, x.cview(), weight.data(), nullptr, y.view(), 3);
    keep(y);
  });
}

void dense_backward_data(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> dy = random_tensor(s, 3);
  const std::vector<float> weight = random_vector(27 * s.c * s.c, 2, 0.05f);
  Tensor<float> dx(s);
  timed_loop(state, dense_work(s), [&] {
    ops::Conv3dKernels<Cpu>::conv3d_backward_data<float>(Cpu{}, dy.cview(), weight.data(), dx.view(), 3);
    keep(dx);
  });
}

void dense_backward_weight(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  std::vector<float> dweight(static_cast<std::size_t>(27 * s.c * s.c), 0.0f);
  timed_loop(state, dense_work(s), [&] {
    ops::Conv3dKernels<Cpu>::conv3d_backward_weight<float>(Cpu{}, x.cview(), dy.cview(), dweight.data(), nullptr, 3);
    benchmark::DoNotOptimize(dweight.data());
  });
}

// ---- GroupNorm -----------------------------------------------------------------------------
// Bytes are what the op must move: forward reads x twice (statistics, then normalise) and
// writes y (12 E); backward reads x and dy twice and writes dx (20 E). FLOPs: 4 E and 8 E.

void group_norm_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const index_t groups = bench_groups(s.c);
  const Tensor<float> x = random_tensor(s, 1);
  const std::vector<float> gamma = random_vector(s.c, 4, 1.0f);
  const std::vector<float> beta = random_vector(s.c, 5, 1.0f);
  std::vector<double> mean(static_cast<std::size_t>(groups)), rstd(mean.size());
  Tensor<float> y(s);
  const double e = static_cast<double>(s.numel());
  timed_loop(state, {4.0 * e, 12.0 * e}, [&] {
    revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward<float>(revox::Cpu{}, x.cview(), groups, 1e-5, gamma.data(), beta.data(), y.view(),
                                   mean.data(), rstd.data());
    keep(y);
  });
}

void group_norm_backward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const index_t groups = bench_groups(s.c);
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  const std::vector<float> gamma = random_vector(s.c, 4, 1.0f);
  const std::vector<float> beta = random_vector(s.c, 5, 1.0f);
  std::vector<double> mean(static_cast<std::size_t>(groups)), rstd(mean.size());
  std::vector<float> dgamma(static_cast<std::size_t>(s.c), 0.0f), dbeta(dgamma.size(), 0.0f);
  {
    Tensor<float> y(s);
    revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward<float>(revox::Cpu{}, x.cview(), groups, 1e-5, gamma.data(), beta.data(), y.view(),
                                   mean.data(), rstd.data());
  }
  Tensor<float> dx(s);
  const double e = static_cast<double>(s.numel());
  timed_loop(state, {8.0 * e, 20.0 * e}, [&] {
    revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward<float>(revox::Cpu{}, x.cview(), dy.cview(), groups, mean.data(), rstd.data(),
                                    gamma.data(), dx.view(), dgamma.data(), dbeta.data());
    keep(dx);
  });
}

// ---- InstanceNorm3d (affine) -------------------------------------------------------------
// The same traffic and FLOPs as GroupNorm: per (n, c) plane the statistics read x once, then
// y is written from a second read (12 E); backward reads x and dy twice and writes dx (20 E).

void instance_norm_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const std::vector<float> weight = random_vector(s.c, 4, 1.0f);
  const std::vector<float> bias = random_vector(s.c, 5, 1.0f);
  std::vector<double> mean(static_cast<std::size_t>(s.n * s.c)), rstd(mean.size());
  Tensor<float> y(s);
  const double e = static_cast<double>(s.numel());
  timed_loop(state, {4.0 * e, 12.0 * e}, [&] {
    ops::instance_norm_forward(Cpu{}, x.cview(), weight.data(), bias.data(), 1e-5, y.view(),
                               mean.data(), rstd.data());
    keep(y);
  });
}

void instance_norm_backward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  const std::vector<float> weight = random_vector(s.c, 4, 1.0f);
  const std::vector<float> bias = random_vector(s.c, 5, 1.0f);
  std::vector<double> mean(static_cast<std::size_t>(s.n * s.c)), rstd(mean.size());
  std::vector<float> dweight(static_cast<std::size_t>(s.c), 0.0f), dbias(dweight.size(), 0.0f);
  {
    Tensor<float> y(s);
    ops::instance_norm_forward(Cpu{}, x.cview(), weight.data(), bias.data(), 1e-5, y.view(),
                               mean.data(), rstd.data());
  }
  Tensor<float> dx(s);
  const double e = static_cast<double>(s.numel());
  timed_loop(state, {8.0 * e, 20.0 * e}, [&] {
    ops::instance_norm_backward(Cpu{}, x.cview(), dy.cview(), weight.data(), mean.data(),
                                rstd.data(), dx.view(), dweight.data(), dbias.data());
    keep(dx);
  });
}

// ---- MaxPool3d 2x2x2 (x at the benchmark shape) -----------------------------------------

void max_pool_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Shape5 ys{s.n, s.c, s.d / 2, s.h / 2, s.w / 2};
  const Tensor<float> x = random_tensor(s, 1);
  Tensor<float> y(ys);
  Tensor<std::uint8_t> argmax(ys);
  timed_loop(state, max_pool_work(s), [&] {
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d<float>(revox::Cpu{}, x.cview(), y.view(), argmax.view());
    keep(y);
  });
}

void max_pool_backward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Shape5 ys{s.n, s.c, s.d / 2, s.h / 2, s.w / 2};
  const Tensor<float> x = random_tensor(s, 1);
  Tensor<float> y(ys);
  Tensor<std::uint8_t> argmax(ys);
  revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d<float>(revox::Cpu{}, x.cview(), y.view(), argmax.view());
  const Tensor<float> dy = random_tensor(ys, 3);
  Tensor<float> dx(s);
  timed_loop(state, max_pool_work(s), [&] {
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward<float>(revox::Cpu{}, dy.cview(), argmax.cview(), dx.view());
    keep(dx);
  });
}

// ---- trilinear x2 upsampling (y at the benchmark shape, x at half its extent) -------------

void upsample_forward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Shape5 xs{s.n, s.c, s.d / 2, s.h / 2, s.w / 2};
  const Tensor<float> x = random_tensor(xs, 1);
  Tensor<float> y(s);
  timed_loop(state, upsample_work(s), [&] {
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear<float>(revox::Cpu{}, x.cview(), y.view());
    keep(y);
  });
}

void upsample_backward(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const Shape5 xs{s.n, s.c, s.d / 2, s.h / 2, s.w / 2};
  const Tensor<float> dy = random_tensor(s, 3);
  Tensor<float> dx(xs);
  timed_loop(state, upsample_work(s), [&] {
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward<float>(revox::Cpu{}, dy.cview(), dx.view());
    keep(dx);
  });
}

// ---- blocks and models ---------------------------------------------------------------------
// FLOPs of the convolutions only (pointwise and depthwise), forward + backward; bytes are not
// modelled for whole blocks, so "roofline" is the fraction of FMA peak.

double mbconv_flops(index_t in, index_t out, index_t expand, index_t spatial) {
  const double sp = static_cast<double>(spatial);
  const double hidden = static_cast<double>(in * expand);
  double fwd = 54.0 * hidden * sp + 2.0 * hidden * static_cast<double>(out) * sp;
  if (expand > 1) fwd += 2.0 * static_cast<double>(in) * hidden * sp;
  return 3.0 * fwd;  // backward = data + weight, each as costly as forward
}

void mbconv_block(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  MBConv<float> block(s.c, s.c, 2, bench_groups(s.c));
  Parameters<float> params(block);
  Rng rng(7);
  block.reset_parameters(rng);
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  Tensor<float> y(s);
  Tensor<float> dx(s);
  const Cpu dev;
  timed_loop(state, {mbconv_flops(s.c, s.c, 2, s.spatial()), 0.0}, [&] {
    MBConv<float>::Saved<Cpu> saved;
    block.forward(dev, x.cview(), y.view(), &saved);
    block.backward(dev, saved, dy.cview(), dx.view());
    keep(dx);
  });
}

// ReversibleBlock<MBConv, MBConv> on C channels (F and G on C/2, expand 2): forward without
// saved activations, then backward (rebuilding the input and re-running F and G).
void reversible_block(benchmark::State& state, BenchShape bs) {
  const Shape5 s = bs.shape();
  const index_t half = s.c / 2;
  const index_t groups = bench_groups(half);
  using Block = ReversibleBlock<MBConv<float>, MBConv<float>>;
  Block block(MBConv<float>(half, half, 2, groups), MBConv<float>(half, half, 2, groups));
  Parameters<float> params(block);
  Rng rng(8);
  block.reset_parameters(rng);
  const Tensor<float> x = random_tensor(s, 1);
  const Tensor<float> dy = random_tensor(s, 3);
  Tensor<float> y(s);
  Tensor<float> dx(s);
  const Cpu dev;
  // F and G forward twice (forward, then the rebuild) and backward once.
  const double one = mbconv_flops(half, half, 2, s.spatial());
  timed_loop(state, {2.0 * (one + one / 3.0), 0.0}, [&] {
    Block::Saved<Cpu> saved;
    block.forward(dev, x.cview(), y.view(), &saved);
    block.backward(dev, saved, dy.cview(), dx.view());
    keep(dx);
  });
}

// One training step: forward with saved, soft Dice loss, backward, Adam.
void unet_step(benchmark::State& state, const std::string& preset, index_t extent) {
  UNetConfig config = unet_preset(preset);
  UNet<float> net(config);
  Parameters<float> params(net);
  Rng rng(9);
  net.reset_parameters(rng);
  optim::Adam<float> adam(params, optim::AdamOptions{1e-3});
  const Shape5 xs{1, config.in_channels, extent, extent, extent};
  const Shape5 ys = net.output_shape(xs);
  const Tensor<float> x = random_tensor(xs, 1);
  Tensor<float> target = random_tensor(ys, 10, 0.0f, 1.0f);
  for (index_t i = 0; i < target.numel(); ++i) target[i] = target[i] < 0.3f ? 1.0f : 0.0f;
  Tensor<float> logits(ys);
  Tensor<float> dlogits(ys);
  Tensor<float> dx;
  const Cpu dev;
  timed_loop(state, {}, [&] {
    UNet<float>::Saved<Cpu> saved;
    net.forward(dev, x.cview(), logits.view(), &saved);
    const double loss = losses::soft_dice_loss(logits.cview(), target.cview(), dlogits.view());
    benchmark::DoNotOptimize(loss);
    params.zero_grad();
    net.backward(dev, saved, dlogits.cview(), dx.view());
    adam.step();
  });
}

void register_revox_benchmarks() {
  struct Op {
    const char* name;
    void (*fn)(benchmark::State&, BenchShape);
  };
  const Op ops[] = {
      {"depthwise_fwd", depthwise_forward},
      {"depthwise_bwd_data", depthwise_backward_data},
      {"depthwise_bwd_weight", depthwise_backward_weight},
      {"depthwise_bwd_fused", depthwise_backward_fused},
      {"pointwise_fwd", pointwise_forward<float>},
      {"pointwise_bwd_data", pointwise_backward_data<float>},
      {"pointwise_bwd_weight", pointwise_backward_weight<float>},
      {"pointwise_fwd_bf16", pointwise_forward<bfloat16>},
      {"pointwise_bwd_data_bf16", pointwise_backward_data<bfloat16>},
      {"pointwise_bwd_weight_bf16", pointwise_backward_weight<bfloat16>},
      {"conv3x3_fwd", dense_forward},
      {"conv3x3_bwd_data", dense_backward_data},
      {"conv3x3_bwd_weight", dense_backward_weight},
      {"groupnorm_fwd", group_norm_forward},
      {"groupnorm_bwd", group_norm_backward},
      {"instancenorm_fwd", instance_norm_forward},
      {"instancenorm_bwd", instance_norm_backward},
      {"maxpool_fwd", max_pool_forward},
      {"maxpool_bwd", max_pool_backward},
      {"upsample_fwd", upsample_forward},
      {"upsample_bwd", upsample_backward},
      {"mbconv_block_fwd_bwd", mbconv_block},
      {"reversible_block_fwd_bwd", reversible_block},
  };
  for (const Op& op : ops) {
    for (const BenchShape& bs : bench_shapes()) {
      const auto fn = op.fn;
      add_row(std::string("revox/") + op.name + "/" + bs.name(),
              [fn, bs](benchmark::State& state) { fn(state, bs); });
    }
  }
  add_row("revox/unet_train_step/small_D32",
          [](benchmark::State& state) { unet_step(state, "small", 32); });
  add_row("revox/unet_train_step/mbconv-base_D128",
          [](benchmark::State& state) { unet_step(state, "mbconv-base", 128); })
      ->Iterations(1);
}

bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) return true;
  }
  return false;
}

}  // namespace
}  // namespace revox::bench

int main(int argc, char** argv) {
  using namespace revox::bench;
  // Defaults: 5 repetitions, aggregates only (the median is the figure to quote).
  std::vector<char*> args(argv, argv + argc);
  static char repetitions[] = "--benchmark_repetitions=5";
  static char aggregates[] = "--benchmark_report_aggregates_only=true";
  if (!has_flag(argc, argv, "--benchmark_repetitions")) args.push_back(repetitions);
  if (!has_flag(argc, argv, "--benchmark_report_aggregates_only") &&
      !has_flag(argc, argv, "--benchmark_display_aggregates_only")) {
    args.push_back(aggregates);
  }
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;

  MachineLimits& limits = machine_limits();
  limits = measure_limits();
  std::printf("revox_bench: %d threads; triad bandwidth %.1f GB/s; FMA peak %.1f GFLOP/s; "
              "ridge %.2f FLOP/byte\n",
              limits.threads, limits.triad_bytes_per_s * 1e-9, limits.peak_flops_per_s * 1e-9,
              limits.peak_flops_per_s / limits.triad_bytes_per_s);
  std::fflush(stdout);
  benchmark::AddCustomContext("triad_GBps", std::to_string(limits.triad_bytes_per_s * 1e-9));
  benchmark::AddCustomContext("fma_peak_GFLOPps", std::to_string(limits.peak_flops_per_s * 1e-9));
  benchmark::AddCustomContext("omp_threads", std::to_string(limits.threads));

  register_revox_benchmarks();
  register_onednn_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
