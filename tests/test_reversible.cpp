// ReversibleBlock and ReversibleSequence: the coupling's formula, exact reconstruction,
// gradients equal to the stored-activation computation, flat memory in the number of
// blocks, and user-defined F and G.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "revox/layers/conv_block.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::ConvBlock;
using revox::MBConv;
using revox::ReversibleBlock;
using revox::ReversibleSequence;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using revox::index_t;
using revox::test::random_tensor;

namespace {

struct CallCounts {
  int forward_plain = 0;  // forward with saved == nullptr
  int forward_saved = 0;  // forward with saved
  int backward = 0;
};

// A layer written here, outside the library: y = tanh(scale[c] * x + shift[c]). It counts
// its calls so that the tests can see when the block runs it with and without `saved`.
template <class T>
class ChannelTanh {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  explicit ChannelTanh(index_t channels,
                       std::shared_ptr<CallCounts> counts = std::make_shared<CallCounts>())
      : channels_(channels), scale_({channels}), shift_({channels}), counts_(std::move(counts)) {}

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK_EQ("ChannelTanh: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("scale"), scale_);
    fn(std::string("shift"), shift_);
  }
  void reset_parameters(revox::Rng& rng) {
    revox::fill_uniform(scale_.value, channels_, rng, 0.5, 1.5);
    revox::fill_uniform(shift_.value, channels_, rng, -0.5, 0.5);
  }
  template <class Dev>
  void forward(const Dev&, TensorView<const T> x, TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    revox::check_output_view("ChannelTanh", output_shape(x.shape), y.shape);
    const index_t s = x.shape.spatial();
    for (index_t n = 0; n < x.shape.n; ++n)
      for (index_t c = 0; c < channels_; ++c)
        for (index_t i = 0; i < s; ++i)
          y.channel(n, c)[i] = std::tanh(scale_.value[c] * x.channel(n, c)[i] + shift_.value[c]);
    if (saved != nullptr) {
      saved->x = x;
      ++counts_->forward_saved;
    } else {
      ++counts_->forward_plain;
    }
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    ++counts_->backward;
    const TensorView<const T> x = saved.x;
    const index_t s = x.shape.spatial();
    for (index_t n = 0; n < x.shape.n; ++n)
      for (index_t c = 0; c < channels_; ++c)
        for (index_t i = 0; i < s; ++i) {
          const T v = x.channel(n, c)[i];
          const T t = std::tanh(scale_.value[c] * v + shift_.value[c]);
          const T d = dy.channel(n, c)[i] * (1 - t * t);
          if (!dx.empty()) dx.channel(n, c)[i] = scale_.value[c] * d;
          scale_.grad[c] += v * d;
          shift_.grad[c] += d;
        }
  }
  const CallCounts& counts() const { return *counts_; }

 private:
  index_t channels_;
  revox::Param<T> scale_;
  revox::Param<T> shift_;
  std::shared_ptr<CallCounts> counts_;
};

// Not a layer: it has no backward. ReversibleBlock<NoBackward<float>, ...> does not compile;
// the compiler stops at check_layer_contract's sentence "revox layer contract: the layer
// must provide `backward(const Dev&, Saved<Dev>& saved, TensorView<const T> dy,
// TensorView<T> dx)`". A static_assert cannot be tested at run time, so this file checks
// the trait that drives it.
template <class T>
struct NoBackward {
  using value_type = T;
  template <class Dev>
  struct Saved {};
  Shape5 output_shape(Shape5 in) const { return in; }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, TensorView<const T>, TensorView<T>, Saved<Dev>*) const {}
};

static_assert(!revox::is_layer_v<NoBackward<float>>);
static_assert(revox::is_layer_v<ChannelTanh<float>>);
static_assert(revox::is_layer_v<ReversibleBlock<MBConv<float>, MBConv<float>>>);
static_assert(revox::is_layer_v<ReversibleBlock<ConvBlock<double>, ChannelTanh<double>>>);
static_assert(revox::is_layer_v<ReversibleSequence<ReversibleBlock<MBConv<float>, MBConv<float>>>>);
static_assert(revox::is_reversible_v<ReversibleBlock<MBConv<float>, MBConv<float>>>);
static_assert(revox::is_reversible_v<ReversibleSequence<ReversibleBlock<MBConv<float>, MBConv<float>>>>);
static_assert(!revox::is_reversible_v<MBConv<float>>);

template <class T>
using MBBlock = ReversibleBlock<MBConv<T>, MBConv<T>>;

// F and G for a block on `channels` channels: MBConv(C/2 -> C/2, e=2).
template <class T>
MBBlock<T> mbconv_block(index_t channels, index_t num_groups) {
  return MBBlock<T>(MBConv<T>(channels / 2, channels / 2, 2, num_groups),
                    MBConv<T>(channels / 2, channels / 2, 2, num_groups));
}

template <class T>
ReversibleSequence<MBBlock<T>> mbconv_chain(std::size_t blocks, index_t channels,
                                            index_t num_groups) {
  std::vector<MBBlock<T>> list;
  for (std::size_t i = 0; i < blocks; ++i) list.push_back(mbconv_block<T>(channels, num_groups));
  return ReversibleSequence<MBBlock<T>>(std::move(list));
}

template <class T>
Tensor<T> nan_tensor(Shape5 shape) {
  return Tensor<T>::full(shape, std::numeric_limits<T>::quiet_NaN());
}

// max |a - b| / max |b| (NaN anywhere gives infinity).
template <class T>
double relative_error(const T* a, const T* b, index_t count) {
  double diff = 0.0;
  double scale = 0.0;
  for (index_t i = 0; i < count; ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

template <class T>
double relative_error(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  return relative_error(a.data(), b.data(), a.numel());
}

// One forward + backward with `saved`; returns y, dx and the parameter gradients.
template <class T>
struct StepResult {
  Tensor<T> y;
  Tensor<T> dx;
  Tensor<T> grads;
};

template <class Layer, class T = typename Layer::value_type>
StepResult<T> train_step(Layer& layer, revox::Parameters<T>& params, const Tensor<T>& x,
                         const Tensor<T>& dy) {
  params.zero_grad();
  StepResult<T> r{nan_tensor<T>(x.shape()), nan_tensor<T>(x.shape()), Tensor<T>()};
  revox::saved_t<Layer, revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), r.y.view(), &saved);
  Tensor<T> y_kept = r.y.clone();  // backward rebuilds the input in r.y's memory
  layer.backward(revox::Cpu{}, saved, dy.cview(), r.dx.view());
  r.y = std::move(y_kept);
  r.grads = Tensor<T>(params.grads().shape);
  std::memcpy(r.grads.data(), params.grads().data, r.grads.bytes());
  return r;
}

revox::testing::GradcheckOptions gradcheck_options() {
  revox::testing::GradcheckOptions options;
  options.max_checks_per_tensor = 20;
  // GroupNorm's weight away from 0 (non-degenerate normalisation), as in test_mbconv.cpp.
  options.param_low = 0.2;
  options.param_high = 1.2;
  return options;
}

}  // namespace

TEST_CASE("Reversible parameters are named f.*, g.* and <index>.f.*", "[layer][reversible]") {
  MBBlock<float> block = mbconv_block<float>(8, 2);
  std::vector<std::string> names;
  block.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  REQUIRE(names.size() == 18);
  CHECK(names.front() == "f.expand.weight");
  CHECK(names[8] == "f.project_norm.bias");
  CHECK(names[9] == "g.expand.weight");
  CHECK(names.back() == "g.project_norm.bias");

  auto chain = mbconv_chain<float>(3, 8, 2);
  CHECK(chain.size() == 3);
  names.clear();
  chain.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  REQUIRE(names.size() == 54);
  CHECK(names.front() == "0.f.expand.weight");
  CHECK(names[9] == "0.g.expand.weight");
  CHECK(names.back() == "2.g.project_norm.bias");

  ReversibleBlock<ConvBlock<float>, ChannelTanh<float>> mixed(ConvBlock<float>(3, 3, 3),
                                                             ChannelTanh<float>(3));
  names.clear();
  mixed.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"f.conv.weight", "f.norm.weight", "f.norm.bias",
                                          "g.scale", "g.shift"});
  CHECK(mixed.output_shape(Shape5{2, 6, 3, 4, 5}) == Shape5{2, 6, 3, 4, 5});
}

TEST_CASE("Reversible blocks reject misuse with readable errors", "[layer][reversible]") {
  MBBlock<float> block = mbconv_block<float>(4, 2);
  revox::Parameters<float> params(block);
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 5, 3, 3, 3}),
                    "ReversibleBlock: channels (5) must be even");
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 6, 3, 3, 3}),
                    "MBConv: input channels: expected 2, got 3");
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 4, 0, 3, 3}),
                    Catch::Contains("ReversibleBlock: input extents must be positive"));
  ReversibleBlock<MBConv<float>, MBConv<float>> widening(MBConv<float>(2, 4, 2, 2),
                                                          MBConv<float>(2, 2, 2, 2));
  CHECK_THROWS_WITH(widening.output_shape(Shape5{1, 4, 3, 3, 3}),
                    Catch::Contains("ReversibleBlock: F must keep its input shape"));
  CHECK_THROWS_WITH(ReversibleSequence<MBBlock<float>>({}),
                    "ReversibleSequence: needs at least one block, got 0");

  revox::Rng rng(3);
  block.reset_parameters(rng);
  const Shape5 shape{1, 4, 3, 3, 3};
  Tensor<float> x = random_tensor<float>(shape, rng);
  Tensor<float> wrong(Shape5{1, 4, 3, 3, 2});
  CHECK_THROWS_WITH(block.forward(revox::Cpu{}, x.cview(), wrong.view(), nullptr),
                    Catch::Contains("ReversibleBlock: output shape"));
  // y overlapping x by one channel
  Tensor<float> big = random_tensor<float>(Shape5{1, 5, 3, 3, 3}, rng);
  const TensorView<float> shifted{big.data() + 27, shape};
  CHECK_THROWS_WITH(block.forward(revox::Cpu{}, TensorView<const float>{big.data(), shape},
                                  shifted, nullptr),
                    Catch::Contains("x and y partially overlap"));

  Tensor<float> y(shape);
  Tensor<float> dx(shape);
  revox::saved_t<MBBlock<float>, revox::Cpu> saved;
  CHECK_THROWS_WITH(block.backward(revox::Cpu{}, saved, x.cview(), dx.view()),
                    Catch::Contains("nothing saved"));
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  CHECK_THROWS_WITH(block.backward(revox::Cpu{}, saved, y.cview(), dx.view()),
                    Catch::Contains("must not share memory with the saved output y"));
  Tensor<float> wrong_dx(Shape5{1, 4, 3, 3, 2});
  CHECK_THROWS_WITH(block.backward(revox::Cpu{}, saved, x.cview(), wrong_dx.view()),
                    Catch::Contains("ReversibleBlock::backward: dx shape"));
  block.backward(revox::Cpu{}, saved, x.cview(), dx.view());
  CHECK_THROWS_WITH(block.backward(revox::Cpu{}, saved, x.cview(), dx.view()),
                    Catch::Contains("backward already consumed it"));
}

TEST_CASE("ReversibleBlock forward is y1 = x1 + F(x2), y2 = x2 + G(y1), in place or not",
          "[layer][reversible]") {
  for (const Shape5 shape : {Shape5{1, 6, 5, 6, 7}, Shape5{2, 4, 2, 3, 2}, Shape5{1, 2, 1, 1, 1}}) {
    const index_t half = shape.c / 2;
    ReversibleBlock<ConvBlock<double>, ChannelTanh<double>> block(ConvBlock<double>(half, half, 1),
                                                                  ChannelTanh<double>(half));
    revox::Parameters<double> params(block);
    revox::Rng rng(11);
    revox::fill_uniform(params.values(), rng, -1.0, 1.0);
    Tensor<double> x = random_tensor<double>(shape, rng);

    // The formula, with F and G called directly, sample by sample.
    Tensor<double> expected(shape);
    const Shape5 half_shape{1, half, shape.d, shape.h, shape.w};
    Tensor<double> f_out(half_shape), g_out(half_shape);
    for (index_t n = 0; n < shape.n; ++n) {
      const TensorView<const double> x1{x.cview().channel(n, 0), half_shape};
      const TensorView<const double> x2{x.cview().channel(n, half), half_shape};
      const TensorView<double> y1{expected.view().channel(n, 0), half_shape};
      const TensorView<double> y2{expected.view().channel(n, half), half_shape};
      block.f().forward(revox::Cpu{}, x2, f_out.view(), nullptr);
      for (index_t i = 0; i < half_shape.numel(); ++i) y1[i] = x1[i] + f_out[i];
      block.g().forward(revox::Cpu{}, TensorView<const double>(y1), g_out.view(), nullptr);
      for (index_t i = 0; i < half_shape.numel(); ++i) y2[i] = x2[i] + g_out[i];
    }
    INFO("input " << shape);
    Tensor<double> y = nan_tensor<double>(shape);
    block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
    CHECK(std::memcmp(y.data(), expected.data(), y.bytes()) == 0);

    Tensor<double> in_place = x.clone();
    block.forward(revox::Cpu{}, in_place.cview(), in_place.view(), nullptr);
    CHECK(std::memcmp(in_place.data(), expected.data(), y.bytes()) == 0);

    block.set_store_activations(true);
    revox::saved_t<decltype(block), revox::Cpu> saved;
    Tensor<double> stored = x.clone();
    block.forward(revox::Cpu{}, stored.cview(), stored.view(), &saved);
    CHECK(std::memcmp(stored.data(), expected.data(), y.bytes()) == 0);
  }
}

TEST_CASE("Reversible forward runs F and G without saved, backward recomputes them once",
          "[layer][reversible]") {
  auto f_counts = std::make_shared<CallCounts>();
  auto g_counts = std::make_shared<CallCounts>();
  ReversibleBlock<ChannelTanh<double>, ChannelTanh<double>> block(
      ChannelTanh<double>(2, f_counts), ChannelTanh<double>(2, g_counts));
  revox::Parameters<double> params(block);
  revox::Rng rng(5);
  block.reset_parameters(rng);
  const Shape5 shape{2, 4, 2, 3, 4};
  Tensor<double> x = random_tensor<double>(shape, rng);
  Tensor<double> y(shape), dx(shape);
  revox::saved_t<decltype(block), revox::Cpu> saved;
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  // One call per sample, all without saved.
  CHECK(f_counts->forward_plain == 2);
  CHECK(g_counts->forward_plain == 2);
  CHECK(f_counts->forward_saved == 0);
  CHECK(g_counts->forward_saved == 0);
  block.backward(revox::Cpu{}, saved, x.cview(), dx.view());
  CHECK(f_counts->forward_saved == 2);
  CHECK(g_counts->forward_saved == 2);
  CHECK(f_counts->backward == 2);
  CHECK(g_counts->backward == 2);
  CHECK(f_counts->forward_plain == 2);

  // The stored twin runs them with saved in forward and never again.
  *f_counts = CallCounts{};
  *g_counts = CallCounts{};
  block.set_store_activations(true);
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  block.backward(revox::Cpu{}, saved, x.cview(), dx.view());
  CHECK(f_counts->forward_saved == 2);
  CHECK(f_counts->forward_plain == 0);
  CHECK(g_counts->forward_saved == 2);
  CHECK(f_counts->backward == 2);
}

template <class T>
void check_reconstruction(double tolerance, const char* type) {
  auto chain = mbconv_chain<T>(8, 8, 2);
  revox::Parameters<T> params(chain);
  revox::Rng rng(2024);
  chain.reset_parameters(rng);
  // Random GroupNorm affine parameters too, so that F and G are far from identity-like.
  revox::fill_uniform(params.values(), rng, -1.0, 1.0);
  const Shape5 shape{1, 8, 8, 9, 10};
  Tensor<T> x = random_tensor<T>(shape, rng);
  Tensor<T> buffer = x.clone();
  chain.forward(revox::Cpu{}, buffer.cview(), buffer.view(), nullptr);
  const double change = relative_error(buffer, x);
  chain.inverse(revox::Cpu{}, buffer.view());
  const double inverse_error = relative_error(buffer, x);

  // backward rebuilds the input in the output's memory as well.
  revox::saved_t<decltype(chain), revox::Cpu> saved;
  Tensor<T> y(shape), dy = random_tensor<T>(shape, rng), dx(shape);
  chain.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  chain.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  const double backward_error = relative_error(y, x);
  std::printf("reconstruction, 8 reversible MBConv blocks, %s, %dx%dx%d x %d channels: "
              "inverse(forward(x)) relative error %.3g, rebuilt by backward %.3g "
              "(forward changed x by %.3g)\n",
              type, static_cast<int>(shape.d), static_cast<int>(shape.h),
              static_cast<int>(shape.w), static_cast<int>(shape.c), inverse_error,
              backward_error, change);
  CHECK(change > 0.5);  // the blocks do something
  CHECK(inverse_error < tolerance);
  CHECK(backward_error < tolerance);
}

TEST_CASE("inverse(forward(x)) reconstructs x through 8 MBConv blocks",
          "[layer][reversible][reconstruction]") {
  check_reconstruction<float>(1e-5, "float");
  check_reconstruction<double>(1e-13, "double");
}

// Reversible mode against the stored-activation twin: same parameters, same x and dy.
template <class Layer, class T = typename Layer::value_type>
void check_against_stored(Layer& layer, Shape5 shape, double tolerance, const std::string& what) {
  revox::Parameters<T> params(layer);
  revox::Rng rng(99);
  layer.reset_parameters(rng);
  revox::fill_uniform(params.values(), rng, 0.2, 1.2);
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  layer.set_store_activations(true);
  const StepResult<T> stored = train_step(layer, params, x, dy);
  layer.set_store_activations(false);
  const StepResult<T> reversible = train_step(layer, params, x, dy);
  const double y_error = relative_error(reversible.y, stored.y);
  const double dx_error = relative_error(reversible.dx, stored.dx);
  const double grad_error = relative_error(reversible.grads, stored.grads);
  INFO(what << " at " << shape << ": y " << y_error << ", dx " << dx_error << ", parameter grads "
            << grad_error);
  CHECK(y_error == 0.0);  // the two modes run the very same arithmetic forward
  CHECK(dx_error < tolerance);
  CHECK(grad_error < tolerance);
  std::printf("%s (%s): reversible vs stored activations, relative error dx %.3g, parameter "
              "gradients %.3g\n",
              what.c_str(), sizeof(T) == 4 ? "float" : "double", dx_error, grad_error);
}

TEST_CASE("Gradients through the reversible path equal the stored-activation ones",
          "[layer][reversible]") {
  {
    auto chain = mbconv_chain<float>(8, 8, 2);
    check_against_stored(chain, Shape5{1, 8, 6, 7, 5}, 1e-4, "8 MBConv blocks");
  }
  {
    auto chain = mbconv_chain<double>(8, 8, 2);
    check_against_stored(chain, Shape5{2, 8, 4, 3, 5}, 1e-10, "8 MBConv blocks, batch 2");
  }
  {
    ReversibleBlock<ConvBlock<float>, ConvBlock<float>> block(ConvBlock<float>(3, 3, 3),
                                                              ConvBlock<float>(3, 3, 1));
    check_against_stored(block, Shape5{1, 6, 5, 6, 7}, 1e-4, "ConvBlock F and G");
  }
  {
    using Block = ReversibleBlock<ChannelTanh<double>, MBConv<double>>;
    ReversibleSequence<Block> chain(
        std::vector<Block>(3, Block(ChannelTanh<double>(2), MBConv<double>(2, 2, 1, 2))));
    check_against_stored(chain, Shape5{2, 4, 3, 3, 2}, 1e-10, "test layer F, MBConv G");
  }
}

// Lean MBConv F and G (MBConv's lean memory mode) give the gradients of the stored-mode
// MBConvs, in the reversible block's reversible and stored-activation modes.
template <class T>
void check_lean_mbconv_chain(std::size_t blocks, index_t channels, index_t num_groups,
                             Shape5 shape, double tolerance) {
  auto reference = mbconv_chain<T>(blocks, channels, num_groups);
  std::vector<MBBlock<T>> list;
  for (std::size_t i = 0; i < blocks; ++i) {
    list.push_back(MBBlock<T>(MBConv<T>(channels / 2, channels / 2, 2, num_groups, true),
                              MBConv<T>(channels / 2, channels / 2, 2, num_groups, true)));
  }
  ReversibleSequence<MBBlock<T>> lean(std::move(list));
  revox::Parameters<T> reference_params(reference);
  revox::Parameters<T> lean_params(lean);
  REQUIRE(reference_params.size() == lean_params.size());
  revox::Rng rng(123);
  revox::fill_uniform(reference_params.values(), rng, 0.2, 1.2);
  std::memcpy(lean_params.values().data, reference_params.values().data,
              sizeof(T) * static_cast<std::size_t>(reference_params.size()));
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  for (const bool store : {false, true}) {
    reference.set_store_activations(store);
    lean.set_store_activations(store);
    const StepResult<T> expected = train_step(reference, reference_params, x, dy);
    const StepResult<T> actual = train_step(lean, lean_params, x, dy);
    const double y_error = relative_error(actual.y, expected.y);
    const double dx_error = relative_error(actual.dx, expected.dx);
    const double grad_error = relative_error(actual.grads, expected.grads);
    INFO(blocks << " blocks of lean MBConv (" << (sizeof(T) == 4 ? "float" : "double") << ", "
                << (store ? "stored activations" : "reversible") << ") at " << shape << ": y "
                << y_error << ", dx " << dx_error << ", parameter grads " << grad_error);
    CHECK(y_error < tolerance);
    CHECK(dx_error < tolerance);
    CHECK(grad_error < tolerance);
  }
}

TEST_CASE("Reversible blocks of lean MBConvs give the stored MBConvs' gradients",
          "[layer][reversible][mbconv][lean]") {
  check_lean_mbconv_chain<float>(1, 8, 2, Shape5{1, 8, 6, 7, 5}, 1e-5);
  check_lean_mbconv_chain<float>(3, 8, 4, Shape5{2, 8, 5, 6, 7}, 1e-4);
  check_lean_mbconv_chain<double>(1, 8, 2, Shape5{2, 8, 5, 6, 7}, 1e-12);
  check_lean_mbconv_chain<double>(3, 6, 3, Shape5{1, 6, 4, 5, 3}, 1e-10);
}

TEST_CASE("Reversible backward equals the hand-written stored-activation backward",
          "[layer][reversible]") {
  // Written out from the formulas with F and G called directly: dy1' = dy1 + G^T dy2,
  // dx2 = dy2 + F^T dy1', dx1 = dy1'.
  MBBlock<double> block = mbconv_block<double>(6, 3);
  revox::Parameters<double> params(block);
  revox::Rng rng(8);
  revox::fill_uniform(params.values(), rng, 0.2, 1.2);
  const Shape5 shape{1, 6, 4, 5, 3};
  const Shape5 half{1, 3, 4, 5, 3};
  const Tensor<double> x = random_tensor<double>(shape, rng);
  const Tensor<double> dy = random_tensor<double>(shape, rng);

  params.zero_grad();
  Tensor<double> y(shape), dx(shape), f_out(half), g_out(half), f_grad(half), g_grad(half);
  revox::saved_t<MBConv<double>, revox::Cpu> f_saved, g_saved;
  const TensorView<const double> x1 = x.cview().channels(0, 3), x2 = x.cview().channels(3, 3);
  const TensorView<double> y1 = y.view().channels(0, 3), y2 = y.view().channels(3, 3);
  block.f().forward(revox::Cpu{}, x2, f_out.view(), &f_saved);
  for (index_t i = 0; i < half.numel(); ++i) y1[i] = x1[i] + f_out[i];
  block.g().forward(revox::Cpu{}, TensorView<const double>(y1), g_out.view(), &g_saved);
  for (index_t i = 0; i < half.numel(); ++i) y2[i] = x2[i] + g_out[i];
  const TensorView<const double> dy1 = dy.cview().channels(0, 3), dy2 = dy.cview().channels(3, 3);
  const TensorView<double> dx1 = dx.view().channels(0, 3), dx2 = dx.view().channels(3, 3);
  block.g().backward(revox::Cpu{}, g_saved, dy2, g_grad.view());
  for (index_t i = 0; i < half.numel(); ++i) dx1[i] = dy1[i] + g_grad[i];
  block.f().backward(revox::Cpu{}, f_saved, TensorView<const double>(dx1), f_grad.view());
  for (index_t i = 0; i < half.numel(); ++i) dx2[i] = dy2[i] + f_grad[i];
  const Tensor<double> expected_grads = [&] {
    Tensor<double> g(params.grads().shape);
    std::memcpy(g.data(), params.grads().data, g.bytes());
    return g;
  }();

  const StepResult<double> reversible = train_step(block, params, x, dy);
  CHECK(relative_error(reversible.y, y) == 0.0);
  CHECK(relative_error(reversible.dx, dx) < 1e-12);
  CHECK(relative_error(reversible.grads, expected_grads) < 1e-12);

  // dx may be the very memory of dy: the gradient propagates in place.
  params.zero_grad();
  revox::saved_t<MBBlock<double>, revox::Cpu> saved;
  Tensor<double> out(shape);
  Tensor<double> grad = dy.clone();
  block.forward(revox::Cpu{}, x.cview(), out.view(), &saved);
  block.backward(revox::Cpu{}, saved, grad.cview(), grad.view());
  CHECK(relative_error(grad, dx) < 1e-12);
  CHECK(relative_error(params.grads().data, expected_grads.data(), expected_grads.numel()) < 1e-12);
  // ... and may be empty: the parameter gradients are the same.
  params.zero_grad();
  block.forward(revox::Cpu{}, x.cview(), out.view(), &saved);
  block.backward(revox::Cpu{}, saved, dy.cview(), TensorView<double>{});
  CHECK(relative_error(params.grads().data, expected_grads.data(), expected_grads.numel()) < 1e-12);
}

void gradcheck_reversible(bool store) {
  for (const Shape5 shape : {Shape5{1, 4, 3, 3, 4}, Shape5{2, 4, 2, 3, 2}}) {
    INFO("store_activations " << store << ", input " << shape);
    {
      MBBlock<double> block = mbconv_block<double>(4, 2);
      block.set_store_activations(store);
      revox::Parameters<double> params(block);
      const auto result = revox::testing::gradcheck(block, params, shape, gradcheck_options());
      INFO("ReversibleBlock<MBConv, MBConv>\n" << result.report);
      REQUIRE(result.passed);
    }
    {
      ReversibleBlock<ConvBlock<double>, ChannelTanh<double>> block(ConvBlock<double>(2, 2, 2),
                                                                    ChannelTanh<double>(2), store);
      revox::Parameters<double> params(block);
      const auto result = revox::testing::gradcheck(block, params, shape, gradcheck_options());
      INFO("ReversibleBlock<ConvBlock, ChannelTanh>\n" << result.report);
      REQUIRE(result.passed);
    }
    {
      auto chain = mbconv_chain<double>(3, 4, 1);
      chain.set_store_activations(store);
      revox::Parameters<double> params(chain);
      auto options = gradcheck_options();
      options.max_checks_per_tensor = 8;
      const auto result = revox::testing::gradcheck(chain, params, shape, options);
      INFO("ReversibleSequence of 3 MBConv blocks\n" << result.report);
      REQUIRE(result.passed);
    }
  }
}

TEST_CASE("Reversible blocks and sequences pass gradcheck", "[layer][reversible][gradcheck]") {
  gradcheck_reversible(false);
}

TEST_CASE("Stored-activation blocks and sequences pass gradcheck",
          "[layer][reversible][gradcheck]") {
  gradcheck_reversible(true);
}

// Peak bytes of the tracking allocator above what was live before one training step
// (forward with saved, backward with the gradient propagated in place), for a chain of k
// blocks. The parameters and the input x are allocated before the step; the output and the
// gradient buffer inside it.
std::size_t training_step_peak(std::size_t k, bool store_activations) {
  auto chain = mbconv_chain<float>(k, 8, 2);
  chain.set_store_activations(store_activations);
  revox::Parameters<float> params(chain);
  revox::Rng rng(17);
  chain.reset_parameters(rng);
  const Shape5 shape{1, 8, 12, 12, 12};
  Tensor<float> x = random_tensor<float>(shape, rng);
  auto& allocator = revox::cpu_allocator();
  const std::size_t base = allocator.current_bytes();
  allocator.reset_peak();
  {
    Tensor<float> y(shape);
    revox::saved_t<decltype(chain), revox::Cpu> saved;
    chain.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
    Tensor<float> grad(shape);
    for (index_t i = 0; i < grad.numel(); ++i) grad[i] = 2.0f * y[i] / static_cast<float>(y.numel());
    chain.backward(revox::Cpu{}, saved, grad.cview(), grad.view());
  }
  REQUIRE(allocator.current_bytes() == base);
  return allocator.peak_bytes() - base;
}

TEST_CASE("Reversible training-step memory does not grow with the number of blocks",
          "[layer][reversible][memory]") {
  const std::size_t ks[] = {1, 2, 4, 8};
  std::vector<std::size_t> reversible, stored;
  for (std::size_t k : ks) {
    reversible.push_back(training_step_peak(k, false));
    stored.push_back(training_step_peak(k, true));
  }
  const std::size_t activation = sizeof(float) * 8 * 12 * 12 * 12;
  std::printf("training-step peak memory above parameters and input (one activation = %zu "
              "bytes), blocks 1/2/4/8 of MBConv(4 -> 4, e=2) at 12^3 x 8 channels:\n",
              activation);
  std::printf("  reversible:          %zu %zu %zu %zu bytes\n", reversible[0], reversible[1],
              reversible[2], reversible[3]);
  std::printf("  stored activations:  %zu %zu %zu %zu bytes\n", stored[0], stored[1], stored[2],
              stored[3]);
  for (std::size_t i = 1; i < reversible.size(); ++i) {
    INFO("k = " << ks[i]);
    const double ratio = static_cast<double>(reversible[i]) / static_cast<double>(reversible[0]);
    CHECK(ratio > 0.95);
    CHECK(ratio < 1.05);
  }
  // The twin grows linearly: each extra block keeps at least its F and G inputs (one
  // activation) plus their expanded intermediates, and equally much per block.
  const double per_block = static_cast<double>(stored[1] - stored[0]);
  CHECK(per_block >= static_cast<double>(activation));
  for (std::size_t i = 2; i < stored.size(); ++i) {
    INFO("k = " << ks[i]);
    const double expected = static_cast<double>(stored[0]) + per_block * static_cast<double>(ks[i] - 1);
    CHECK(std::abs(static_cast<double>(stored[i]) - expected) < 0.05 * expected);
  }
  CHECK(stored[3] > 4 * reversible[3]);
}
