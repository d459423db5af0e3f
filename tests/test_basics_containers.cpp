// Residual<F> and Concat<A, B>: the layer contract, gradcheck (central differences) with
// ordinary and output-keeping sub-layers (reversible blocks, and OutputKeeper below, which
// verifies that its output buffer is left alone until its backward), batch 2 and odd shapes,
// nesting in Sequential and ReversibleBlock, skipped dx, names and shape errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/concat.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/residual.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/testing/gradcheck.hpp"

using namespace revox;

namespace {

// y = tanh(x), a layer that keeps its output: Saved views y (and a private copy of it), and
// backward first checks that y still holds what forward wrote, then computes dx from y and
// finally overwrites y with NaN, as a reversible layer's backward overwrites its output.
template <class T>
class OutputKeeper {
 public:
  using value_type = T;
  static constexpr bool keeps_output = true;
  template <class Dev>
  struct Saved {
    TensorView<T> y;
    Tensor<T, Dev> copy;
  };
  Shape5 output_shape(Shape5 in) const { return in; }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(Rng&) {}
  template <class Dev>
  void forward(const Dev&, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("OutputKeeper", x.shape, y.shape);
    for (index_t i = 0; i < x.numel(); ++i) y[i] = std::tanh(x[i]);
    if (saved != nullptr) {
      saved->y = y;
      saved->copy = Tensor<T, Dev>(y.shape);
      std::memcpy(saved->copy.data(), y.data, saved->copy.bytes());
    }
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(!saved.y.empty() &&
                    std::memcmp(saved.copy.data(), saved.y.data, saved.copy.bytes()) == 0,
                "OutputKeeper::backward: the output buffer was changed before backward");
    for (index_t i = 0; i < dy.numel(); ++i) {
      if (!dx.empty()) dx[i] = (T(1) - saved.y[i] * saved.y[i]) * dy[i];
      saved.y[i] = std::numeric_limits<T>::quiet_NaN();
    }
    saved.y = TensorView<T>{};
  }
};

static_assert(keeps_output_v<OutputKeeper<double>>);
static_assert(check_layer_contract<Residual<ConvBlock<double>>>());
static_assert(check_layer_contract<Residual<ReversibleBlock<MBConv<double>, MBConv<double>>>>());
static_assert(check_layer_contract<Concat<ConvBlock<double>, OutputKeeper<double>>>());
// The containers own their sub-layers' outputs: they do not keep their own.
static_assert(!keeps_output_v<Residual<OutputKeeper<double>>>);
static_assert(!keeps_output_v<Concat<OutputKeeper<double>, OutputKeeper<double>>>);

using MBBlock = ReversibleBlock<MBConv<double>, MBConv<double>>;
using ConvRev = ReversibleBlock<ConvBlock<double>, ConvBlock<double>>;

MBBlock mb_block(index_t channels) {
  return MBBlock(MBConv<double>(channels / 2, channels / 2, 2, 2),
                 MBConv<double>(channels / 2, channels / 2, 2, 2));
}
ConvRev conv_rev(index_t channels) {
  return ConvRev(ConvBlock<double>(channels / 2, channels / 2, 1),
                 ConvBlock<double>(channels / 2, channels / 2, 1));
}

testing::GradcheckOptions options(index_t checks = 16) {
  testing::GradcheckOptions o;
  o.max_checks_per_tensor = checks;
  o.param_low = 0.2;  // GroupNorm's weight away from 0, as in the other layer tests
  o.param_high = 1.2;
  return o;
}

template <class Layer>
void check_gradients(const char* what, Layer& layer, Shape5 shape, index_t checks = 16) {
  Parameters<double> params(layer);
  const auto result = testing::gradcheck(layer, params, shape, options(checks));
  INFO(what << " at " << shape << "\n" << result.report);
  REQUIRE(result.passed);
  CHECK(result.checked > 0);
}

const Shape5 kOdd1{1, 4, 3, 5, 3};
const Shape5 kOdd2{2, 4, 3, 2, 5};

// Forward + backward with and without dx: the parameter gradients must agree; y must be
// left as forward wrote it (the containers do not keep their output).
template <class Layer>
void check_skip_dx(Layer& layer, Shape5 shape) {
  Parameters<double> params(layer);
  Rng rng(11);
  for (const auto& e : params.entries())
    fill_uniform(params.values().data + e.offset, e.shape.numel(), rng, 0.2, 1.2);
  Tensor<double> x(shape);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  const Shape5 out = layer.output_shape(shape);
  Tensor<double> dy(out);
  fill_uniform(dy.view(), rng, -1.0, 1.0);

  saved_t<Layer, Cpu> saved{};
  Tensor<double> y(out);
  layer.forward(Cpu{}, x.cview(), y.view(), &saved);
  const Tensor<double> y_copy = y.clone();
  Tensor<double> dx(shape);
  layer.backward(Cpu{}, saved, dy.cview(), dx.view());
  CHECK(std::memcmp(y.data(), y_copy.data(), y.bytes()) == 0);
  std::vector<double> with_dx(params.grads().data, params.grads().data + params.size());

  params.zero_grad();
  saved_t<Layer, Cpu> saved2{};
  layer.forward(Cpu{}, x.cview(), y.view(), &saved2);
  layer.backward(Cpu{}, saved2, dy.cview(), TensorView<double>{});
  std::vector<double> without(params.grads().data, params.grads().data + params.size());
  CHECK(with_dx == without);
  // backward consumed saved: a second one is refused.
  CHECK_THROWS_AS(layer.backward(Cpu{}, saved2, dy.cview(), dx.view()), Error);
}

}  // namespace

TEST_CASE("basics: Residual passes gradcheck", "[basics][residual][gradcheck]") {
  for (const Shape5 shape : {kOdd1, kOdd2}) {
    {
      Residual<ConvBlock<double>> r(ConvBlock<double>(4, 4, 2));
      check_gradients("Residual<ConvBlock>", r, shape);
    }
    {
      Residual<MBBlock> r(mb_block(4));
      check_gradients("Residual<ReversibleBlock<MBConv, MBConv>>", r, shape);
    }
    {
      Residual<ConvRev> r(conv_rev(4));
      check_gradients("Residual<ReversibleBlock<ConvBlock, ConvBlock>>", r, shape);
    }
    {
      Residual<OutputKeeper<double>> r;
      check_gradients("Residual<OutputKeeper>", r, shape);
    }
  }
}

TEST_CASE("basics: Concat passes gradcheck", "[basics][concat][gradcheck]") {
  for (const Shape5 shape : {kOdd1, kOdd2}) {
    {
      Concat<ConvBlock<double>, ConvBlock<double>> c(ConvBlock<double>(4, 2, 1),
                                                     ConvBlock<double>(4, 6, 2));
      CHECK(c.output_shape(shape) == shape.with_channels(8));
      check_gradients("Concat<ConvBlock, ConvBlock>", c, shape);
    }
    {
      Concat<MBBlock, ConvBlock<double>> c(mb_block(4), ConvBlock<double>(4, 3, 1));
      check_gradients("Concat<ReversibleBlock<MBConv, MBConv>, ConvBlock>", c, shape);
    }
    {
      Concat<ConvBlock<double>, ConvRev> c(ConvBlock<double>(4, 2, 2), conv_rev(4));
      check_gradients("Concat<ConvBlock, ReversibleBlock<ConvBlock, ConvBlock>>", c, shape);
    }
    {
      Concat<OutputKeeper<double>, OutputKeeper<double>> c(OutputKeeper<double>{},
                                                           OutputKeeper<double>{});
      check_gradients("Concat<OutputKeeper, OutputKeeper>", c, shape);
    }
  }
}

TEST_CASE("basics: Residual and Concat nest in Sequential and ReversibleBlock",
          "[basics][residual][concat][gradcheck]") {
  for (const Shape5 shape : {kOdd1, kOdd2}) {
    {
      Sequential<PointwiseConv3d<double>, Residual<ConvBlock<double>>,
                 Concat<ConvBlock<double>, ConvBlock<double>>>
          s(PointwiseConv3d<double>(4, 6), Residual<ConvBlock<double>>(ConvBlock<double>(6, 6, 2)),
            Concat<ConvBlock<double>, ConvBlock<double>>(ConvBlock<double>(6, 2, 1),
                                                         ConvBlock<double>(6, 3, 1)));
      CHECK(s.output_shape(shape) == shape.with_channels(5));
      check_gradients("Sequential<PointwiseConv3d, Residual<ConvBlock>, Concat>", s, shape, 8);
    }
    {
      // Residual hides the reversible block: Sequential sees an ordinary layer.
      Sequential<PointwiseConv3d<double>, Residual<MBBlock>> s(PointwiseConv3d<double>(4, 4),
                                                               Residual<MBBlock>(mb_block(4)));
      check_gradients("Sequential<PointwiseConv3d, Residual<ReversibleBlock>>", s, shape, 8);
    }
    {
      using R = Residual<ConvBlock<double>>;
      ReversibleBlock<R, R> b(R(ConvBlock<double>(2, 2, 1)), R(ConvBlock<double>(2, 2, 2)));
      check_gradients("ReversibleBlock<Residual<ConvBlock>, Residual<ConvBlock>>", b, shape);
    }
    {
      using C = Concat<ConvBlock<double>, ConvBlock<double>>;
      Residual<C> r(C(ConvBlock<double>(4, 1, 1), ConvBlock<double>(4, 3, 1)));
      check_gradients("Residual<Concat<ConvBlock, ConvBlock>>", r, shape);
    }
  }
}

TEST_CASE("basics: Residual and Concat skip dx when empty and keep y",
          "[basics][residual][concat]") {
  for (const Shape5 shape : {kOdd1, kOdd2}) {
    INFO("input " << shape);
    Residual<MBBlock> r(mb_block(4));
    check_skip_dx(r, shape);
    Residual<ConvBlock<double>> rc(ConvBlock<double>(4, 4, 2));
    check_skip_dx(rc, shape);
    Concat<MBBlock, ConvBlock<double>> c(mb_block(4), ConvBlock<double>(4, 3, 1));
    check_skip_dx(c, shape);
  }
}

TEST_CASE("basics: Residual and Concat names and errors", "[basics][residual][concat][errors]") {
  Residual<ConvBlock<double>> r(ConvBlock<double>(4, 4, 2));
  std::vector<std::string> names;
  r.visit_params([&](const std::string& n, Param<double>&) { names.push_back(n); });
  CHECK(names == std::vector<std::string>{"fn.conv.weight", "fn.norm.weight", "fn.norm.bias"});

  Concat<ConvBlock<double>, MBBlock> c(ConvBlock<double>(4, 2, 1), mb_block(4));
  names.clear();
  c.visit_params([&](const std::string& n, Param<double>&) { names.push_back(n); });
  REQUIRE(names.size() > 3);
  CHECK(names[0] == "0.conv.weight");
  CHECK(names[3].rfind("1.f.", 0) == 0);
  CHECK(names.back().rfind("1.g.", 0) == 0);

  Residual<ConvBlock<double>> widen(ConvBlock<double>(4, 6, 2));
  CHECK_THROWS_WITH(widen.output_shape(Shape5{1, 4, 3, 3, 3}),
                    Catch::Contains("Residual: the residual function must keep its input shape"));
  Concat<ConvBlock<double>, MaxPool3d<double>> mismatched(ConvBlock<double>(4, 2, 1),
                                                          MaxPool3d<double>());
  CHECK_THROWS_WITH(mismatched.output_shape(Shape5{1, 4, 4, 4, 4}),
                    Catch::Contains("Concat: the branches must give the same batch and spatial"));

  Tensor<double> x = Tensor<double>::zeros(Shape5{1, 4, 2, 2, 2});
  Parameters<double> params(r);
  CHECK_THROWS_WITH(r.forward(Cpu{}, x.cview(), x.view(), nullptr),
                    Catch::Contains("Residual::forward: x and y must not share memory"));
  saved_t<Residual<ConvBlock<double>>, Cpu> saved{};
  Tensor<double> y(x.shape());
  r.forward(Cpu{}, x.cview(), y.view(), &saved);
  CHECK_THROWS_WITH(r.backward(Cpu{}, saved, y.cview(), y.view()),
                    Catch::Contains("Residual::backward: dx and dy must not share memory"));
}
