// revox/layers/weight_and_bias.hpp — detail::WeightAndBias<T>, the parameters the three
// convolutions (Conv3d, DepthwiseConv3d, PointwiseConv3d) share: a weight and an optional
// per-output-channel bias, with PyTorch's names, order and initialisation.
//
// Params:   "weight" (the layer's shape), then "bias" [Cout] only when constructed with bias.
//           reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, then the
//           same for the bias (init::kaiming_uniform_conv_weight, init::uniform_conv_bias).
// Without bias, bias() is an empty Param that is never bound.
// The convolutions derive from it publicly: weight(), bias(), has_bias(), visit_params and
// reset_parameters are theirs.
#pragma once

#include <string>

#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/checks.hpp"

namespace revox::detail {

template <class T>
class WeightAndBias {
 public:
  // `layer` names the layer in errors; it must outlive the object (a string literal).
  WeightAndBias(const char* layer, ParamShape weight_shape, index_t out_channels, bool bias,
                index_t fan_in)
      : weight_(weight_shape),
        bias_(bias ? Param<T>(ParamShape{out_channels}) : Param<T>()),
        layer_(layer),
        has_bias_(bias),
        fan_in_(fan_in) {}

  bool has_bias() const { return has_bias_; }
  Param<T>& weight() { return weight_; }
  const Param<T>& weight() const { return weight_; }
  // Unbound and empty when the layer has no bias.
  Param<T>& bias() { return bias_; }
  const Param<T>& bias() const { return bias_; }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("weight"), weight_);
    if (has_bias_) fn(std::string("bias"), bias_);
  }

  void reset_parameters(Rng& rng) {
    check_bound("reset_parameters");
    init::kaiming_uniform_conv_weight(weight_.value, weight_.numel(), fan_in_, rng);
    if (has_bias_) init::uniform_conv_bias(bias_.value, bias_.numel(), fan_in_, rng);
  }

 protected:
  // `what`: the call that needs the parameters ("forward", "backward").
  void check_bound(const char* what) const {
    detail::check_bound(layer_, what, weight_.bound() && (!has_bias_ || bias_.bound()));
  }
  // The bias for the kernels: null without bias.
  const T* bias_value() const { return has_bias_ ? bias_.value : nullptr; }
  T* bias_grad() const { return has_bias_ ? bias_.grad : nullptr; }

 private:
  Param<T> weight_;
  Param<T> bias_;
  const char* layer_;
  bool has_bias_;
  index_t fan_in_;
};

}  // namespace revox::detail
