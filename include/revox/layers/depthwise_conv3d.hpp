// revox/layers/depthwise_conv3d.hpp — DepthwiseConv3d<T>, PyTorch's
//   nn.Conv3d(C, C, kernel_size=3, stride=1, padding=1, groups=C, bias=bias)
// Each channel is convolved with its own 3x3x3 kernel (zero padding 1), plus its bias.
//
// Shapes:     x, y, dy, dx: (N, C, D, H, W), all the same (stride 1, padding 1).
// Parameters: "weight" [C, 1, 3, 3, 3]; "bias" [C] when bias = true.
//             reset_parameters: PyTorch's defaults with fan_in = (C / groups) * 27 = 27, i.e.
//             U(-1/sqrt(27), 1/sqrt(27)) for the weight and for the bias.
// Saved:      a view of x (the caller keeps x alive and unchanged until backward).
// Backward:   dx = (dy/dx)^T dy is ASSIGNED (skipped when dx is empty); dweight and dbias
//             ACCUMULATE. Backward releases what it was given in `saved`.
// Preconditions: the layer is bound to a Parameters before forward; y and dx do not overlap
//             x or dy. Kernels: revox/ops/depthwise_conv3d.hpp.
#pragma once

#include <string>

#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/depthwise_conv3d.hpp"

namespace revox {

template <class T>
class DepthwiseConv3d {
 public:
  using value_type = T;
  static constexpr index_t kKernelSize = 3;
  static constexpr index_t kFanIn = kKernelSize * kKernelSize * kKernelSize;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  explicit DepthwiseConv3d(index_t channels, bool bias = true)
      : channels_(channels), has_bias_(bias) {
    REVOX_CHECK(channels > 0, "DepthwiseConv3d: channels must be positive, got ", channels);
    weight_ = Param<T>(ParamShape{channels, 1, kKernelSize, kKernelSize, kKernelSize});
    if (has_bias_) bias_ = Param<T>(ParamShape{channels});
  }

  index_t channels() const { return channels_; }
  bool has_bias() const { return has_bias_; }
  Param<T>& weight() { return weight_; }
  const Param<T>& weight() const { return weight_; }
  // Unbound and empty when the layer has no bias.
  Param<T>& bias() { return bias_; }
  const Param<T>& bias() const { return bias_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "DepthwiseConv3d: input extents must be positive, got ", in);
    REVOX_CHECK_EQ("DepthwiseConv3d: input channels", channels_, in.c);
    return in;
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("weight"), weight_);
    if (has_bias_) fn(std::string("bias"), bias_);
  }

  void reset_parameters(Rng& rng) {
    check_bound();
    init::kaiming_uniform_conv_weight(weight_.value, weight_.numel(), kFanIn, rng);
    if (has_bias_) init::uniform_conv_bias(bias_.value, bias_.numel(), kFanIn, rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("DepthwiseConv3d", output_shape(x.shape), y.shape);
    check_bound();
    ops::depthwise_conv3d_forward(dev, x, weight_.value, has_bias_ ? bias_.value : nullptr, y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(saved.x.data != nullptr,
                "DepthwiseConv3d::backward: nothing saved; run forward with `saved` before "
                "each backward");
    check_bound();
    REVOX_CHECK(dy.shape == saved.x.shape, "DepthwiseConv3d::backward: dy shape ", dy.shape,
                " does not match the expected ", saved.x.shape);
    T* dbias = has_bias_ ? bias_.grad : nullptr;
    if (!dx.empty()) {
      // dx and the parameter gradients in one pass over x and dy.
      check_output_view("DepthwiseConv3d::backward (dx)", saved.x.shape, dx.shape);
      ops::depthwise_conv3d_backward(dev, saved.x, dy, weight_.value, dx, weight_.grad, dbias);
    } else {
      ops::depthwise_conv3d_backward_weight(dev, saved.x, dy, weight_.grad, dbias);
    }
    saved = Saved<Dev>{};
  }

 private:
  void check_bound() const {
    REVOX_CHECK(weight_.bound() && (!has_bias_ || bias_.bound()),
                "DepthwiseConv3d: parameters are not bound; construct a Parameters<T> from the "
                "layer (or the model holding it) first");
  }

  index_t channels_;
  bool has_bias_;
  Param<T> weight_;
  Param<T> bias_;
};

}  // namespace revox
