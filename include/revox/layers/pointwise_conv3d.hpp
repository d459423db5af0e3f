// revox/layers/pointwise_conv3d.hpp — PointwiseConv3d<T>: a 1x1x1 convolution, i.e. a
// matrix product over channels at every voxel (PyTorch: nn.Conv3d(Cin, Cout, 1, bias=...)).
//
// Shapes:   x (N, Cin, D, H, W) -> y (N, Cout, D, H, W).
// Computes: y_n = W x_n + b, with x_n the (Cin, D*H*W) matrix of batch item n.
// Params:   "weight" [Cout, Cin, 1, 1, 1]; "bias" [Cout] (only when constructed with bias).
//           Initialised like PyTorch: U(-1/sqrt(Cin), 1/sqrt(Cin)) for both.
// Saved:    a view of x (the caller keeps x alive and unchanged until backward).
// Backward: dx_n = W^T dy_n is ASSIGNED (skipped when dx is empty); dW += sum_n dy_n x_n^T and
//           db += sum over batch and voxels of dy are ACCUMULATED.
// Preconditions: the layer is bound to a Parameters; y and dx do not alias x or dy.
#pragma once

#include <string>

#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox {

template <class T>
class PointwiseConv3d {
 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  PointwiseConv3d(index_t in_channels, index_t out_channels, bool bias = true)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        has_bias_(bias),
        weight_(ParamShape{out_channels, in_channels, 1, 1, 1}),
        bias_(ParamShape{out_channels}) {
    REVOX_CHECK(in_channels > 0, "PointwiseConv3d: in_channels must be positive, got ",
                in_channels);
    REVOX_CHECK(out_channels > 0, "PointwiseConv3d: out_channels must be positive, got ",
                out_channels);
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  bool has_bias() const { return has_bias_; }
  Param<T>& weight() { return weight_; }
  const Param<T>& weight() const { return weight_; }
  // Unused (and never bound) when the layer has no bias.
  Param<T>& bias() { return bias_; }
  const Param<T>& bias() const { return bias_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "PointwiseConv3d: input extents must be positive, got ", in);
    REVOX_CHECK_EQ("PointwiseConv3d: input channels", in_channels_, in.c);
    return in.with_channels(out_channels_);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("weight"), weight_);
    if (has_bias_) fn(std::string("bias"), bias_);
  }

  void reset_parameters(Rng& rng) {
    check_bound("reset_parameters");
    const index_t fan_in = in_channels_;
    init::kaiming_uniform_conv_weight(weight_.value, weight_.numel(), fan_in, rng);
    if (has_bias_) init::uniform_conv_bias(bias_.value, bias_.numel(), fan_in, rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("PointwiseConv3d", output_shape(x.shape), y.shape);
    check_bound("forward");
    ops::pointwise_conv3d_forward(dev, x, weight_.value, has_bias_ ? bias_.value : nullptr, y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(saved.x.data != nullptr,
                "PointwiseConv3d::backward: nothing saved; run forward with `saved` first");
    check_bound("backward");
    const Shape5 expected_dy = output_shape(saved.x.shape);
    REVOX_CHECK(dy.shape == expected_dy, "PointwiseConv3d::backward: dy shape ", dy.shape,
                " does not match the output shape ", expected_dy);
    if (!dx.empty()) {
      REVOX_CHECK(dx.shape == saved.x.shape, "PointwiseConv3d::backward: dx shape ", dx.shape,
                  " does not match the input shape ", saved.x.shape);
      ops::pointwise_conv3d_backward_data(dev, dy, weight_.value, dx);
    }
    ops::pointwise_conv3d_backward_weight(dev, saved.x, dy, weight_.grad,
                                          has_bias_ ? bias_.grad : nullptr);
  }

 private:
  void check_bound(const char* what) const {
    REVOX_CHECK(weight_.bound() && (!has_bias_ || bias_.bound()), "PointwiseConv3d::", what,
                ": parameters are not bound; construct a revox::Parameters from the layer first");
  }

  index_t in_channels_;
  index_t out_channels_;
  bool has_bias_;
  Param<T> weight_;
  Param<T> bias_;
};

}  // namespace revox
