// revox/layers/upsample_trilinear.hpp — UpsampleTrilinear<T>: trilinear upsampling by 2 on
// D, H and W with align_corners=False (torch.nn.Upsample(scale_factor=2,
// mode="trilinear")), the decoder's upsampling.
//
// Shapes:   x (N, C, D, H, W), all positive  ->  y (N, C, 2D, 2H, 2W).
// Forward:  y ASSIGNED; output o on an axis of input size n reads inputs i0 = floor(src)
//           and i0 + 1 (clamped to n - 1) with weights 1 - l1 and l1, where
//           src = max((o + 0.5) / 2 - 0.5, 0) and l1 = src - i0 (PyTorch's formula).
// Saved:    the input shape only (the op is linear: backward never reads x).
// Backward: dx ASSIGNED (skipped when dx is empty; dx must not share memory with dy), the
//           adjoint of the forward; each channel's sums run in a fixed order (deterministic
//           for any thread count).
// No parameters.
#pragma once

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/upsample_trilinear.hpp"

namespace revox {

template <class T>
class UpsampleTrilinear : public detail::NoParameters {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    Shape5 input_shape{};  // all zero until forward has run with `saved`
  };

  UpsampleTrilinear() = default;

  Shape5 output_shape(Shape5 in) const {
    detail::check_input_shape("UpsampleTrilinear", in);
    return Shape5{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("UpsampleTrilinear", output_shape(x.shape), y.shape);
    ops::upsample_trilinear(dev, x, y);
    if (saved != nullptr) saved->input_shape = x.shape;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const Gradients mode = detail::check_backward(
        "UpsampleTrilinear", *this, saved.input_shape.valid(), saved.input_shape, dy, dx,
        {detail::Sharing::disjoint, "nothing was saved"});
    if (mode == Gradients::params_only) return;
    ops::upsample_trilinear_backward(dev, dy, dx);
  }
};

}  // namespace revox
