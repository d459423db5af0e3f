// revox/layers/conv_block.hpp — ConvBlock<T>: the standard convolutional block of the
// paper's decoder and of its Baseline's reversible F and G,
//   Conv3d(Cin, Cout, 3, padding 1, no bias) -> GroupNorm(num_groups, Cout) -> ReLU
// (PyTorch: nn.Sequential(conv=nn.Conv3d(Cin, Cout, 3, padding=1, bias=False),
//  norm=nn.GroupNorm(num_groups, Cout), act=nn.ReLU())). The convolution has no bias
// because the GroupNorm after it removes any per-channel constant.
//
// Shapes:     x (N, Cin, D, H, W) -> y (N, Cout, D, H, W).
// Parameters: "conv.weight" [Cout, Cin, 3, 3, 3], "norm.weight" [Cout], "norm.bias" [Cout].
// Saved:      the sub-layers' Saved (a view of x for the convolution) and the two
//             intermediate activations (conv output, norm output), each Cout channels;
//             without `saved` at most one intermediate is alive.
// Backward:   dx ASSIGNED (skipped when dx is empty); parameter gradients ACCUMULATE.
// Preconditions: Cout divisible by num_groups (the constructor checks); bound to a
//             Parameters before forward.
#pragma once

#include <string>
#include <utility>

#include "revox/core/error.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/sequential.hpp"

namespace revox {

template <class T>
class ConvBlock {
  using Chain = Sequential<Conv3d<T>, GroupNorm<T>, ReLU<T>>;

 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    saved_t<Chain, Dev> chain;
  };

  ConvBlock(index_t in_channels, index_t out_channels, index_t num_groups)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        num_groups_(num_groups),
        chain_(make_chain(in_channels, out_channels, num_groups)) {}

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  index_t num_groups() const { return num_groups_; }
  // The sub-layers, for code that runs the block's pieces itself (UNet's lean decoder
  // recomputes the convolution in backward and back-propagates ReLU from the block's output).
  Conv3d<T>& conv() { return chain_.template get<0>(); }
  const Conv3d<T>& conv() const { return chain_.template get<0>(); }
  GroupNorm<T>& norm() { return chain_.template get<1>(); }
  const GroupNorm<T>& norm() const { return chain_.template get<1>(); }

  Shape5 output_shape(Shape5 in) const {
    detail::check_input("ConvBlock", in, in_channels_);
    return chain_.output_shape(in);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    auto named = [&fn](const char* prefix) {
      return [&fn, prefix](const std::string& name, Param<T>& p) { fn(prefix + name, p); };
    };
    conv().visit_params(named("conv."));
    norm().visit_params(named("norm."));
  }

  void reset_parameters(Rng& rng) { chain_.reset_parameters(rng); }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ConvBlock", output_shape(x.shape), y.shape);
    chain_.forward(dev, x, y, saved != nullptr ? &saved->chain : nullptr);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    chain_.backward(dev, saved.chain, dy, dx);
  }

 private:
  static Chain make_chain(index_t in_channels, index_t out_channels, index_t num_groups) {
    REVOX_CHECK(in_channels > 0, "ConvBlock: in_channels must be positive, got ", in_channels);
    REVOX_CHECK(out_channels > 0, "ConvBlock: out_channels must be positive, got ",
                out_channels);
    REVOX_CHECK(num_groups > 0, "ConvBlock: num_groups must be positive, got ", num_groups);
    REVOX_CHECK(out_channels % num_groups == 0, "ConvBlock: out_channels (", out_channels,
                ") must be divisible by num_groups (", num_groups, ")");
    return Chain(Conv3d<T>(in_channels, out_channels, 3, /*bias=*/false),
                 GroupNorm<T>(num_groups, out_channels), ReLU<T>());
  }

  index_t in_channels_;
  index_t out_channels_;
  index_t num_groups_;
  Chain chain_;
};

}  // namespace revox
