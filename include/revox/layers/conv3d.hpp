// revox/layers/conv3d.hpp — Conv3d<T>: a dense 3D convolution with stride 1, 'same' zero
// padding and groups 1 (PyTorch: nn.Conv3d(Cin, Cout, k, padding=k // 2, bias=...)).
//
// Shapes:   x (N, Cin, D, H, W) -> y (N, Cout, D, H, W); kernel_size 1 or 3.
// Computes: y[n, co, d, h, w] = b[co] + sum_{ci, kd, kh, kw} W[co, ci, kd, kh, kw] *
//           x[n, ci, d + kd - p, h + kh - p, w + kw - p]   (p = kernel_size / 2, zero outside)
//           — a cross-correlation, as in PyTorch. kernel_size 1 runs the pointwise kernels.
// Params:   "weight" [Cout, Cin, k, k, k]; "bias" [Cout] (only when constructed with bias).
//           Initialised like PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = Cin * k^3.
// Saved:    a view of x (the caller keeps x alive and unchanged until backward).
// Backward: dx is ASSIGNED (skipped when dx is empty); dW and db are ACCUMULATED.
// Memory:   the kernels for k = 3 (CPU and CUDA) take an im2col buffer of at most
//           cpu::kConv3dScratchBytes (16 MiB; more only when one output row of
//           Cin * 27 * W elements is larger) from the device's tracking allocator, freed
//           before each call returns.
// Preconditions: the layer is bound to a Parameters; y and dx do not alias x or dy.
#pragma once

#include <string>

#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/conv3d.hpp"

namespace revox {

template <class T>
class Conv3d {
 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  Conv3d(index_t in_channels, index_t out_channels, int kernel_size, bool bias = true)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        kernel_size_(kernel_size),
        has_bias_(bias),
        weight_(ParamShape{out_channels, in_channels, kernel_size, kernel_size, kernel_size}),
        bias_(ParamShape{out_channels}) {
    REVOX_CHECK(kernel_size == 1 || kernel_size == 3,
                "Conv3d: kernel_size must be 1 or 3, got ", kernel_size);
    REVOX_CHECK(in_channels > 0, "Conv3d: in_channels must be positive, got ", in_channels);
    REVOX_CHECK(out_channels > 0, "Conv3d: out_channels must be positive, got ", out_channels);
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  int kernel_size() const { return kernel_size_; }
  int padding() const { return kernel_size_ / 2; }
  bool has_bias() const { return has_bias_; }
  Param<T>& weight() { return weight_; }
  const Param<T>& weight() const { return weight_; }
  // Unused (and never bound) when the layer has no bias.
  Param<T>& bias() { return bias_; }
  const Param<T>& bias() const { return bias_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "Conv3d: input extents must be positive, got ", in);
    REVOX_CHECK_EQ("Conv3d: input channels", in_channels_, in.c);
    return in.with_channels(out_channels_);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("weight"), weight_);
    if (has_bias_) fn(std::string("bias"), bias_);
  }

  void reset_parameters(Rng& rng) {
    check_bound("reset_parameters");
    const index_t k = kernel_size_;
    const index_t fan_in = in_channels_ * k * k * k;
    init::kaiming_uniform_conv_weight(weight_.value, weight_.numel(), fan_in, rng);
    if (has_bias_) init::uniform_conv_bias(bias_.value, bias_.numel(), fan_in, rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("Conv3d", output_shape(x.shape), y.shape);
    check_bound("forward");
    ops::conv3d_forward(dev, x, weight_.value, has_bias_ ? bias_.value : nullptr, y,
                        kernel_size_);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(saved.x.data != nullptr,
                "Conv3d::backward: nothing saved; run forward with `saved` first");
    check_bound("backward");
    const Shape5 expected_dy = output_shape(saved.x.shape);
    REVOX_CHECK(dy.shape == expected_dy, "Conv3d::backward: dy shape ", dy.shape,
                " does not match the output shape ", expected_dy);
    if (!dx.empty()) {
      REVOX_CHECK(dx.shape == saved.x.shape, "Conv3d::backward: dx shape ", dx.shape,
                  " does not match the input shape ", saved.x.shape);
      ops::conv3d_backward_data(dev, dy, weight_.value, dx, kernel_size_);
    }
    ops::conv3d_backward_weight(dev, saved.x, dy, weight_.grad, has_bias_ ? bias_.grad : nullptr,
                                kernel_size_);
  }

 private:
  void check_bound(const char* what) const {
    REVOX_CHECK(weight_.bound() && (!has_bias_ || bias_.bound()), "Conv3d::", what,
                ": parameters are not bound; construct a revox::Parameters from the layer first");
  }

  index_t in_channels_;
  index_t out_channels_;
  int kernel_size_;
  bool has_bias_;
  Param<T> weight_;
  Param<T> bias_;
};

}  // namespace revox
