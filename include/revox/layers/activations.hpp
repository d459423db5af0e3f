// revox/layers/activations.hpp — ReLU<T>, ReLU6<T> and LeakyReLU<T>(negative_slope), the
// parameter-free element-wise activations (torch.nn.ReLU, ReLU6, LeakyReLU): one layer,
// Elementwise<T, Fn>, over the function Fn (its name, its ops:: forward and backward, any
// constant it takes), and each activation a thin class over it.
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

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/activations.hpp"

namespace revox {

// A parameter-free layer y = f(x) element by element, whose backward reads x. Fn provides
//   static constexpr const char* kName;
//   template <class Dev, class T> void forward(const Dev&, TensorView<const T> x,
//                                              TensorView<T> y) const;
//   template <class Dev, class T> void backward(const Dev&, TensorView<const T> x,
//                                               TensorView<const T> dy, TensorView<T> dx) const;
template <class T, class Fn>
class Elementwise : public detail::NoParameters {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    TensorView<const T> x;
  };

  Elementwise() = default;
  explicit Elementwise(Fn fn) : fn_(fn) {}

  Shape5 output_shape(Shape5 in) const {
    detail::check_input_shape(Fn::kName, in);
    return in;
  }
  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view(Fn::kName, output_shape(x.shape), y.shape);
    fn_.forward(dev, x, y);
    if (saved != nullptr) saved->x = x;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    detail::check_saved(Fn::kName, saved.x.data != nullptr, "nothing was saved");
    if (detail::check_backward_shapes(Fn::kName, dy, saved.x.shape, dx, saved.x.shape) ==
        Gradients::params_only) {
      return;
    }
    fn_.backward(dev, saved.x, dy, dx);
  }

 protected:
  const Fn& function() const { return fn_; }

 private:
  Fn fn_{};
};

namespace detail {

struct ReLUFunction {
  static constexpr const char* kName = "ReLU";
  template <class Dev, class T>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y) const {
    ops::relu(dev, x, y);
  }
  template <class Dev, class T>
  void backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                TensorView<T> dx) const {
    ops::relu_backward(dev, x, dy, dx);
  }
};

struct ReLU6Function {
  static constexpr const char* kName = "ReLU6";
  template <class Dev, class T>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y) const {
    ops::relu6(dev, x, y);
  }
  template <class Dev, class T>
  void backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                TensorView<T> dx) const {
    ops::relu6_backward(dev, x, dy, dx);
  }
};

struct LeakyReLUFunction {
  static constexpr const char* kName = "LeakyReLU";
  double negative_slope = 0.01;
  template <class Dev, class T>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y) const {
    ops::leaky_relu(dev, x, y, negative_slope);
  }
  template <class Dev, class T>
  void backward(const Dev& dev, TensorView<const T> x, TensorView<const T> dy,
                TensorView<T> dx) const {
    ops::leaky_relu_backward(dev, x, dy, dx, negative_slope);
  }
};

}  // namespace detail

template <class T>
class ReLU : public Elementwise<T, detail::ReLUFunction> {};

template <class T>
class ReLU6 : public Elementwise<T, detail::ReLU6Function> {};

template <class T>
class LeakyReLU : public Elementwise<T, detail::LeakyReLUFunction> {
 public:
  // PyTorch's default slope is 0.01. The slope is applied in precision T.
  explicit LeakyReLU(double negative_slope = 0.01)
      : Elementwise<T, detail::LeakyReLUFunction>(checked(negative_slope)) {}

  double negative_slope() const { return this->function().negative_slope; }

 private:
  static detail::LeakyReLUFunction checked(double negative_slope) {
    REVOX_CHECK(std::isfinite(negative_slope), "LeakyReLU: negative_slope must be finite, got ",
                negative_slope);
    return detail::LeakyReLUFunction{negative_slope};
  }
};

}  // namespace revox
