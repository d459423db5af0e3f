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
//             ACCUMULATE; dx must not share memory with dy. Backward releases what it was
//             given in `saved`.
// Preconditions: the layer is bound to a Parameters before forward; y and dx do not overlap
//             x or dy. Kernels: revox/ops/depthwise_conv3d.hpp.
#pragma once

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/weight_and_bias.hpp"
#include "revox/ops/depthwise_conv3d.hpp"

namespace revox {

template <class T>
class DepthwiseConv3d : public detail::WeightAndBias<T> {
  using Params = detail::WeightAndBias<T>;

 public:
  using value_type = T;
  static constexpr index_t kKernelSize = 3;
  static constexpr index_t kFanIn = kKernelSize * kKernelSize * kKernelSize;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  explicit DepthwiseConv3d(index_t channels, bool bias = true)
      : Params("DepthwiseConv3d", ParamShape{channels, 1, kKernelSize, kKernelSize, kKernelSize},
               channels, bias, kFanIn),
        channels_(channels) {
    REVOX_CHECK(channels > 0, "DepthwiseConv3d: channels must be positive, got ", channels);
  }

  index_t channels() const { return channels_; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("DepthwiseConv3d", in, channels_);
    return in;
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("DepthwiseConv3d", output_shape(x.shape), y.shape);
    this->check_bound("forward");
    ops::depthwise_conv3d_forward(dev, x, this->weight().value, this->bias_value(), y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const Gradients mode = detail::check_backward(
        "DepthwiseConv3d", *this, saved.x.data != nullptr, saved.x.shape, dy, dx,
        {detail::Sharing::disjoint, "nothing saved", /*dx_as_output_view=*/true});
    this->check_bound("backward");
    if (mode == Gradients::input_and_params) {
      // dx and the parameter gradients in one pass over x and dy.
      ops::depthwise_conv3d_backward(dev, saved.x, dy, this->weight().value, dx,
                                     this->weight().grad, this->bias_grad());
    } else {
      ops::depthwise_conv3d_backward_weight(dev, saved.x, dy, this->weight().grad,
                                            this->bias_grad());
    }
    saved = Saved<Dev>{};
  }

 private:
  index_t channels_;
};

}  // namespace revox
