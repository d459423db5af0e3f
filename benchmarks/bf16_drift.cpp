// bf16_drift — how far a chain of reversible MBConv blocks drifts when its coupled halves are
// stored in bfloat16 instead of float32: the input each block's backward rebuilds, and the
// gradients, against a float64 reference of the same network, through 1 to 64 blocks.
//
// A reversible block keeps only its output; backward rebuilds the input from it
// (x1 = y1 - F(x2) after x2 = y2 - G(y1)), so an error in a stored output passes into the
// rebuilt input, then into the next block's rebuild, and so on down the chain. Three ways
// are run with the same parameters (PyTorch's initialisation, seed fixed) and input:
//   float64   the reference: every block in double;
//   float32   revox's float32 blocks, halves stored in float32 (the default today);
//   bf16      the same float32 blocks, but every stored tensor is rounded to bfloat16 where a
//             bf16 run stores it: each block's output after forward, the gradient handed to
//             each block, and the input each block rebuilds and its input gradient after
//             backward. F and G compute in float32 here; in a bf16 run they compute from the
//             same bf16 halves in forward and in the rebuild, so their own rounding cancels in
//             x1 = y1 - F(x2) and what drifts is the storage measured here.
// Reported per chain length: the rebuilt input of the first block against the true one
// (relative L2 and largest absolute error), the worst such error at any block boundary, the
// input gradient and the parameter gradients against float64 (relative L2), and the bytes
// the chain keeps for its halves. The run fails (exit 1) if the float64 chain does not rebuild
// its own input to 1e-9, which would mean this driver chains the blocks wrongly; ctest runs a
// small case of it.
//
//   build/benchmarks/bf16_drift [--channels 32] [--extent 16] [--max-blocks 64]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "revox/core/bfloat16.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/reversible.hpp"

namespace {

using revox::index_t;
using revox::Shape5;
using revox::Tensor;

template <class T>
using Block = revox::ReversibleBlock<revox::MBConv<T>, revox::MBConv<T>>;

template <class T>
struct Chain {
  std::vector<std::unique_ptr<Block<T>>> blocks;
  std::vector<revox::Parameters<T>> params;
};

template <class T>
Chain<T> make_chain(index_t blocks, index_t half, index_t groups) {
  Chain<T> chain;
  for (index_t i = 0; i < blocks; ++i) {
    chain.blocks.push_back(std::make_unique<Block<T>>(revox::MBConv<T>(half, half, 2, groups),
                                                      revox::MBConv<T>(half, half, 2, groups)));
    chain.params.emplace_back(*chain.blocks.back());
  }
  return chain;
}

double rel_l2(const double* a, const double* ref, index_t n) {
  double num = 0.0, den = 0.0;
  for (index_t i = 0; i < n; ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

template <class T>
std::vector<double> as_doubles(const T* p, index_t n) {
  std::vector<double> out(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<double>(p[i]);
  return out;
}

void round_to_bf16(revox::TensorView<float> t) {
  for (index_t i = 0; i < t.numel(); ++i) {
    t[i] = static_cast<float>(revox::bfloat16(t[i]));
  }
}

struct Result {
  double rebuild_rel = 0.0;   // first block's rebuilt input, relative L2
  double rebuild_max = 0.0;   // ... largest absolute error
  double worst_boundary = 0.0;  // worst relative L2 over every block boundary
  double dx_rel = 0.0;
  double dparam_rel = 0.0;
  std::vector<double> dx, dparam;  // the gradients themselves
};

// Forward through the chain keeping every block boundary, then backward block by block the
// way a reversible chain runs it: each block rebuilds its input from the output the block
// after it rebuilt. `bf16` rounds every stored tensor as a bf16 run stores it.
template <class T>
Result run(Chain<T>& chain, const Tensor<double>& x0, const Tensor<double>& dy0,
           const std::vector<double>& dx_ref, const std::vector<double>& dparam_ref, bool bf16) {
  const revox::Cpu dev;
  const index_t blocks = static_cast<index_t>(chain.blocks.size());
  const Shape5 s = x0.shape();
  std::vector<Tensor<T>> act;
  for (index_t i = 0; i <= blocks; ++i) act.emplace_back(s);
  for (index_t i = 0; i < x0.numel(); ++i) act[0][i] = static_cast<T>(x0[i]);
  if constexpr (std::is_same_v<T, float>) {
    if (bf16) round_to_bf16(act[0].view());
  }
  std::vector<typename Block<T>::template Saved<revox::Cpu>> saved(static_cast<std::size_t>(blocks));
  for (index_t i = 0; i < blocks; ++i) {
    chain.blocks[static_cast<std::size_t>(i)]->forward(dev, act[i].cview(), act[i + 1].view(),
                                                        &saved[static_cast<std::size_t>(i)]);
    if constexpr (std::is_same_v<T, float>) {
      if (bf16) round_to_bf16(act[i + 1].view());
    }
  }
  // The true boundaries (as stored), to measure each rebuild against.
  std::vector<std::vector<double>> truth;
  for (index_t i = 0; i <= blocks; ++i) truth.push_back(as_doubles(act[i].data(), s.numel()));

  Tensor<T> dy(s), dx(s), rebuilt(s);
  for (index_t i = 0; i < s.numel(); ++i) dy[i] = static_cast<T>(dy0[i]);
  if constexpr (std::is_same_v<T, float>) {
    if (bf16) round_to_bf16(dy.view());
  }
  for (auto& p : chain.params) p.zero_grad();
  Result r;
  // rebuilt holds the output of block i as the block after it rebuilt it (the stored output
  // for the last block).
  std::copy(act[blocks].data(), act[blocks].data() + s.numel(), rebuilt.data());
  for (index_t i = blocks - 1; i >= 0; --i) {
    T* y = act[i + 1].data();  // block i's saved output view points here
    std::copy(rebuilt.data(), rebuilt.data() + s.numel(), y);
    chain.blocks[static_cast<std::size_t>(i)]->backward(dev, saved[static_cast<std::size_t>(i)],
                                                         dy.cview(), dx.view());
    // y now holds block i's rebuilt input.
    if constexpr (std::is_same_v<T, float>) {
      if (bf16) {
        round_to_bf16(act[i + 1].view());
        round_to_bf16(dx.view());
      }
    }
    const std::vector<double> got = as_doubles(y, s.numel());
    r.worst_boundary = std::max(r.worst_boundary,
                                rel_l2(got.data(), truth[static_cast<std::size_t>(i)].data(),
                                       s.numel()));
    std::copy(y, y + s.numel(), rebuilt.data());
    std::swap(dy, dx);
  }
  const std::vector<double> x_rebuilt = as_doubles(rebuilt.data(), s.numel());
  r.rebuild_rel = rel_l2(x_rebuilt.data(), truth[0].data(), s.numel());
  for (index_t i = 0; i < s.numel(); ++i) {
    r.rebuild_max = std::max(r.rebuild_max, std::abs(x_rebuilt[static_cast<std::size_t>(i)] -
                                                     truth[0][static_cast<std::size_t>(i)]));
  }
  r.dx = as_doubles(dy.data(), s.numel());  // dy and dx were swapped after the last block
  for (auto& p : chain.params) {
    const std::vector<double> g = as_doubles(p.grads().data, p.grads().numel());
    r.dparam.insert(r.dparam.end(), g.begin(), g.end());
  }
  if (!dx_ref.empty()) {
    r.dx_rel = rel_l2(r.dx.data(), dx_ref.data(), s.numel());
    r.dparam_rel = rel_l2(r.dparam.data(), dparam_ref.data(),
                          static_cast<index_t>(r.dparam.size()));
  }
  return r;
}

index_t flag(int argc, char** argv, const char* name, index_t fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::puts("usage: bf16_drift [--channels C] [--extent E] [--max-blocks B]\n"
                "  chains of 1, 2, 4, ... B reversible MBConv blocks (C channels, halves of C/2,\n"
                "  expand 2, GroupNorm 4 groups) at (1, C, E, E, E): rebuild and gradient error\n"
                "  of float32 and bfloat16 storage against float64. Defaults 32, 16, 64.");
      return 0;
    }
    if (a != "--channels" && a != "--extent" && a != "--max-blocks") {
      std::fprintf(stderr, "bf16_drift: unknown argument '%s' (see --help)\n", argv[i]);
      return 2;
    }
    ++i;
  }
  const index_t channels = flag(argc, argv, "--channels", 32);
  const index_t extent = flag(argc, argv, "--extent", 16);
  const index_t max_blocks = flag(argc, argv, "--max-blocks", 64);
  if (channels < 2 || channels % 8 != 0 || extent < 1 || max_blocks < 1) {
    std::fprintf(stderr, "bf16_drift: need channels a positive multiple of 8, extent >= 1, "
                         "max-blocks >= 1\n");
    return 2;
  }
  const index_t half = channels / 2;
  const index_t groups = 4;
  const Shape5 s{1, channels, extent, extent, extent};
  std::printf("bf16_drift: reversible MBConv blocks, halves of %ld channels, expand 2, "
              "GroupNorm %ld groups, input (1, %ld, %ld, %ld, %ld), uniform(-1, 1), seed 5\n",
              static_cast<long>(half), static_cast<long>(groups), static_cast<long>(channels),
              static_cast<long>(extent), static_cast<long>(extent), static_cast<long>(extent));
  std::printf("%6s  %-8s  %12s  %12s  %14s  %10s  %12s  %14s\n", "blocks", "storage",
              "rebuild relL2", "rebuild max", "worst boundary", "dx relL2", "dparam relL2",
              "halves bytes");
  Tensor<double> x(s), dy(s);
  revox::Rng data_rng(5);
  revox::fill_uniform(x.view(), data_rng, -1.0, 1.0);
  revox::fill_uniform(dy.view(), data_rng, -1.0, 1.0);
  for (index_t blocks = 1; blocks <= max_blocks; blocks *= 2) {
    Chain<double> ref = make_chain<double>(blocks, half, groups);
    Chain<float> f32 = make_chain<float>(blocks, half, groups);
    revox::Rng rng(11);
    for (index_t b = 0; b < blocks; ++b) {
      ref.blocks[static_cast<std::size_t>(b)]->reset_parameters(rng);
      const auto values = ref.params[static_cast<std::size_t>(b)].values();
      auto dst = f32.params[static_cast<std::size_t>(b)].values();
      for (index_t i = 0; i < values.numel(); ++i) dst[i] = static_cast<float>(values[i]);
    }
    // The float64 reference: its own rebuild is exact to ~1e-15, far below what is measured.
    const Result exact = run(ref, x, dy, {}, {}, false);
    const std::vector<double>& dx_ref = exact.dx;
    const std::vector<double>& dparam_ref = exact.dparam;
    // A check of this driver: in float64 the chain must rebuild its input to rounding.
    if (!(exact.worst_boundary < 1e-9)) {
      std::fprintf(stderr, "bf16_drift: the float64 chain of %ld blocks rebuilt its input "
                           "with relative error %.3e; expected below 1e-9\n",
                   static_cast<long>(blocks), exact.worst_boundary);
      return 1;
    }
    std::printf("%6ld  %-8s  %12.3e  %12.3e  %14.3e  %10s  %12s  %14ld\n",
                static_cast<long>(blocks), "float64", exact.rebuild_rel, exact.rebuild_max,
                exact.worst_boundary, "-", "-", static_cast<long>(8 * s.numel()));
    for (const bool bf16 : {false, true}) {
      const Result r = run(f32, x, dy, dx_ref, dparam_ref, bf16);
      std::printf("%6ld  %-8s  %12.3e  %12.3e  %14.3e  %10.3e  %12.3e  %14ld\n",
                  static_cast<long>(blocks), bf16 ? "bf16" : "float32", r.rebuild_rel,
                  r.rebuild_max, r.worst_boundary, r.dx_rel, r.dparam_rel,
                  static_cast<long>((bf16 ? 2 : 4) * s.numel()));
      std::fflush(stdout);
    }
  }
  return 0;
}
