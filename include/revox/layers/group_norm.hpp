// revox/layers/group_norm.hpp — GroupNorm<T>, PyTorch's
//   nn.GroupNorm(num_groups, num_channels, eps=eps, affine=True)
// Each sample's channels are split into num_groups groups of C/G consecutive channels; each
// group is normalised by its own mean and biased variance over (C/G)*D*H*W elements, then
// scaled and shifted per channel: y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
// No running statistics: the output depends on x and the parameters only.
//
// Shapes:     x, y, dy, dx: (N, C, D, H, W), C = num_channels.
// Parameters: "weight" [C] (reset to 1), "bias" [C] (reset to 0).
// Saved:      a view of x (the caller keeps x alive and unchanged until backward), and the
//             mean and rstd = 1/sqrt(var + eps) of each (n, g), owned, (N, G) in double.
// Backward:   dx = (dy/dx)^T dy is ASSIGNED (skipped when dx is empty); dweight and dbias
//             ACCUMULATE. Backward releases what `saved` holds.
// Preconditions: num_channels divisible by num_groups (the constructor checks); the layer is
//             bound to a Parameters before forward. Kernels: revox/ops/group_norm.hpp.
// Devices:    forward/backward run on the device passed (Cpu or Cuda); the saved statistics
//             live on that device. reset_parameters writes through host pointers: on Cuda,
//             initialise a CPU-bound copy and copy its flat buffer to the device.
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "revox/core/error.hpp"
#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/weight_and_bias.hpp"
#include "revox/ops/group_norm.hpp"

namespace revox {

namespace detail {

// What GroupNorm and InstanceNorm3d (one group per channel) keep for backward.
template <class T, class Dev>
struct NormSaved {
  TensorView<const T> x;
  Tensor<double, Dev> mean;  // (N, G, 1, 1, 1)
  Tensor<double, Dev> rstd;  // (N, G, 1, 1, 1)
};

// A norm layer's forward bookkeeping: with `saved`, keeps the view of x and allocates the
// (N, groups) mean and rstd on Dev; returns where the op writes them (nullptr without saved).
template <class T, class Dev>
std::pair<double*, double*> save_norm_stats(NormSaved<T, Dev>* saved, TensorView<const T> x,
                                            index_t groups) {
  if (saved == nullptr) return {nullptr, nullptr};
  const Shape5 stats{x.shape.n, groups, 1, 1, 1};
  saved->x = x;
  saved->mean = Tensor<double, Dev>(stats);
  saved->rstd = Tensor<double, Dev>(stats);
  return {saved->mean.data(), saved->rstd.data()};
}

}  // namespace detail

template <class T>
class GroupNorm : public detail::NormAffine<T> {
  using Affine = detail::NormAffine<T>;

 public:
  using value_type = T;

  template <class Dev>
  using Saved = detail::NormSaved<T, Dev>;  // mean and rstd (N, G)

  GroupNorm(index_t num_groups, index_t num_channels, double eps = 1e-5)
      : Affine("GroupNorm"), num_groups_(num_groups), num_channels_(num_channels), eps_(eps) {
    REVOX_CHECK(num_groups > 0, "GroupNorm: num_groups must be positive, got ", num_groups);
    REVOX_CHECK(num_channels > 0, "GroupNorm: num_channels must be positive, got ", num_channels);
    REVOX_CHECK(num_channels % num_groups == 0, "GroupNorm: channels (", num_channels,
                ") must be divisible by num_groups (", num_groups, ")");
    REVOX_CHECK(std::isfinite(eps) && eps >= 0.0, "GroupNorm: eps must be finite and >= 0, got ",
                eps);
    Affine::make_affine(num_channels);
  }

  index_t num_groups() const { return num_groups_; }
  index_t num_channels() const { return num_channels_; }
  double eps() const { return eps_; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("GroupNorm", in, num_channels_);
    return in;
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("GroupNorm", output_shape(x.shape), y.shape);
    Affine::check_bound("forward");
    const auto [mean, rstd] = detail::save_norm_stats(saved, x, num_groups_);
    ops::group_norm_forward(dev, x, num_groups_, eps_, this->weight().value,
                            this->bias().value, y, mean, rstd);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    // dx may be the very memory of dy (the lean U-Net decoder runs it in place).
    detail::check_backward("GroupNorm", *this,
                           saved.x.data != nullptr && !saved.mean.empty() && !saved.rstd.empty(),
                           saved.x.shape, dy, dx,
                           {detail::Sharing::any, "nothing saved", /*dx_as_output_view=*/true});
    Affine::check_bound("backward");
    // An empty dx (Gradients::params_only) tells the op to skip the input gradient.
    ops::group_norm_backward(dev, saved.x, dy, num_groups_, saved.mean.data(),
                             saved.rstd.data(), this->weight().value, dx, this->weight().grad,
                             this->bias().grad);
    saved = Saved<Dev>{};
  }

 private:
  index_t num_groups_;
  index_t num_channels_;
  double eps_;
};

}  // namespace revox
