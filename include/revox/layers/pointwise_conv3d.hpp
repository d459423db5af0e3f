// revox/layers/pointwise_conv3d.hpp — PointwiseConv3d<T>: a 1x1x1 convolution, i.e. a
// matrix product over channels at every voxel (PyTorch: nn.Conv3d(Cin, Cout, 1, bias=...)).
//
// Shapes:   x (N, Cin, D, H, W) -> y (N, Cout, D, H, W).
// Computes: y_n = W x_n + b, with x_n the (Cin, D*H*W) matrix of batch item n.
// Params:   "weight" [Cout, Cin, 1, 1, 1]; "bias" [Cout] (only when constructed with bias).
//           Initialised like PyTorch: U(-1/sqrt(Cin), 1/sqrt(Cin)) for both.
// Mixed precision: PointwiseConv3d<bfloat16> takes and gives bfloat16 activations and
//           gradients; its parameters are float (param_t, bound to a Parameters<float>), and
//           the kernels are ops/cpu/gemm_bf16.hpp's (CPU only so far).
// Saved:    a view of x (the caller keeps x alive and unchanged until backward).
// Backward: dx_n = W^T dy_n is ASSIGNED (skipped when dx is empty); dW += sum_n dy_n x_n^T and
//           db += sum over batch and voxels of dy are ACCUMULATED. dx must not share memory
//           with dy.
// Preconditions: the layer is bound to a Parameters; y and dx do not alias x or dy.
#pragma once

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/weight_and_bias.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox {

template <class T>
class PointwiseConv3d : public detail::WeightAndBias<T> {
  using Params = detail::WeightAndBias<T>;

 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  PointwiseConv3d(index_t in_channels, index_t out_channels, bool bias = true)
      : Params("PointwiseConv3d", ParamShape{out_channels, in_channels, 1, 1, 1}, out_channels,
               bias, in_channels),
        in_channels_(in_channels),
        out_channels_(out_channels) {
    REVOX_CHECK(in_channels > 0, "PointwiseConv3d: in_channels must be positive, got ",
                in_channels);
    REVOX_CHECK(out_channels > 0, "PointwiseConv3d: out_channels must be positive, got ",
                out_channels);
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("PointwiseConv3d", in, in_channels_);
    return in.with_channels(out_channels_);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("PointwiseConv3d", output_shape(x.shape), y.shape);
    this->check_bound("forward");
    ops::pointwise_conv3d_forward(dev, x, this->weight().value, this->bias_value(), y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const Gradients mode = detail::check_backward("PointwiseConv3d", *this,
                                                  saved.x.data != nullptr, saved.x.shape, dy,
                                                  dx, {detail::Sharing::disjoint});
    this->check_bound("backward");
    if (mode == Gradients::input_and_params) {
      ops::pointwise_conv3d_backward_data(dev, dy, this->weight().value, dx);
    }
    ops::pointwise_conv3d_backward_weight(dev, saved.x, dy, this->weight().grad,
                                          this->bias_grad());
  }

 private:
  index_t in_channels_;
  index_t out_channels_;
};

}  // namespace revox
