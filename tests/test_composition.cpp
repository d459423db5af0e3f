// Property test: random compositions of every layer and container are correct.
//
// A seeded generator builds networks at run time (nesting depth up to 3) from the library's
// layers (PointwiseConv3d, Conv3d, DepthwiseConv3d, GroupNorm, ReLU, ReLU6, LeakyReLU,
// MaxPool3d + UpsampleTrilinear, MBConv, ConvBlock) and containers (Sequential with
// reversible layers at its start, middle and end, ReversibleBlock with any F and G —
// reversible ones included — and ReversibleSequence), through the type-erased layer of
// tests/support/erased_layer.hpp. For each network, at batch 1 and 2 and odd extents:
//  * gradcheck: input and parameter gradients against central finite differences, outputs
//    and input gradients fully assigned, accumulation, no per-call state in members;
//  * the reversible network and its stored-activation twin (every ReversibleBlock with
//    store_activations) give the same output and the same gradients;
//  * the input x is untouched; a reversible network's backward rebuilds x in y;
//  * the tracking allocator holds exactly what it held before (no leak).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

#include "revox/core/parameters.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/composition_leaves.hpp"
#include "support/erased_layer.hpp"

using namespace revox;
using revox_test::Erased;
using revox_test::LayerKind;

namespace {

using revox_test::composition::erase;
using revox_test::composition::Keeps;
using revox_test::composition::Node;
using revox_test::composition::Plain;
using revox_test::composition::Rev;
using revox_test::composition::T;

// Any node seen as a (conservatively) output-keeping layer: one Erased type for the blocks of
// a ReversibleSequence, whatever each block's F and G are.
Keeps as_keeps(Node node) {
  return std::visit([](auto&& layer) { return Keeps::of(std::move(layer)); }, std::move(node));
}

struct Generator {
  Rng rng;
  bool stored;  // build every ReversibleBlock with store_activations (the twin)
  std::ostringstream text;
  // What the generated network contains (checked by the coverage test).
  bool rev_first = false, rev_middle = false, rev_last = false;  // in a Sequential
  bool keeps_in_sequential = false;  // a non-reversible layer that keeps its output
  bool rev_in_f_or_g = false, rev_sequence = false, pool = false;

  int pick(int n) { return static_cast<int>(rng.below(static_cast<std::uint64_t>(n))); }

  static index_t groups_for(index_t c) { return c % 2 == 0 ? 2 : 1; }

  // A layer mapping (c_in, d, h, w) to (c_out, d, h, w). `even`: d, h, w are all even and
  // at least 2, so a max-pool/upsample pair may be used.
  Node make(int depth, index_t c_in, index_t c_out, bool even, bool pool_ok) {
    const bool same = c_in == c_out;
    // Containers at depth > 0, leaves otherwise (and sometimes anyway).
    if (depth > 0 && pick(4) != 0) {
      const int choice = pick(same && c_in % 2 == 0 ? 5 : 2);
      if (choice <= 1) return make_sequential(depth, c_in, c_out, even, pool_ok);
      if (choice == 2 || choice == 3) return make_reversible_block(depth, c_in, even, pool_ok);
      return make_reversible_sequence(depth, c_in, even, pool_ok);
    }
    return make_leaf(c_in, c_out, even && pool_ok);
  }

  Node make_leaf(index_t c_in, index_t c_out, bool pool_ok) {
    if (c_in != c_out) {
      switch (pick(4)) {
        case 0: text << "Pointwise(" << c_in << "," << c_out << ")"; return erase(PointwiseConv3d<T>(c_in, c_out, pick(2) == 0));
        case 1: text << "Conv3d(" << c_in << "," << c_out << ")"; return erase(Conv3d<T>(c_in, c_out, 3, pick(2) == 0));
        case 2: {
          const index_t g = c_out % 2 == 0 && (c_in * 2) % 2 == 0 ? 2 : 1;
          text << "MBConv(" << c_in << "," << c_out << ",e2,g" << g << ")";
          return erase(MBConv<T>(c_in, c_out, 2, g));
        }
        default: text << "ConvBlock(" << c_in << "," << c_out << ")"; return erase(ConvBlock<T>(c_in, c_out, groups_for(c_out)));
      }
    }
    const index_t c = c_in;
    switch (pick(pool_ok ? 11 : 10)) {
      case 0: text << "GroupNorm(" << groups_for(c) << "," << c << ")"; return erase(GroupNorm<T>(groups_for(c), c));
      case 1: text << "ReLU"; return erase(ReLU<T>());
      case 2: text << "ReLU6"; return erase(ReLU6<T>());
      case 3: text << "LeakyReLU"; return erase(LeakyReLU<T>(0.1));
      case 4: text << "Depthwise(" << c << ")"; return erase(DepthwiseConv3d<T>(c, pick(2) == 0));
      case 5: text << "Pointwise(" << c << "," << c << ")"; return erase(PointwiseConv3d<T>(c, c, true));
      case 6: text << "Conv3d(" << c << "," << c << ")"; return erase(Conv3d<T>(c, c, 3, true));
      case 7: text << "MBConv(" << c << "," << c << ",e1)"; return erase(MBConv<T>(c, c, 1, groups_for(c)));
      case 8: text << "MBConv(" << c << "," << c << ",e2)"; return erase(MBConv<T>(c, c, 2, groups_for(c)));
      case 9: text << "ConvBlock(" << c << ")"; return erase(ConvBlock<T>(c, c, groups_for(c)));
      default: {
        text << "[MaxPool,Pointwise(" << c << "),Upsample]";
        pool = true;
        return erase(Sequential<MaxPool3d<T>, PointwiseConv3d<T>, UpsampleTrilinear<T>>(
            MaxPool3d<T>(), PointwiseConv3d<T>(c, c, true), UpsampleTrilinear<T>()));
      }
    }
  }

  Node make_sequential(int depth, index_t c_in, index_t c_out, bool even, bool pool_ok) {
    const int count = 1 + pick(3);
    std::vector<index_t> channels{c_in};
    for (int i = 1; i < count; ++i) channels.push_back(2 * (1 + pick(3)));
    channels.push_back(c_out);
    text << "Seq[";
    std::vector<Node> parts;
    for (int i = 0; i < count; ++i) {
      if (i > 0) text << ", ";
      parts.push_back(make(depth - 1, channels[static_cast<std::size_t>(i)],
                           channels[static_cast<std::size_t>(i) + 1], even, pool_ok));
    }
    text << "]";
    for (int i = 0; i < count; ++i) {
      const Node& part = parts[static_cast<std::size_t>(i)];
      if (std::holds_alternative<Rev>(part)) {
        rev_first = rev_first || i == 0;
        rev_last = rev_last || i + 1 == count;
        rev_middle = rev_middle || (i > 0 && i + 1 < count);
      }
      keeps_in_sequential = keeps_in_sequential || std::holds_alternative<Keeps>(part);
    }
    if (count == 1) {
      return std::visit([](auto&& a) { return erase(Sequential<std::decay_t<decltype(a)>>(std::move(a))); },
                        std::move(parts[0]));
    }
    if (count == 2) {
      return std::visit(
          [](auto&& a, auto&& b) {
            return erase(Sequential<std::decay_t<decltype(a)>, std::decay_t<decltype(b)>>(
                std::move(a), std::move(b)));
          },
          std::move(parts[0]), std::move(parts[1]));
    }
    return std::visit(
        [](auto&& a, auto&& b, auto&& c) {
          return erase(Sequential<std::decay_t<decltype(a)>, std::decay_t<decltype(b)>,
                                  std::decay_t<decltype(c)>>(std::move(a), std::move(b),
                                                             std::move(c)));
        },
        std::move(parts[0]), std::move(parts[1]), std::move(parts[2]));
  }

  Node make_reversible_block(int depth, index_t c, bool even, bool pool_ok) {
    const index_t half = c / 2;
    text << "RevBlock" << (stored ? "*" : "") << "{F=";
    Node f = make(depth - 1, half, half, even, pool_ok);
    text << ", G=";
    Node g = make(depth - 1, half, half, even, pool_ok);
    text << "}";
    rev_in_f_or_g = rev_in_f_or_g || std::holds_alternative<Rev>(f) ||
                    std::holds_alternative<Rev>(g);
    const bool store = stored;
    return std::visit(
        [store](auto&& f_layer, auto&& g_layer) {
          using F = std::decay_t<decltype(f_layer)>;
          using G = std::decay_t<decltype(g_layer)>;
          return erase(ReversibleBlock<F, G>(std::move(f_layer), std::move(g_layer), store));
        },
        std::move(f), std::move(g));
  }

  Node make_reversible_sequence(int depth, index_t c, bool even, bool pool_ok) {
    const int count = 1 + pick(3);
    text << "RevSeq[";
    rev_sequence = true;
    std::vector<ReversibleBlock<Keeps, Keeps>> blocks;
    for (int i = 0; i < count; ++i) {
      if (i > 0) text << ", ";
      text << "{F=";
      Keeps f = as_keeps(make(depth - 1, c / 2, c / 2, even, pool_ok));
      text << ", G=";
      Keeps g = as_keeps(make(depth - 1, c / 2, c / 2, even, pool_ok));
      text << "}";
      blocks.emplace_back(std::move(f), std::move(g), stored);
    }
    text << "]";
    return erase(ReversibleSequence<ReversibleBlock<Keeps, Keeps>>(std::move(blocks)));
  }
};

struct Case {
  Node net;
  std::string description;
  Generator coverage;
};

constexpr std::uint64_t kNetworks = 96;

struct CaseShape {
  Shape5 input;
  index_t out_channels;
  bool even;
};

CaseShape case_shape(std::uint64_t seed) {
  Rng rng(seed * 7919 + 1);
  const index_t n = 1 + static_cast<index_t>(rng.below(2));
  const index_t c_in = 2 * (1 + static_cast<index_t>(rng.below(3)));
  const bool even = rng.below(2) == 0;
  const Shape5 input = even ? Shape5{n, c_in, 4, 2, 6} : Shape5{n, c_in, 3, 5, 4};
  // Half the networks keep the channel count (so the top level may be reversible).
  const index_t c_out = rng.below(2) == 0 ? c_in : 2 * (1 + static_cast<index_t>(rng.below(3)));
  return {input, c_out, even};
}

Case make_case(std::uint64_t seed, bool stored) {
  const CaseShape s = case_shape(seed);
  Generator gen{Rng(seed), stored, {}};
  Node net = gen.make(3, s.input.c, s.out_channels, s.even, true);
  std::string text = gen.text.str();
  gen.text = std::ostringstream();
  return {std::move(net), std::move(text), std::move(gen)};
}

// The gradients of one forward/backward at x with upstream gradient g.
struct Step {
  Tensor<T> y;
  Tensor<T> dx;
  Tensor<T> grads;
  Tensor<T> y_after;  // y after backward (a reversible net rebuilds x there)
};

template <class L>
Step run_step(L& layer, Parameters<T>& params, const Tensor<T>& x, const Tensor<T>& g) {
  Step step;
  params.zero_grad();
  step.y = Tensor<T>(layer.output_shape(x.shape()));
  step.dx = Tensor<T>(x.shape());
  {
    saved_t<L, Cpu> saved{};
    layer.forward(Cpu{}, x.cview(), step.y.view(), &saved);
    Tensor<T> y_copy = step.y.clone();
    layer.backward(Cpu{}, saved, g.cview(), step.dx.view());
    step.y_after = step.y.clone();
    step.y = std::move(y_copy);
  }
  step.grads = Tensor<T>(params.grads().shape);
  if (step.grads.bytes() > 0) std::memcpy(step.grads.data(), params.grads().data, step.grads.bytes());
  return step;
}

double max_rel_diff(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0.0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(a[i] - b[i]) / (1.0 + std::max(std::abs(a[i]), std::abs(b[i])));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

void check_case(std::uint64_t seed) {
  const std::size_t bytes_before = cpu_allocator().current_bytes();
  {
    Case reversible = make_case(seed, false);
    Case stored = make_case(seed, true);
    const CaseShape s = case_shape(seed);
    INFO("seed " << seed << ", input " << s.input << ": " << reversible.description);
    std::visit(
        [&](auto& net, auto& twin) {
          using L = std::decay_t<decltype(net)>;
          using LT = std::decay_t<decltype(twin)>;
          if constexpr (!std::is_same_v<L, LT>) {
            FAIL("the stored twin has another kind than the network");
          } else {
            Parameters<T> params(net);
            Parameters<T> twin_params(twin);
            REQUIRE(params.entries().size() == twin_params.entries().size());

            testing::GradcheckOptions options;
            options.seed = seed;
            options.max_checks_per_tensor = 4;
            options.rtol = 1e-5;
            options.atol = 1e-6;
            const testing::GradcheckResult result = testing::gradcheck(net, params, s.input, options);
            INFO(result.report);
            CHECK(result.passed);

            // The twin gets gradcheck's (randomized) parameters.
            REQUIRE(params.values().shape == twin_params.values().shape);
            if (params.values().numel() > 0) {  // (a network may have no parameters)
              std::memcpy(twin_params.values().data, params.values().data,
                          static_cast<std::size_t>(params.values().numel()) * sizeof(T));
            }
            Rng rng(seed + 17);
            Tensor<T> x(s.input);
            fill_uniform(x.view(), rng, -1.0, 1.0);
            const Tensor<T> x_copy = x.clone();
            Tensor<T> g(net.output_shape(s.input));
            fill_uniform(g.view(), rng, -1.0, 1.0);
            const Step a = run_step(net, params, x, g);
            const Step b = run_step(twin, twin_params, x, g);
            CHECK(std::memcmp(x.data(), x_copy.data(), x.bytes()) == 0);
            CHECK(max_rel_diff(a.y, b.y) == 0.0);  // same function, same arithmetic
            CHECK(max_rel_diff(a.dx, b.dx) < 1e-9);
            CHECK(max_rel_diff(a.grads, b.grads) < 1e-9);
            if constexpr (L::kind == LayerKind::reversible) {
              // backward rebuilt the input in y's memory.
              CHECK(max_rel_diff(a.y_after, x) < 1e-9);
            }
          }
        },
        reversible.net, stored.net);
  }
  CHECK(cpu_allocator().current_bytes() == bytes_before);
}

}  // namespace

TEST_CASE("random compositions: gradients, stored twin, input rebuilt, no leaks",
          "[composition]") {
  // Each seed is its own network; the coverage test below shows what they contain.
  for (std::uint64_t seed = 1; seed <= kNetworks; ++seed) {
    check_case(seed);
  }
}

TEST_CASE("random compositions: the generator reaches every container and position",
          "[composition]") {
  // Guards the property test above against a generator that stops producing the cases
  // that matter (a reversible layer first, in the middle and last in a Sequential; a
  // reversible F or G; nesting).
  int rev_first = 0, rev_middle = 0, rev_last = 0, keeps = 0, rev_in_f_or_g = 0;
  int rev_sequence = 0, pool = 0, batch2 = 0, reversible_top = 0;
  for (std::uint64_t seed = 1; seed <= kNetworks; ++seed) {
    const Case c = make_case(seed, false);
    rev_first += c.coverage.rev_first;
    rev_middle += c.coverage.rev_middle;
    rev_last += c.coverage.rev_last;
    keeps += c.coverage.keeps_in_sequential;
    rev_in_f_or_g += c.coverage.rev_in_f_or_g;
    rev_sequence += c.coverage.rev_sequence;
    pool += c.coverage.pool;
    batch2 += case_shape(seed).input.n == 2;
    reversible_top += std::holds_alternative<Rev>(c.net);
  }
  INFO("networks with a reversible layer first/middle/last in a Sequential: " << rev_first << "/"
       << rev_middle << "/" << rev_last << ", an output-keeping layer in a Sequential: "
       << keeps << ", a reversible F or G: " << rev_in_f_or_g << ", a ReversibleSequence: "
       << rev_sequence << ", pooling: " << pool << ", batch 2: " << batch2
       << ", reversible as a whole: " << reversible_top);
  CHECK(rev_first >= 3);
  CHECK(rev_middle >= 3);
  CHECK(rev_last >= 3);
  CHECK(keeps >= 3);
  CHECK(rev_in_f_or_g >= 3);
  CHECK(rev_sequence >= 3);
  CHECK(pool >= 3);
  CHECK(batch2 >= 10);
  CHECK(reversible_top >= 3);
}

namespace {

// A user's own reversible layer: y = x + shift[c]. It opts in to reversibility by having an
// inverse() member and nothing else (no registration): its Saved holds a mutable view of y,
// backward rebuilds x in y and accepts dx == dy (in-place gradient).
template <class U>
class ShiftCoupling {
 public:
  using value_type = U;
  template <class Dev>
  struct Saved {
    TensorView<U> y;
  };
  explicit ShiftCoupling(index_t channels) : channels_(channels), shift_({channels}) {}
  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK_EQ("ShiftCoupling: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("shift", shift_);
  }
  void reset_parameters(Rng& rng) { fill_uniform(shift_.value, channels_, rng, -1.0, 1.0); }
  template <class Dev>
  void forward(const Dev&, TensorView<const U> x, TensorView<U> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ShiftCoupling", output_shape(x.shape), y.shape);
    add_shift(x, y, 1);
    if (saved != nullptr) saved->y = y;
  }
  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const U> dy, TensorView<U> dx) {
    REVOX_CHECK(saved.y.data != nullptr, "ShiftCoupling::backward: nothing saved");
    for (index_t n = 0; n < dy.shape.n; ++n)
      for (index_t c = 0; c < channels_; ++c)
        for (index_t i = 0; i < dy.shape.spatial(); ++i) shift_.grad[c] += dy.channel(n, c)[i];
    if (!dx.empty() && dx.data != dy.data) std::copy(dy.data, dy.data + dy.numel(), dx.data);
    inverse(dev, saved.y);
    saved = Saved<Dev>{};
  }
  template <class Dev>
  void inverse(const Dev&, TensorView<U> y) const {
    add_shift(TensorView<const U>(y), y, -1);
  }

 private:
  void add_shift(TensorView<const U> x, TensorView<U> y, int sign) const {
    for (index_t n = 0; n < x.shape.n; ++n)
      for (index_t c = 0; c < channels_; ++c)
        for (index_t i = 0; i < x.shape.spatial(); ++i)
          y.channel(n, c)[i] = x.channel(n, c)[i] + static_cast<U>(sign) * shift_.value[c];
  }
  index_t channels_;
  Param<U> shift_;
};

}  // namespace

TEST_CASE("a user's layer with inverse() is reversible and runs in place inside Sequential",
          "[composition][sequential]") {
  STATIC_REQUIRE(is_reversible_v<ShiftCoupling<double>>);
  STATIC_REQUIRE(keeps_output_v<ShiftCoupling<double>>);
  STATIC_REQUIRE(!is_reversible_v<GroupNorm<double>>);
  STATIC_REQUIRE(!keeps_output_v<GroupNorm<double>>);
  // Sequential keeps its output exactly when its last layer does.
  STATIC_REQUIRE(keeps_output_v<Sequential<PointwiseConv3d<double>, ShiftCoupling<double>>>);
  STATIC_REQUIRE(!keeps_output_v<Sequential<ShiftCoupling<double>, ReLU<double>>>);
  STATIC_REQUIRE(!is_reversible_v<Sequential<PointwiseConv3d<double>, ShiftCoupling<double>>>);

  using Net = Sequential<ShiftCoupling<double>, PointwiseConv3d<double>, ShiftCoupling<double>,
                         GroupNorm<double>, ShiftCoupling<double>>;
  Net net(ShiftCoupling<double>(4), PointwiseConv3d<double>(4, 6), ShiftCoupling<double>(6),
          GroupNorm<double>(2, 6), ShiftCoupling<double>(6));
  Parameters<double> params(net);
  const auto result = testing::gradcheck(net, params, Shape5{2, 4, 3, 4, 5});
  INFO(result.report);
  CHECK(result.passed);
}

TEST_CASE("Sequential with reversible layers needs no more memory than hand-wired code",
          "[composition][sequential][memory]") {
  // The same network twice: composed with Sequential, and wired by hand the way a careful
  // user would (the reversible part in place on the output). Peaks of a training step
  // (forward with saved, backward), above the caller's x, y, dy and dx, must be equal.
  using Block = ReversibleBlock<MBConv<float>, MBConv<float>>;
  auto make_blocks = [] {
    std::vector<Block> blocks;
    for (int k = 0; k < 2; ++k) blocks.emplace_back(MBConv<float>(8, 8, 2, 4), MBConv<float>(8, 8, 2, 4));
    return ReversibleSequence<Block>(std::move(blocks));
  };
  const Shape5 in{1, 4, 16, 16, 16};
  const Shape5 mid = in.with_channels(16);
  Rng rng(3);
  Tensor<float> x(in);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> dy(mid);
  fill_uniform(dy.view(), rng, -1.0, 1.0);

  SECTION("reversible part last") {
    Sequential<PointwiseConv3d<float>, ReversibleSequence<Block>> net(PointwiseConv3d<float>(4, 16),
                                                                      make_blocks());
    PointwiseConv3d<float> conv(4, 16);
    ReversibleSequence<Block> rev = make_blocks();
    Parameters<float> p1(net);
    Parameters<float> p2(conv), p3(rev);
    Tensor<float> y1(mid), y2(mid), dx1(in), dx2(in);

    cpu_allocator().reset_peak();
    std::size_t base = cpu_allocator().current_bytes();
    {
      saved_t<decltype(net), Cpu> saved;
      net.forward(Cpu{}, x.cview(), y1.view(), &saved);
      net.backward(Cpu{}, saved, dy.cview(), dx1.view());
    }
    const std::size_t composed = cpu_allocator().peak_bytes() - base;
    CHECK(cpu_allocator().current_bytes() == base);

    cpu_allocator().reset_peak();
    base = cpu_allocator().current_bytes();
    {
      saved_t<PointwiseConv3d<float>, Cpu> conv_saved;
      saved_t<ReversibleSequence<Block>, Cpu> rev_saved;
      conv.forward(Cpu{}, x.cview(), y2.view(), &conv_saved);
      rev.forward(Cpu{}, y2.cview(), y2.view(), &rev_saved);
      Tensor<float> grad(mid);
      rev.backward(Cpu{}, rev_saved, dy.cview(), grad.view());
      conv.backward(Cpu{}, conv_saved, grad.cview(), dx2.view());
    }
    const std::size_t by_hand = cpu_allocator().peak_bytes() - base;
    INFO("peak above the caller's tensors: Sequential " << composed << " bytes, by hand "
                                                         << by_hand);
    CHECK(composed == by_hand);
  }

  SECTION("reversible part in the middle") {
    using Net = Sequential<PointwiseConv3d<float>, ReversibleSequence<Block>, GroupNorm<float>>;
    Net net(PointwiseConv3d<float>(4, 16), make_blocks(), GroupNorm<float>(4, 16));
    PointwiseConv3d<float> conv(4, 16);
    ReversibleSequence<Block> rev = make_blocks();
    GroupNorm<float> norm(4, 16);
    Parameters<float> p1(net);
    Parameters<float> p2(conv), p3(rev), p4(norm);
    Tensor<float> y1(mid), y2(mid), dx1(in), dx2(in);

    cpu_allocator().reset_peak();
    std::size_t base = cpu_allocator().current_bytes();
    {
      saved_t<Net, Cpu> saved;
      net.forward(Cpu{}, x.cview(), y1.view(), &saved);
      net.backward(Cpu{}, saved, dy.cview(), dx1.view());
    }
    const std::size_t composed = cpu_allocator().peak_bytes() - base;
    CHECK(cpu_allocator().current_bytes() == base);

    cpu_allocator().reset_peak();
    base = cpu_allocator().current_bytes();
    {
      saved_t<PointwiseConv3d<float>, Cpu> conv_saved;
      saved_t<ReversibleSequence<Block>, Cpu> rev_saved;
      saved_t<GroupNorm<float>, Cpu> norm_saved;
      Tensor<float> buffer(mid);
      conv.forward(Cpu{}, x.cview(), buffer.view(), &conv_saved);
      rev.forward(Cpu{}, buffer.cview(), buffer.view(), &rev_saved);
      norm.forward(Cpu{}, buffer.cview(), y2.view(), &norm_saved);
      Tensor<float> grad(mid);
      norm.backward(Cpu{}, norm_saved, dy.cview(), grad.view());
      rev.backward(Cpu{}, rev_saved, grad.cview(), grad.view());
      buffer = Tensor<float>();
      conv.backward(Cpu{}, conv_saved, grad.cview(), dx2.view());
    }
    const std::size_t by_hand = cpu_allocator().peak_bytes() - base;
    INFO("peak above the caller's tensors: Sequential " << composed << " bytes, by hand "
                                                         << by_hand);
    CHECK(composed <= by_hand);
  }
}
