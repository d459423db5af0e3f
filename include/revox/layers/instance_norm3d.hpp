// revox/layers/instance_norm3d.hpp — InstanceNorm3d<T>, PyTorch's
//   nn.InstanceNorm3d(num_features, eps=eps, affine=affine, track_running_stats=False)
// Each (n, c) plane is normalised by its own mean and biased variance over D*H*W elements:
// y = (x - mean) / sqrt(var + eps), then, when affine, y * weight[c] + bias[c].
// No running statistics: the output depends on x and the parameters only (PyTorch's default,
// and what a reversible block needs to recompute a layer exactly).
//
// Shapes:     x, y, dy, dx: (N, C, D, H, W), C = channels.
// Parameters: affine only: "weight" [C] (reset to 1), "bias" [C] (reset to 0); none otherwise.
// Saved:      a view of x (the caller keeps x alive and unchanged until backward), and the
//             mean and rstd = 1/sqrt(var + eps) of each (n, c), owned, (N, C) in double.
// Backward:   dx = (dy/dx)^T dy is ASSIGNED (skipped when dx is empty); dweight and dbias
//             ACCUMULATE. Backward releases what `saved` holds.
// Preconditions: bound to a Parameters before forward when affine. Kernels:
//             revox/ops/instance_norm.hpp. A single spatial element is allowed (PyTorch
//             refuses it in training): var = 0, so y = bias and dx = 0.
// Devices:    forward/backward run on the device passed (Cpu, Cuda or Plan); the saved
//             statistics live on that device. reset_parameters writes through host pointers:
//             on Cuda, initialise a CPU-bound copy and copy its flat buffer to the device.
#pragma once

#include <cmath>
#include <string>

#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/group_norm.hpp"  // detail::NormSaved, save_norm_stats
#include "revox/layers/layer.hpp"
#include "revox/layers/weight_and_bias.hpp"
#include "revox/ops/instance_norm.hpp"

namespace revox {

template <class T>
class InstanceNorm3d : public detail::NormAffine<T> {
  using Affine = detail::NormAffine<T>;

 public:
  using value_type = T;

  template <class Dev>
  using Saved = detail::NormSaved<T, Dev>;  // mean and rstd (N, C)

  explicit InstanceNorm3d(index_t channels, bool affine = false, double eps = 1e-5)
      : Affine("InstanceNorm3d"), channels_(channels), eps_(eps) {
    REVOX_CHECK(channels > 0, "InstanceNorm3d: channels must be positive, got ", channels);
    REVOX_CHECK(std::isfinite(eps) && eps >= 0.0,
                "InstanceNorm3d: eps must be finite and >= 0, got ", eps);
    if (affine) Affine::make_affine(channels);
  }

  index_t channels() const { return channels_; }
  double eps() const { return eps_; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("InstanceNorm3d", in, channels_);
    return in;
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("InstanceNorm3d", output_shape(x.shape), y.shape);
    Affine::check_bound("forward");
    const auto [mean, rstd] = detail::save_norm_stats(saved, x, channels_);
    ops::instance_norm_forward(dev, x, this->weight().value, this->bias().value, eps_, y, mean,
                               rstd);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    // dx may be the very memory of dy (the kernels read a whole plane before writing it).
    detail::check_backward("InstanceNorm3d", *this,
                           saved.x.data != nullptr && !saved.mean.empty() && !saved.rstd.empty(),
                           saved.x.shape, dy, dx,
                           {detail::Sharing::any, "nothing saved", /*dx_as_output_view=*/true});
    Affine::check_bound("backward");
    // An empty dx (Gradients::params_only) tells the op to skip the input gradient.
    ops::instance_norm_backward(dev, saved.x, dy, this->weight().value, saved.mean.data(),
                                saved.rstd.data(), dx, this->weight().grad, this->bias().grad);
    saved = Saved<Dev>{};
  }

 private:
  index_t channels_;
  double eps_;
};

}  // namespace revox
