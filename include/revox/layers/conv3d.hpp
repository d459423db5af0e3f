// revox/layers/conv3d.hpp — Conv3d<T>: a dense 3D convolution with stride 1, 'same' zero
// padding and groups 1 (PyTorch: nn.Conv3d(Cin, Cout, k, padding=k // 2, bias=...)).
//
// Shapes:   x (N, Cin, D, H, W) -> y (N, Cout, D, H, W); kernel_size 1 or 3.
// Computes: y[n, co, d, h, w] = b[co] + sum_{ci, kd, kh, kw} W[co, ci, kd, kh, kw] *
//           x[n, ci, d + kd - p, h + kh - p, w + kw - p]   (p = kernel_size / 2, zero outside)
//           — a cross-correlation, as in PyTorch. kernel_size 1 runs the pointwise kernels.
// Params:   "weight" [Cout, Cin, k, k, k]; "bias" [Cout] (only when constructed with bias).
//           Initialised like PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = Cin * k^3
//           (layers/weight_and_bias.hpp).
// Saved:    a view of x (the caller keeps x alive and unchanged until backward).
// Backward: dx is ASSIGNED (skipped when dx is empty); dW and db are ACCUMULATED.
//           dx must not share memory with dy.
// Memory:   the kernels for k = 3 (CPU and CUDA) take an im2col buffer of at most
//           cpu::kConv3dScratchBytes (16 MiB; more only when one output row of
//           Cin * 27 * W elements is larger) from the device's tracking allocator, freed
//           before each call returns.
// Preconditions: the layer is bound to a Parameters; y and dx do not alias x or dy.
#pragma once

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/weight_and_bias.hpp"
#include "revox/ops/conv3d.hpp"

namespace revox {

template <class T>
class Conv3d : public detail::WeightAndBias<T> {
  using Params = detail::WeightAndBias<T>;

 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  Conv3d(index_t in_channels, index_t out_channels, int kernel_size, bool bias = true)
      : Params("Conv3d", ParamShape{out_channels, in_channels, kernel_size, kernel_size, kernel_size},
               out_channels, bias, in_channels * kernel_size * kernel_size * kernel_size),
        in_channels_(in_channels),
        out_channels_(out_channels),
        kernel_size_(kernel_size) {
    REVOX_CHECK(kernel_size == 1 || kernel_size == 3,
                "Conv3d: kernel_size must be 1 or 3, got ", kernel_size);
    REVOX_CHECK(in_channels > 0, "Conv3d: in_channels must be positive, got ", in_channels);
    REVOX_CHECK(out_channels > 0, "Conv3d: out_channels must be positive, got ", out_channels);
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  int kernel_size() const { return kernel_size_; }
  int padding() const { return kernel_size_ / 2; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("Conv3d", in, in_channels_);
    return in.with_channels(out_channels_);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("Conv3d", output_shape(x.shape), y.shape);
    this->check_bound("forward");
    ops::conv3d_forward(dev, x, this->weight().value, this->bias_value(), y, kernel_size_);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const Gradients mode = detail::check_backward("Conv3d", *this, saved.x.data != nullptr,
                                                  saved.x.shape, dy, dx,
                                                  {detail::Sharing::disjoint});
    this->check_bound("backward");
    if (mode == Gradients::input_and_params) {
      ops::conv3d_backward_data(dev, dy, this->weight().value, dx, kernel_size_);
    }
    ops::conv3d_backward_weight(dev, saved.x, dy, this->weight().grad, this->bias_grad(),
                                kernel_size_);
  }

 private:
  index_t in_channels_;
  index_t out_channels_;
  int kernel_size_;
};

}  // namespace revox
