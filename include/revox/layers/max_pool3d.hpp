// revox/layers/max_pool3d.hpp — MaxPool3d<T>: 2x2x2 max pooling with stride 2 and no
// padding (torch.nn.MaxPool3d(2)), the downsampling between U-Net encoder levels.
//
// Shapes:   x (N, C, D, H, W) with D, H, W >= 2  ->  y (N, C, D/2, H/2, W/2), floored as in
//           PyTorch (a trailing odd row, column or slice is dropped).
// Forward:  y ASSIGNED. Ties: the first maximum in (kd, kh, kw) order wins; a NaN in a
//           window makes its output NaN (PyTorch's CPU kernel; see ops/cpu/max_pool3d.hpp).
// Saved:    the argmax of each window as one byte per OUTPUT element (Tensor<uint8_t, Dev>,
//           value (kd * 2 + kh) * 2 + kw) and the input shape; x itself is not kept.
// Backward: dx ASSIGNED (skipped when dx is empty; dx must not share memory with dy): each dy
//           goes to its window's argmax, every other input voxel (floored-away ones included)
//           gets 0. Backward releases the saved argmax: run forward with `saved` again before
//           another backward.
// No parameters.
#pragma once

#include <cstdint>
#include <utility>

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/max_pool3d.hpp"

namespace revox {

template <class T>
class MaxPool3d : public detail::NoParameters {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    Tensor<std::uint8_t, Dev> argmax;  // (N, C, D/2, H/2, W/2)
    Shape5 input_shape{};
  };

  MaxPool3d() = default;

  Shape5 output_shape(Shape5 in) const {
    detail::check_input_shape("MaxPool3d", in);
    REVOX_CHECK(in.d >= 2, "MaxPool3d: input D (", in.d, ") must be at least 2");
    REVOX_CHECK(in.h >= 2, "MaxPool3d: input H (", in.h, ") must be at least 2");
    REVOX_CHECK(in.w >= 2, "MaxPool3d: input W (", in.w, ") must be at least 2");
    return Shape5{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    const Shape5 out = output_shape(x.shape);
    check_output_view("MaxPool3d", out, y.shape);
    if (saved == nullptr) {
      ops::max_pool3d(dev, x, y, TensorView<std::uint8_t>{});
      return;
    }
    if (saved->argmax.shape() != out) saved->argmax = Tensor<std::uint8_t, Dev>(out);
    saved->input_shape = x.shape;
    ops::max_pool3d(dev, x, y, saved->argmax.view());
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    detail::check_saved("MaxPool3d", !saved.argmax.empty(), "nothing was saved");
    const Gradients mode = detail::check_backward_shapes(
        "MaxPool3d", dy, saved.argmax.shape(), dx, saved.input_shape,
        {detail::Sharing::disjoint});
    if (mode == Gradients::input_and_params) {
      ops::max_pool3d_backward(dev, dy, saved.argmax.cview(), dx);
    }
    saved.argmax = Tensor<std::uint8_t, Dev>();
  }
};

}  // namespace revox
