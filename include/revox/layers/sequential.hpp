// revox/layers/sequential.hpp — Sequential<L0, L1, ..., Lk>: layers applied one after
// another, composed flat and variadic at compile time. Sequential is itself a layer, so
// sequences nest.
//
// Shapes: output_shape folds the layers' output_shape over the input.
// Saved:  each layer's Saved, plus the intermediate activations (layer i's output is
//         layer i+1's input, which layer i+1's Saved may reference). Without `saved` only
//         two activations are alive at any time.
// Reversible layers and layers that keep their output (layers/layer.hpp: is_reversible_v,
//         keeps_output_v) are honoured: a reversible layer after the first runs IN PLACE on
//         its input's memory (its input is never kept: its backward rebuilds it there); the
//         layer before a run of reversible layers that ends the sequence writes straight
//         into the caller's y, where that run then works (as hand-wired code would); a
//         reversible first layer copies x (the caller's) into its output. A buffer that a
//         layer's Saved refers to is released only after that layer's backward. Gradients
//         propagate in place through reversible layers.
//         Sequential keeps its output (keeps_output_v) exactly when its last layer does: its
//         Saved then refers to y, and backward overwrites y.
// Backward: runs the layers in reverse; intermediate gradients are allocated one at a time
//         and each activation is released as soon as its last reader has finished its
//         backward. dx is assigned (an empty dx, Gradients::params_only, reaches the first
//         layer as its mode); parameter gradients accumulate.
// Parameter names are PyTorch's nn.Sequential names: "0.weight", "1.bias", ...
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "revox/layers/layer.hpp"

namespace revox {

template <class... Layers>
class Sequential {
  static_assert(sizeof...(Layers) >= 1, "Sequential needs at least one layer");
  static_assert((check_layer_contract<Layers>() && ...),
                "every layer in a Sequential must satisfy the layer contract");

  template <std::size_t I>
  using layer_t = std::tuple_element_t<I, std::tuple<Layers...>>;

 public:
  using value_type = typename layer_t<0>::value_type;
  static_assert((std::is_same_v<typename Layers::value_type, value_type> && ...),
                "every layer in a Sequential must have the same value_type");
  static constexpr std::size_t kSize = sizeof...(Layers);
  // Saved refers to y and backward overwrites it when the last layer does so.
  static constexpr bool keeps_output = keeps_output_v<layer_t<kSize - 1>>;

  template <class Dev>
  struct Saved {
    std::tuple<saved_t<Layers, Dev>...> layers;
    // Buffers of the intermediate activations: activation i (layer i's output, layer i+1's
    // input) lives in activations[buffer_of<i>()]; a reversible layer in the middle shares
    // its input's buffer, and released buffers are empty.
    std::array<Tensor<value_type, Dev>, kSize - 1> activations;
  };

  Sequential() = default;
  explicit Sequential(Layers... layers) : layers_(std::move(layers)...) {}

  template <std::size_t I>
  auto& get() { return std::get<I>(layers_); }
  template <std::size_t I>
  const auto& get() const { return std::get<I>(layers_); }

  Shape5 output_shape(Shape5 in) const {
    return std::apply([&](const auto&... layer) { return fold_shape(in, layer...); }, layers_);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    visit_params_from<0>(fn);
  }

  void reset_parameters(Rng& rng) {
    std::apply([&](auto&... layer) { (layer.reset_parameters(rng), ...); }, layers_);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const value_type> x, TensorView<value_type> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("Sequential", output_shape(x.shape), y.shape);
    if (saved != nullptr) {
      saved->layers = std::tuple<saved_t<Layers, Dev>...>{};
      saved->activations = std::array<Tensor<value_type, Dev>, kSize - 1>{};
    }
    Tensor<value_type, Dev> owner;
    forward_from<0>(dev, x, y, saved, owner);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const value_type> dy,
                TensorView<value_type> dx) {
    Tensor<value_type, Dev> owner;
    backward_from<kSize - 1>(dev, saved, dy, dx, gradients_for(dx), owner);
  }

 private:
  using T = value_type;

  // Layers I+1 .. kSize-1 are all reversible.
  template <std::size_t I>
  static constexpr bool reversible_after() {
    if constexpr (I + 1 >= kSize) {
      return true;
    } else {
      return is_reversible_v<layer_t<I + 1>> && reversible_after<I + 1>();
    }
  }
  // Activation I lives in the caller's y when only reversible layers follow it: they run in
  // place there, as a hand-written network would do.
  template <std::size_t I>
  static constexpr bool output_is_y = reversible_after<I>();
  // A reversible layer after the first runs in place on its input's memory.
  template <std::size_t I>
  static constexpr bool in_place = I > 0 && is_reversible_v<layer_t<I>>;

  // The index in Saved::activations of the buffer that holds activation I (when it is not y).
  template <std::size_t I>
  static constexpr std::size_t buffer_of() {
    if constexpr (in_place<I>) {
      return buffer_of<I - 1>();
    } else {
      return I;
    }
  }

  template <class First, class... Rest>
  static Shape5 fold_shape(Shape5 in, const First& first, const Rest&... rest) {
    if constexpr (sizeof...(Rest) == 0) {
      return first.output_shape(in);
    } else {
      return fold_shape(first.output_shape(in), rest...);
    }
  }

  template <std::size_t I, class Fn>
  void visit_params_from(Fn& fn) {
    if constexpr (I < kSize) {
      const std::string prefix = std::to_string(I) + ".";
      std::get<I>(layers_).visit_params(
          [&](const std::string& name, auto& param) { fn(prefix + name, param); });
      visit_params_from<I + 1>(fn);
    }
  }

  // `in` is layer I's input: x for I == 0, else activation I-1 (in y, in
  // saved->activations, or in `owner` when nothing is saved).
  template <std::size_t I, class Dev>
  void forward_from(const Dev& dev, TensorView<const T> in, TensorView<T> y, Saved<Dev>* saved,
                    Tensor<T, Dev>& owner) const {
    const auto& layer = std::get<I>(layers_);
    auto* layer_saved = saved != nullptr ? &std::get<I>(saved->layers) : nullptr;
    if constexpr (output_is_y<I>) {
      // In place when layer I is reversible and its input is already in y.
      layer.forward(dev, in, y, layer_saved);
      if constexpr (I + 1 < kSize) forward_from<I + 1>(dev, TensorView<const T>(y), y, saved, owner);
    } else if constexpr (in_place<I>) {
      Tensor<T, Dev>& buffer = saved != nullptr ? saved->activations[buffer_of<I>()] : owner;
      layer.forward(dev, buffer.cview(), buffer.view(), layer_saved);
      forward_from<I + 1>(dev, buffer.cview(), y, saved, owner);
    } else {
      Tensor<T, Dev> out(layer.output_shape(in.shape));
      layer.forward(dev, in, out.view(), layer_saved);
      if (saved != nullptr) {
        saved->activations[I] = std::move(out);
        forward_from<I + 1>(dev, saved->activations[I].cview(), y, saved, owner);
      } else {
        owner = std::move(out);  // releases the previous intermediate
        forward_from<I + 1>(dev, owner.cview(), y, saved, owner);
      }
    }
  }

  // `owner` holds the current upstream gradient when it is an intermediate; `mode` is what
  // the caller asked of the first layer (every later layer gives its input gradient).
  template <std::size_t I, class Dev>
  void backward_from(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy,
                     TensorView<T> dx, Gradients mode, Tensor<T, Dev>& owner) {
    auto& layer = std::get<I>(layers_);
    if constexpr (I == 0) {
      revox::backward(layer, dev, std::get<0>(saved.layers), dy, dx, mode);
      if constexpr (kSize > 1) saved.activations[0] = Tensor<T, Dev>();
    } else {
      if constexpr (is_reversible_v<layer_t<I>>) {
        // The input is rebuilt from the output, so it is not held here; the layer's own
        // Saved reports a missing forward.
        if constexpr (I + 1 < kSize) {  // dy is our own intermediate: propagate in place
          revox::backward(layer, dev, std::get<I>(saved.layers), dy, owner.view());
        } else {
          Tensor<T, Dev> dx_layer(dy.shape);
          revox::backward(layer, dev, std::get<I>(saved.layers), dy, dx_layer.view());
          owner = std::move(dx_layer);
        }
      } else {
        const Shape5 in_shape = input_shape<I>(saved, dy);
        Tensor<T, Dev> dx_layer(in_shape);
        revox::backward(layer, dev, std::get<I>(saved.layers), dy, dx_layer.view());
        owner = std::move(dx_layer);  // releases the previous gradient
      }
      // Layer I's own output buffer: its last reader (layer I's Saved) is done, unless the
      // buffer now holds layer I's input (in place) or is the caller's y.
      if constexpr (I + 1 < kSize && keeps_output_v<layer_t<I>> && !in_place<I> &&
                    !output_is_y<I>) {
        saved.activations[I] = Tensor<T, Dev>();
      }
      // Layer I's input: needed further only by a previous layer that keeps its output.
      if constexpr (!keeps_output_v<layer_t<I - 1>> && !output_is_y<I - 1>) {
        saved.activations[buffer_of<I - 1>()] = Tensor<T, Dev>();
      }
      backward_from<I - 1>(dev, saved, owner.cview(), dx, mode, owner);
    }
  }

  // The shape of layer I's input (I > 0, layer I not reversible, so activation I-1 is in one
  // of our buffers), from that buffer.
  template <std::size_t I, class Dev>
  static Shape5 input_shape(const Saved<Dev>& saved, TensorView<const T> /*dy*/) {
    static_assert(!output_is_y<I - 1>);
    detail::check_saved("Sequential", !saved.activations[buffer_of<I - 1>()].empty(),
                        "the saved activations are gone");
    return saved.activations[buffer_of<I - 1>()].shape();
  }

  std::tuple<Layers...> layers_;
};

}  // namespace revox
