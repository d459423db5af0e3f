// revox/layers/mbconv.hpp — MBConv<T>: the MobileNetV2 inverted bottleneck in 3D, as the
// paper uses it for F and G of its reversible blocks.
//
//   x (N, Cin, D, H, W)
//   -> expand:   1x1x1 conv Cin -> Cin*e (no bias) -> GroupNorm -> ReLU6
//   -> depthwise: 3x3x3 depthwise conv (no bias)   -> GroupNorm -> ReLU6
//   -> project:  1x1x1 conv Cin*e -> Cout (no bias) -> GroupNorm          (linear bottleneck)
//   y (N, Cout, D, H, W)
// With expand ratio e = 1 the expansion conv, its norm and its activation are absent, as in
// MobileNetV2. The convolutions have no bias because a GroupNorm follows each of them. There
// is no residual connection inside the block: in the reversible U-Net the coupling
// y1 = x1 + F(x2) provides it.
//
// Parameters (PyTorch state-dict names of the equivalent module): expand.weight
// [Cin*e, Cin, 1, 1, 1], expand_norm.{weight,bias}, depthwise.weight [Cin*e, 1, 3, 3, 3],
// depthwise_norm.{weight,bias}, project.weight [Cout, Cin*e, 1, 1, 1],
// project_norm.{weight,bias}.
// Saved: the sub-layers' Saved and the intermediate activations (six of the seven are
// Cin*e channels wide); without `saved` at most two intermediates are alive.
// backward: dx assigned, parameter gradients accumulated (the layer contract).
// Preconditions: Cin*e and Cout divisible by num_groups.
#pragma once

#include <optional>
#include <string>

#include "revox/layers/activations.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"

namespace revox {

template <class T>
class MBConv {
  using Expanded = Sequential<PointwiseConv3d<T>, GroupNorm<T>, ReLU6<T>, DepthwiseConv3d<T>,
                              GroupNorm<T>, ReLU6<T>, PointwiseConv3d<T>, GroupNorm<T>>;
  using Unexpanded = Sequential<DepthwiseConv3d<T>, GroupNorm<T>, ReLU6<T>, PointwiseConv3d<T>,
                                GroupNorm<T>>;

 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    saved_t<Expanded, Dev> expanded;      // used when expand_ratio > 1
    saved_t<Unexpanded, Dev> unexpanded;  // used when expand_ratio == 1
  };

  MBConv(index_t in_channels, index_t out_channels, index_t expand_ratio, index_t num_groups)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        expand_ratio_(expand_ratio),
        num_groups_(num_groups) {
    REVOX_CHECK(in_channels > 0, "MBConv: in_channels must be positive, got ", in_channels);
    REVOX_CHECK(out_channels > 0, "MBConv: out_channels must be positive, got ", out_channels);
    REVOX_CHECK(expand_ratio >= 1, "MBConv: expand_ratio must be at least 1, got ", expand_ratio);
    REVOX_CHECK(num_groups > 0, "MBConv: num_groups must be positive, got ", num_groups);
    const index_t hidden = hidden_channels();
    REVOX_CHECK(hidden % num_groups == 0, "MBConv: expanded channels (", hidden, " = ",
                in_channels, " x expand_ratio ", expand_ratio,
                ") must be divisible by num_groups (", num_groups, ")");
    REVOX_CHECK(out_channels % num_groups == 0, "MBConv: out_channels (", out_channels,
                ") must be divisible by num_groups (", num_groups, ")");
    if (expand_ratio > 1) {
      expanded_.emplace(PointwiseConv3d<T>(in_channels, hidden, false),
                        GroupNorm<T>(num_groups, hidden), ReLU6<T>(),
                        DepthwiseConv3d<T>(hidden, false), GroupNorm<T>(num_groups, hidden),
                        ReLU6<T>(), PointwiseConv3d<T>(hidden, out_channels, false),
                        GroupNorm<T>(num_groups, out_channels));
    } else {
      unexpanded_.emplace(DepthwiseConv3d<T>(hidden, false), GroupNorm<T>(num_groups, hidden),
                          ReLU6<T>(), PointwiseConv3d<T>(hidden, out_channels, false),
                          GroupNorm<T>(num_groups, out_channels));
    }
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  index_t expand_ratio() const { return expand_ratio_; }
  index_t num_groups() const { return num_groups_; }
  index_t hidden_channels() const { return in_channels_ * expand_ratio_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.c == in_channels_, "MBConv: input channels: expected ", in_channels_,
                ", got ", in.c);
    return expanded_ ? expanded_->output_shape(in) : unexpanded_->output_shape(in);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    auto named = [&](const char* prefix) {
      return [&fn, prefix](const std::string& name, Param<T>& p) { fn(prefix + name, p); };
    };
    if (expanded_) {
      expanded_->template get<0>().visit_params(named("expand."));
      expanded_->template get<1>().visit_params(named("expand_norm."));
      expanded_->template get<3>().visit_params(named("depthwise."));
      expanded_->template get<4>().visit_params(named("depthwise_norm."));
      expanded_->template get<6>().visit_params(named("project."));
      expanded_->template get<7>().visit_params(named("project_norm."));
    } else {
      unexpanded_->template get<0>().visit_params(named("depthwise."));
      unexpanded_->template get<1>().visit_params(named("depthwise_norm."));
      unexpanded_->template get<3>().visit_params(named("project."));
      unexpanded_->template get<4>().visit_params(named("project_norm."));
    }
  }

  void reset_parameters(Rng& rng) {
    if (expanded_) {
      expanded_->reset_parameters(rng);
    } else {
      unexpanded_->reset_parameters(rng);
    }
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("MBConv", output_shape(x.shape), y.shape);
    if (expanded_) {
      expanded_->forward(dev, x, y, saved != nullptr ? &saved->expanded : nullptr);
    } else {
      unexpanded_->forward(dev, x, y, saved != nullptr ? &saved->unexpanded : nullptr);
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if (expanded_) {
      expanded_->backward(dev, saved.expanded, dy, dx);
    } else {
      unexpanded_->backward(dev, saved.unexpanded, dy, dx);
    }
  }

 private:
  index_t in_channels_;
  index_t out_channels_;
  index_t expand_ratio_;
  index_t num_groups_;
  std::optional<Expanded> expanded_;
  std::optional<Unexpanded> unexpanded_;
};

}  // namespace revox
