// The contract checks written once (revox/layers/checks.hpp) and the named gradient modes
// (revox::backward, revox::backward_params_only, Gradients; revox/layers/layer.hpp): the
// parameter-gradient-only mode gives exactly the gradients of the full backward, an empty dx
// is refused by revox::backward, and the layers that cannot propagate in place refuse a dx
// that shares memory with dy.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "support/tensors.hpp"

using revox::Cpu;
using revox::Gradients;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using revox::test::random_tensor;

namespace {

// The parameter gradients after one backward in `mode`, starting from zero.
template <class L>
std::vector<double> param_grads(L& layer, const Tensor<double>& x, const Tensor<double>& dy,
                                Gradients mode) {
  revox::Parameters<double> params(layer);
  revox::Rng rng(11);
  layer.reset_parameters(rng);
  params.zero_grad();
  Tensor<double> y(layer.output_shape(x.shape()));
  revox::saved_t<L, Cpu> saved;
  layer.forward(Cpu{}, x.cview(), y.view(), &saved);
  Tensor<double> dx(x.shape());
  revox::backward(layer, Cpu{}, saved, dy.cview(), dx.view(), mode);
  const TensorView<const double> all = params.grads();
  std::vector<double> grads(all.data, all.data + all.numel());
  return grads;
}

}  // namespace

TEST_CASE("gradient modes: params_only gives the full backward's parameter gradients") {
  revox::Rng rng(3);
  const Shape5 in{2, 4, 3, 4, 5};
  const Tensor<double> x = random_tensor<double>(in, rng);
  using Net = revox::Sequential<revox::PointwiseConv3d<double>, revox::GroupNorm<double>,
                                revox::DepthwiseConv3d<double>>;
  Net net(revox::PointwiseConv3d<double>(4, 6), revox::GroupNorm<double>(3, 6),
          revox::DepthwiseConv3d<double>(6));
  const Tensor<double> dy = random_tensor<double>(net.output_shape(in), rng);
  const std::vector<double> full = param_grads(net, x, dy, Gradients::input_and_params);
  const std::vector<double> only = param_grads(net, x, dy, Gradients::params_only);
  REQUIRE(full.size() == only.size());
  REQUIRE(!full.empty());
  CHECK(std::memcmp(full.data(), only.data(), full.size() * sizeof(double)) == 0);
  double norm = 0.0;
  for (double g : full) norm += g * g;
  CHECK(norm > 0.0);
}

TEST_CASE("gradient modes: params_only leaves dx untouched and revox::backward refuses an empty dx") {
  revox::Rng rng(5);
  const Shape5 in{1, 3, 4, 4, 4};
  revox::PointwiseConv3d<double> conv(3, 2);
  revox::Parameters<double> params(conv);
  conv.reset_parameters(rng);
  const Tensor<double> x = random_tensor<double>(in, rng);
  Tensor<double> y(conv.output_shape(in));
  const Tensor<double> dy = random_tensor<double>(y.shape(), rng);
  revox::saved_t<revox::PointwiseConv3d<double>, Cpu> saved;

  CHECK(revox::gradients_for(TensorView<double>{}) == Gradients::params_only);
  Tensor<double> dx(in);
  CHECK(revox::gradients_for(dx.view()) == Gradients::input_and_params);

  for (revox::index_t i = 0; i < dx.numel(); ++i) dx[i] = 42.0;
  conv.forward(Cpu{}, x.cview(), y.view(), &saved);
  revox::backward(conv, Cpu{}, saved, dy.cview(), dx.view(), Gradients::params_only);
  for (revox::index_t i = 0; i < dx.numel(); ++i) REQUIRE(dx[i] == 42.0);

  conv.forward(Cpu{}, x.cview(), y.view(), &saved);
  CHECK_THROWS_WITH(revox::backward(conv, Cpu{}, saved, dy.cview(), TensorView<double>{}),
                    Catch::Contains("revox::backward: dx is empty"));
}

TEST_CASE("layer checks: layers that cannot propagate in place refuse dx sharing dy's memory") {
  revox::Rng rng(9);
  const Shape5 in{1, 2, 4, 4, 4};
  const Tensor<double> x = random_tensor<double>(in, rng);
  Tensor<double> y(in);
  Tensor<double> g = random_tensor<double>(in, rng);

  revox::Conv3d<double> conv(2, 2, 3);
  revox::Parameters<double> conv_params(conv);
  conv.reset_parameters(rng);
  revox::saved_t<revox::Conv3d<double>, Cpu> conv_saved;
  conv.forward(Cpu{}, x.cview(), y.view(), &conv_saved);
  CHECK_THROWS_WITH(conv.backward(Cpu{}, conv_saved, g.cview(), g.view()),
                    Catch::Contains("Conv3d::backward: dx and dy must not share memory"));

  revox::PointwiseConv3d<double> pw(2, 2);
  revox::Parameters<double> pw_params(pw);
  pw.reset_parameters(rng);
  revox::saved_t<revox::PointwiseConv3d<double>, Cpu> pw_saved;
  pw.forward(Cpu{}, x.cview(), y.view(), &pw_saved);
  CHECK_THROWS_WITH(pw.backward(Cpu{}, pw_saved, g.cview(), g.view()),
                    Catch::Contains("dx and dy must not share memory"));

  revox::DepthwiseConv3d<double> dw(2);
  revox::Parameters<double> dw_params(dw);
  dw.reset_parameters(rng);
  revox::saved_t<revox::DepthwiseConv3d<double>, Cpu> dw_saved;
  dw.forward(Cpu{}, x.cview(), y.view(), &dw_saved);
  CHECK_THROWS_WITH(dw.backward(Cpu{}, dw_saved, g.cview(), g.view()),
                    Catch::Contains("dx and dy must not share memory"));

  // GroupNorm may propagate in place: dx the very memory of dy is accepted, and gives the
  // gradient a separate dx gets.
  revox::GroupNorm<double> norm(1, 2);
  revox::Parameters<double> norm_params(norm);
  norm.reset_parameters(rng);
  revox::saved_t<revox::GroupNorm<double>, Cpu> norm_saved;
  Tensor<double> dx(in);
  norm.forward(Cpu{}, x.cview(), y.view(), &norm_saved);
  norm.backward(Cpu{}, norm_saved, g.cview(), dx.view());
  norm.forward(Cpu{}, x.cview(), y.view(), &norm_saved);
  norm.backward(Cpu{}, norm_saved, g.cview(), g.view());
  for (revox::index_t i = 0; i < dx.numel(); ++i) REQUIRE(g[i] == dx[i]);
}
