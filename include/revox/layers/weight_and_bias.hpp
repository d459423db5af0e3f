// revox/layers/weight_and_bias.hpp — the parameters layers share: a weight and a bias, with
// PyTorch's names, order and initialisation.
//
// detail::WeightAndBias<T>  the three convolutions (Conv3d, DepthwiseConv3d, PointwiseConv3d):
//     "weight" (the layer's shape), then "bias" [Cout] only when constructed with bias.
//     reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, then the same for
//     the bias (init::kaiming_uniform_conv_weight, init::uniform_conv_bias).
// detail::NormAffine<T>     the norm layers (GroupNorm, InstanceNorm3d): "weight" [C] (reset
//     to 1), then "bias" [C] (reset to 0); both, or neither for a layer built without them
//     (InstanceNorm3d, affine = false).
// Both derive from detail::WeightBiasParams<T>: the two Params, each present or not (an absent
// one is empty and never bound), the accessors and visit_params. The layers derive from them
// publicly: weight(), bias(), has_bias() or affine(), visit_params and reset_parameters are
// theirs.
#pragma once

#include <string>

#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/precision.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/checks.hpp"

namespace revox::detail {

// Parameters have type param_t<T> (core/precision.hpp): float for bfloat16 activations.
template <class T>
class WeightBiasParams {
 public:
  using param_type = param_t<T>;

  bool has_bias() const { return has_bias_; }
  Param<param_type>& weight() { return weight_; }
  const Param<param_type>& weight() const { return weight_; }
  // Unbound and empty when the layer has no bias.
  Param<param_type>& bias() { return bias_; }
  const Param<param_type>& bias() const { return bias_; }

  template <class Fn>
  void visit_params(Fn&& fn) {
    if (has_weight_) fn(std::string("weight"), weight_);
    if (has_bias_) fn(std::string("bias"), bias_);
  }

 protected:
  // `layer` names the layer in errors; it must outlive the object (a string literal).
  explicit WeightBiasParams(const char* layer) : layer_(layer) {}
  void make_weight(ParamShape shape) {
    weight_ = Param<param_type>(shape);
    has_weight_ = true;
  }
  void make_bias(index_t channels) {
    bias_ = Param<param_type>(ParamShape{channels});
    has_bias_ = true;
  }
  bool has_weight() const { return has_weight_; }
  // `what`: the call that needs the parameters ("forward", "backward", "reset_parameters").
  void check_bound(const char* what) const {
    detail::check_bound(layer_, what,
                        (!has_weight_ || weight_.bound()) && (!has_bias_ || bias_.bound()));
  }
  // The bias for the kernels: null without bias.
  const param_type* bias_value() const { return has_bias_ ? bias_.value : nullptr; }
  param_type* bias_grad() const { return has_bias_ ? bias_.grad : nullptr; }

 private:
  Param<param_type> weight_;
  Param<param_type> bias_;
  const char* layer_;
  bool has_weight_ = false;
  bool has_bias_ = false;
};

template <class T>
class WeightAndBias : public WeightBiasParams<T> {
  using Base = WeightBiasParams<T>;

 public:
  WeightAndBias(const char* layer, ParamShape weight_shape, index_t out_channels, bool bias,
                index_t fan_in)
      : Base(layer), fan_in_(fan_in) {
    Base::make_weight(weight_shape);
    if (bias) Base::make_bias(out_channels);
  }

  void reset_parameters(Rng& rng) {
    Base::check_bound("reset_parameters");
    init::kaiming_uniform_conv_weight(this->weight().value, this->weight().numel(), fan_in_, rng);
    if (this->has_bias()) {
      init::uniform_conv_bias(this->bias().value, this->bias().numel(), fan_in_, rng);
    }
  }

 private:
  index_t fan_in_;
};

template <class T>
class NormAffine : public WeightBiasParams<T> {
  using Base = WeightBiasParams<T>;

 public:
  bool affine() const { return Base::has_weight(); }

  void reset_parameters(Rng& /*rng*/) {
    if (!affine()) return;
    Base::check_bound("reset_parameters");
    init::constant(this->weight().value, this->weight().numel(), param_t<T>(1));
    init::constant(this->bias().value, this->bias().numel(), param_t<T>(0));
  }

 protected:
  explicit NormAffine(const char* layer) : Base(layer) {}
  // Called by the layer's constructor once its arguments are checked.
  void make_affine(index_t channels) {
    Base::make_weight(ParamShape{channels});
    Base::make_bias(channels);
  }
};

}  // namespace revox::detail
