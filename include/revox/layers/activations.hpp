// revox/layers/activations.hpp — ReLU<T>, ReLU6<T> and LeakyReLU<T>(negative_slope), the
// parameter-free element-wise activations (torch.nn.ReLU, ReLU6, LeakyReLU).
//
// Shapes:   y has the shape of x (any N, C, D, H, W, all positive).
// Forward:  y ASSIGNED. NaN propagates: relu(NaN) = relu6(NaN) = leaky_relu(NaN) = NaN.
//           y may alias x only when `saved` is null (backward reads x).
// Saved:    a view of x; the caller keeps x alive and unchanged until backward.
// Backward: dx ASSIGNED (skipped when dx is empty), PyTorch's values at the kinks:
//             ReLU       dx = dy where x > 0, else 0           (x == 0 -> 0)
//             ReLU6      dx = dy where 0 < x < 6, else 0       (x == 0, x == 6 -> 0)
//             LeakyReLU  dx = dy where x > 0, else slope * dy  (x == 0 -> slope * dy)
//           A NaN x passes dy (slope * dy for LeakyReLU), as PyTorch's kernels do.
// No parameters: visit_params visits nothing, reset_parameters does nothing.
#pragma once

#include <cmath>
#include <string>

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/activations.hpp"

namespace revox {

namespace detail {

inline void check_activation_input(const char* layer, const Shape5& in) {
  REVOX_CHECK(in.valid(), layer, ": input shape ", in, " must have all extents positive");
}

// Checks what backward receives; returns false when dx is not wanted.
template <class T>
bool check_activation_backward(const char* layer, TensorView<const T> x,
                               TensorView<const T> dy, TensorView<T> dx) {
  REVOX_CHECK(x.data != nullptr, layer,
              "::backward: nothing was saved; run forward with `saved` before backward");
  REVOX_CHECK(dy.shape == x.shape, layer, "::backward: dy shape ", dy.shape,
              " does not match the input shape ", x.shape);
  if (dx.empty()) return false;
  REVOX_CHECK(dx.shape == x.shape, layer, "::backward: dx shape ", dx.shape,
              " does not match the input shape ", x.shape);
  return true;
}

}  // namespace detail

template <class T>
class ReLU {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  ReLU() = default;

  Shape5 output_shape(Shape5 in) const {
    detail::check_activation_input("ReLU", in);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(Rng&) {}

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ReLU", output_shape(x.shape), y.shape);
    ops::relu(dev, x, y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if (!detail::check_activation_backward("ReLU", saved.x, dy, dx)) return;
    ops::relu_backward(dev, saved.x, dy, dx);
  }
};

template <class T>
class ReLU6 {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  ReLU6() = default;

  Shape5 output_shape(Shape5 in) const {
    detail::check_activation_input("ReLU6", in);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(Rng&) {}

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ReLU6", output_shape(x.shape), y.shape);
    ops::relu6(dev, x, y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if (!detail::check_activation_backward("ReLU6", saved.x, dy, dx)) return;
    ops::relu6_backward(dev, saved.x, dy, dx);
  }
};

template <class T>
class LeakyReLU {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  // PyTorch's default slope is 0.01. The slope is applied in precision T.
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope_(negative_slope) {
    REVOX_CHECK(std::isfinite(negative_slope), "LeakyReLU: negative_slope must be finite, got ",
                negative_slope);
  }

  double negative_slope() const { return negative_slope_; }

  Shape5 output_shape(Shape5 in) const {
    detail::check_activation_input("LeakyReLU", in);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(Rng&) {}

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("LeakyReLU", output_shape(x.shape), y.shape);
    ops::leaky_relu(dev, x, y, negative_slope_);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if (!detail::check_activation_backward("LeakyReLU", saved.x, dy, dx)) return;
    ops::leaky_relu_backward(dev, saved.x, dy, dx, negative_slope_);
  }

 private:
  double negative_slope_;
};

}  // namespace revox
