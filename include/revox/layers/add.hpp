// revox/layers/add.hpp — Add<T>: y = a + b, the U-Net's additive skip connection. A binary
// op, not a unary layer: it has no Saved and does not fit Sequential.
//
// Shapes:   a, b and y all the same shape (positive extents); a mismatch throws
//           revox::Error naming both shapes.
// Forward:  forward(dev, a, b, y): y ASSIGNED. y may be the very view a or b (in place);
//           partial overlap throws.
// Backward: backward(dev, dy, da, db): da = dy and db = dy, both ASSIGNED; either may be
//           empty when that gradient is not wanted, and either may be the very view dy.
//           Nothing is saved: the gradient does not depend on a or b.
// No parameters: visit_params and reset_parameters exist for uniformity and do nothing.
#pragma once

#include <cstddef>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/copy.hpp"

namespace revox {

template <class T>
class Add : public detail::NoParameters {
 public:
  using value_type = T;

  Add() = default;

  // The shape of a + b; throws unless a and b have the same positive extents.
  Shape5 output_shape(Shape5 a, Shape5 b) const {
    REVOX_CHECK(a == b, "Add: shapes of a ", a, " and b ", b, " must match");
    detail::check_input_shape("Add", a);
    return a;
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> a, TensorView<const T> b,
               TensorView<T> y) const {
    check_output_view("Add", output_shape(a.shape, b.shape), y.shape);
    ops::add(dev, a, b, y);
  }

  template <class Dev>
  void backward(const Dev& dev, TensorView<const T> dy, TensorView<T> da,
                TensorView<T> db) const {
    REVOX_CHECK(dy.shape.valid(), "Add::backward: dy shape ", dy.shape,
                " must have all extents positive");
    copy_gradient(dev, "da", dy, da);
    copy_gradient(dev, "db", dy, db);
  }

 private:
  template <class Dev>
  static void copy_gradient(const Dev& dev, const char* name, TensorView<const T> dy,
                            TensorView<T> d) {
    if (d.empty()) return;
    REVOX_CHECK(d.shape == dy.shape, "Add::backward: ", name, " shape ", d.shape,
                " does not match the dy shape ", dy.shape);
    detail::check_sharing("Add", "backward", name, d, "dy", dy, detail::Sharing::same_or_disjoint,
                          "propagate the gradient in place");
    if (detail::same_memory(d, dy)) return;
    ops::copy(dev, dy, d);
  }
};

}  // namespace revox
