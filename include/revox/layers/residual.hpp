// revox/layers/residual.hpp — Residual<F>: the identity skip connection y = x + F(x).
//
// Shapes:   F must keep its input shape: output_shape(in) throws revox::Error naming both
//           shapes when F.output_shape(in) != in.
// Forward:  y ASSIGNED. For an ordinary F, F writes straight into y and x is added in place
//           (F's Saved may view x, never y, so no extra buffer is needed). For an F that
//           keeps its output (keeps_output_v<F>: reversible blocks, containers ending in one),
//           forward with `saved` gives F an output buffer owned by Saved, which stays alive
//           and unread by anything else until F's backward, and writes y = F(x) + x from it;
//           without `saved` F writes straight into y.
// Backward: dx = dy + F^T(dy) ASSIGNED (skipped when dx is empty: F's parameter gradients
//           still ACCUMULATE); dx must not share memory with dy. backward consumes `saved`
//           (F's buffer is released after F's backward): run forward again before another
//           backward.
// Parameters: F's, named "fn.<name>" — the state_dict names of the PyTorch twin
//           `class Residual(nn.Module): def __init__(self, fn): super().__init__(); self.fn = fn`
//           with forward `x + self.fn(x)`.
// Residual itself does not keep its output (its Saved never refers to y), so it fits any
// container like an ordinary layer; like any layer, its Saved may refer to x (through F's).
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/add.hpp"

namespace revox {

template <class F>
class Residual {
  static_assert(check_layer_contract<F>(),
                "Residual<F>: F must satisfy the revox layer contract (revox/layers/layer.hpp)");

 public:
  using value_type = typename F::value_type;
  using T = value_type;
  using fn_type = F;

  template <class Dev>
  struct Saved {
    saved_t<F, Dev> fn{};
    // F's output, owned here only when F keeps its output (keeps_output_v<F>).
    Tensor<T, Dev> fn_output;
  };

  Residual() = default;
  explicit Residual(F fn) : fn_(std::move(fn)) {}

  F& fn() { return fn_; }
  const F& fn() const { return fn_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "Residual: input extents must be positive, got ", in);
    const Shape5 out = fn_.output_shape(in);
    REVOX_CHECK(out == in, "Residual: the residual function must keep its input shape ", in,
                ", but gives ", out);
    return in;
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    fn_.visit_params([&fn](const std::string& name, auto& p) { fn("fn." + name, p); });
  }

  void reset_parameters(Rng& rng) { fn_.reset_parameters(rng); }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("Residual", output_shape(x.shape), y.shape);
    detail::check_sharing("Residual", "forward", "x", x, "y", y, detail::Sharing::disjoint);
    if constexpr (keeps_output_v<F>) {
      if (saved != nullptr) {
        saved->fn_output = Tensor<T, Dev>(x.shape);
        fn_.forward(dev, x, saved->fn_output.view(), &saved->fn);
        ops::add(dev, saved->fn_output.cview(), x, y);
        return;
      }
    }
    fn_.forward(dev, x, y, saved != nullptr ? &saved->fn : nullptr);
    ops::add_inplace(dev, y, x);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if constexpr (keeps_output_v<F>) {
      detail::check_saved("Residual", !saved.fn_output.empty(),
                          "the saved output of the residual function is gone");
    }
    // The output has the input's shape: dx has dy's (F checks dy against what it saved).
    const Gradients mode = detail::check_backward_shapes("Residual", dy, dy.shape, dx, dy.shape,
                                                         {detail::Sharing::disjoint});
    revox::backward(fn_, dev, saved.fn, dy, dx, mode);
    if (mode == Gradients::input_and_params) ops::add_inplace(dev, dx, dy);
    if constexpr (keeps_output_v<F>) {
      saved.fn_output = Tensor<T, Dev>();  // F's backward has consumed it
    }
  }

 private:
  F fn_;
};

}  // namespace revox
