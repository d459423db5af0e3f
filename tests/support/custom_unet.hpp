// The user-written blocks of the UNet<T, F, G> tests (test_unet_custom_block*.cpp): a
// hand-written squeeze-and-excitation layer, MBConv + SE as F = G, a pointwise block with SE
// as F != G, and the helpers that build, run, gradcheck and train those U-Nets.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"
#include "revox/testing/gradcheck.hpp"
#include "unet_runs.hpp"


namespace revox_test::custom_unet {

using revox::index_t;
using revox::Param;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
using revox::UNet;
using revox::UNetConfig;



// Squeeze-and-excitation (Hu et al. 2018), written by hand against the layer contract:
//   s_c = mean over D, H, W of x_c;  h = relu(W1 s + b1);  gate = sigmoid(W2 h + b2);
//   y = x * gate_c.
// Params: "reduce.weight" [R, C], "reduce.bias" [R], "expand.weight" [C, R],
// "expand.bias" [C]. CPU only.
template <class T>
class SqueezeExcite {
 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
    std::vector<T> mean;    // (N, C)
    std::vector<T> hidden;  // (N, R), after the ReLU
    std::vector<T> gate;    // (N, C)
  };

  SqueezeExcite(index_t channels, index_t reduced)
      : channels_(channels),
        reduced_(reduced),
        w1_(revox::ParamShape{reduced, channels}),
        b1_(revox::ParamShape{reduced}),
        w2_(revox::ParamShape{channels, reduced}),
        b2_(revox::ParamShape{channels}) {
    REVOX_CHECK(channels > 0 && reduced > 0, "SqueezeExcite: channels and reduced must be "
                                             "positive, got ", channels, " and ", reduced);
  }

  index_t channels() const { return channels_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK_EQ("SqueezeExcite: input channels", channels_, in.c);
    return in;
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("reduce.weight"), w1_);
    fn(std::string("reduce.bias"), b1_);
    fn(std::string("expand.weight"), w2_);
    fn(std::string("expand.bias"), b2_);
  }

  void reset_parameters(revox::Rng& rng) {
    auto fill = [&rng](Param<T>& p, index_t fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (index_t i = 0; i < p.numel(); ++i) p.value[i] = static_cast<T>(rng.uniform(-bound, bound));
    };
    fill(w1_, channels_);
    fill(b1_, channels_);
    fill(w2_, reduced_);
    fill(b2_, reduced_);
  }

  template <class Dev>
  void forward(const Dev&, TensorView<const T> x, TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    static_assert(std::is_same_v<Dev, revox::Cpu>, "SqueezeExcite: CPU only");
    revox::check_output_view("SqueezeExcite", output_shape(x.shape), y.shape);
    const index_t n_count = x.shape.n;
    const index_t spatial = x.shape.d * x.shape.h * x.shape.w;
    std::vector<T> mean(static_cast<std::size_t>(n_count * channels_));
    std::vector<T> hidden(static_cast<std::size_t>(n_count * reduced_));
    std::vector<T> gate(static_cast<std::size_t>(n_count * channels_));
    for (index_t n = 0; n < n_count; ++n) {
      T* s = mean.data() + n * channels_;
      T* h = hidden.data() + n * reduced_;
      T* g = gate.data() + n * channels_;
      for (index_t c = 0; c < channels_; ++c) {
        const T* xc = x.channel(n, c);
        T sum = 0;
        for (index_t i = 0; i < spatial; ++i) sum += xc[i];
        s[c] = sum / static_cast<T>(spatial);
      }
      for (index_t r = 0; r < reduced_; ++r) {
        T a = b1_.value[r];
        for (index_t c = 0; c < channels_; ++c) a += w1_.value[r * channels_ + c] * s[c];
        h[r] = a > T(0) ? a : T(0);
      }
      for (index_t c = 0; c < channels_; ++c) {
        T a = b2_.value[c];
        for (index_t r = 0; r < reduced_; ++r) a += w2_.value[c * reduced_ + r] * h[r];
        g[c] = T(1) / (T(1) + std::exp(-a));
        const T* xc = x.channel(n, c);
        T* yc = y.channel(n, c);
        for (index_t i = 0; i < spatial; ++i) yc[i] = xc[i] * g[c];
      }
    }
    if (saved != nullptr) {
      saved->x = x;
      saved->mean = std::move(mean);
      saved->hidden = std::move(hidden);
      saved->gate = std::move(gate);
    }
  }

  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(saved.x.data != nullptr, "SqueezeExcite::backward: nothing saved");
    const TensorView<const T> x = saved.x;
    const index_t spatial = x.shape.d * x.shape.h * x.shape.w;
    std::vector<T> da2(static_cast<std::size_t>(channels_));
    std::vector<T> da1(static_cast<std::size_t>(reduced_));
    std::vector<T> ds(static_cast<std::size_t>(channels_));
    for (index_t n = 0; n < x.shape.n; ++n) {
      const T* s = saved.mean.data() + n * channels_;
      const T* h = saved.hidden.data() + n * reduced_;
      const T* g = saved.gate.data() + n * channels_;
      for (index_t c = 0; c < channels_; ++c) {
        const T* xc = x.channel(n, c);
        const T* dyc = dy.channel(n, c);
        T dgate = 0;
        for (index_t i = 0; i < spatial; ++i) dgate += dyc[i] * xc[i];
        da2[static_cast<std::size_t>(c)] = dgate * g[c] * (T(1) - g[c]);
      }
      for (index_t r = 0; r < reduced_; ++r) {
        T dh = 0;
        for (index_t c = 0; c < channels_; ++c) {
          const T d = da2[static_cast<std::size_t>(c)];
          w2_.grad[c * reduced_ + r] += d * h[r];
          dh += w2_.value[c * reduced_ + r] * d;
        }
        da1[static_cast<std::size_t>(r)] = h[r] > T(0) ? dh : T(0);
      }
      for (index_t c = 0; c < channels_; ++c) b2_.grad[c] += da2[static_cast<std::size_t>(c)];
      for (index_t c = 0; c < channels_; ++c) {
        T d = 0;
        for (index_t r = 0; r < reduced_; ++r) {
          w1_.grad[r * channels_ + c] += da1[static_cast<std::size_t>(r)] * s[c];
          d += w1_.value[r * channels_ + c] * da1[static_cast<std::size_t>(r)];
        }
        ds[static_cast<std::size_t>(c)] = d / static_cast<T>(spatial);
      }
      for (index_t r = 0; r < reduced_; ++r) b1_.grad[r] += da1[static_cast<std::size_t>(r)];
      if (dx.empty()) continue;
      for (index_t c = 0; c < channels_; ++c) {
        const T* dyc = dy.channel(n, c);
        T* dxc = dx.channel(n, c);
        for (index_t i = 0; i < spatial; ++i) {
          dxc[i] = dyc[i] * g[c] + ds[static_cast<std::size_t>(c)];
        }
      }
    }
    saved = Saved<Dev>{};
  }

 private:
  index_t channels_;
  index_t reduced_;
  Param<T> w1_, b1_, w2_, b2_;
};

static_assert(revox::check_layer_contract<SqueezeExcite<double>>());

// The motivating block: MBConv followed by squeeze-and-excitation.
template <class T>
using SEMBConv = revox::Sequential<revox::MBConv<T>, SqueezeExcite<T>>;

template <class T>
SEMBConv<T> make_se_mbconv(index_t half, index_t num_groups) {
  return SEMBConv<T>(revox::MBConv<T>(half, half, 2, num_groups),
                     SqueezeExcite<T>(half, std::max<index_t>(1, half / 2)));
}

// A lighter F for the F != G cases: pointwise conv, GroupNorm, ReLU.
template <class T>
using PointwiseBlock =
    revox::Sequential<revox::PointwiseConv3d<T>, revox::GroupNorm<T>, revox::ReLU<T>>;

template <class T>
PointwiseBlock<T> make_pointwise_block(index_t half, index_t num_groups) {
  return PointwiseBlock<T>(revox::PointwiseConv3d<T>(half, half, true),
                           revox::GroupNorm<T>(num_groups, half), revox::ReLU<T>());
}

using SEUNet = UNet<double, SEMBConv<double>>;
using MixedUNet = UNet<double, PointwiseBlock<double>, SqueezeExcite<double>>;

static_assert(revox::check_layer_contract<SEUNet>());
static_assert(revox::check_layer_contract<MixedUNet>());
static_assert(std::is_same_v<UNet<float>, UNet<float, revox::ConfiguredBlock<float>,
                                               revox::ConfiguredBlock<float>>>);
static_assert(revox::check_layer_contract<revox::ConfiguredBlock<float>>());

inline UNetConfig small_config(std::vector<index_t> widths, index_t blocks_per_level = 1) {
  UNetConfig c;
  c.widths = std::move(widths);
  c.num_groups = 2;
  c.expand_ratio = 2;
  c.blocks_per_level = blocks_per_level;
  return c;
}

inline SEUNet make_se_unet(const UNetConfig& c) {
  return SEUNet(c, [groups = c.num_groups](index_t half, index_t) {
    return make_se_mbconv<double>(half, groups);
  });
}

inline MixedUNet make_mixed_unet(const UNetConfig& c) {
  return MixedUNet(
      c,
      [groups = c.num_groups](index_t half, index_t) {
        return make_pointwise_block<double>(half, groups);
      },
      [](index_t half, index_t) { return SqueezeExcite<double>(half, 1); });
}

template <class Net>
std::vector<std::string> param_names(Net& net) {
  std::vector<std::string> names;
  net.visit_params([&](const std::string& name, auto&) { names.push_back(name); });
  return names;
}

using revox_test::forward_backward;

template <class T>
double max_abs_diff(const T* a, const T* b, std::size_t count) {
  double worst = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return worst;
}

template <class Net>
void check_gradcheck(Net& net, Shape5 input, index_t max_checks) {
  const auto result = revox_test::unet_gradcheck(net, input, max_checks);
  INFO(result.report);
  REQUIRE(result.passed);
  CHECK(result.checked > 0);
}

// Reversible and stored-activation runs of the same net give the same output and gradients.
template <class Net>
void check_reversible_matches_stored(Net& net, Shape5 input) {
  revox::Parameters<double> params(net);
  revox::Rng rng(31);
  net.reset_parameters(rng);
  Tensor<double> x(input);
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<double> dy(net.output_shape(input));
  revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
  REQUIRE(net.reversible());
  const auto rev = forward_backward(net, params, x, dy);
  net.set_reversible(false);
  REQUIRE(net.encoder_blocks(0).store_activations());
  const auto stored = forward_backward(net, params, x, dy);
  net.set_reversible(true);
  CHECK(max_abs_diff(rev.y.data(), stored.y.data(), static_cast<std::size_t>(rev.y.numel())) ==
        0.0);
  CHECK(max_abs_diff(rev.dx.data(), stored.dx.data(), static_cast<std::size_t>(rev.dx.numel())) <
        1e-10);
  for (const auto& entry : params.entries()) {
    INFO("parameter " << entry.name);
    CHECK(max_abs_diff(rev.grads.data() + entry.offset, stored.grads.data() + entry.offset,
                       static_cast<std::size_t>(entry.shape.numel())) < 1e-10);
  }
}

// Nested spheres in `in_channels` noisy channels; three nested target masks.
struct ToyTask {
  Tensor<float> x;
  Tensor<float> target;
};

inline ToyTask toy_task(index_t size, index_t in_channels, revox::Rng& rng) {
  ToyTask task{Tensor<float>(Shape5{1, in_channels, size, size, size}),
               Tensor<float>(Shape5{1, 3, size, size, size})};
  const double center = 0.5 * static_cast<double>(size - 1);
  const double extent = static_cast<double>(size);
  const double radii[3] = {0.35 * extent, 0.22 * extent, 0.12 * extent};
  for (index_t d = 0; d < size; ++d) {
    for (index_t h = 0; h < size; ++h) {
      for (index_t w = 0; w < size; ++w) {
        const double dd = static_cast<double>(d) - center;
        const double dh = static_cast<double>(h) - center;
        const double dw = static_cast<double>(w) - center;
        const double r = std::sqrt(dd * dd + dh * dh + dw * dw);
        for (index_t c = 0; c < 3; ++c) {
          task.target.view().at(0, c, d, h, w) = r <= radii[c] ? 1.0f : 0.0f;
        }
        const double signal = (r <= radii[0] ? 1.0 : 0.0) + (r <= radii[1] ? 0.5 : 0.0) +
                              (r <= radii[2] ? 0.5 : 0.0);
        for (index_t c = 0; c < in_channels; ++c) {
          task.x.view().at(0, c, d, h, w) = static_cast<float>(
              signal * (1.0 + 0.2 * static_cast<double>(c)) + 0.3 * rng.normal());
        }
      }
    }
  }
  return task;
}

// `steps` Adam steps on the soft Dice loss; returns the loss of every step.
template <class Net>
std::vector<double> train(Net& net, const ToyTask& task, int steps, revox::Rng& rng) {
  revox::Parameters<float> params(net);
  net.reset_parameters(rng);
  revox::optim::Adam<float> adam(params, revox::optim::AdamOptions{1e-2});
  const revox::Cpu dev;
  Tensor<float> logits(task.target.shape());
  Tensor<float> dlogits(task.target.shape());
  Tensor<float> dx;
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    typename Net::template Saved<revox::Cpu> saved;
    net.forward(dev, task.x.cview(), logits.view(), &saved);
    const double loss =
        revox::losses::soft_dice_loss(logits.cview(), task.target.cview(), dlogits.view());
    REQUIRE(std::isfinite(loss));
    losses.push_back(loss);
    params.zero_grad();
    net.backward(dev, saved, dlogits.cview(), dx.view());
    adam.step();
  }
  return losses;
}

}  // namespace revox_test::custom_unet
