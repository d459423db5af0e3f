// revox/layers/sequential.hpp — Sequential<L0, L1, ..., Lk>: layers applied one after
// another, composed flat and variadic at compile time. Sequential is itself a layer, so
// sequences nest.
//
// Shapes: output_shape folds the layers' output_shape over the input.
// Saved:  each layer's Saved, plus the k intermediate activations (layer i's output is
//         layer i+1's input, which layer i+1's Saved may reference). Without `saved` only
//         two activations are alive at any time.
// Backward: runs the layers in reverse; intermediate gradients are allocated one at a time
//         and each activation is released as soon as the layer that read it has finished
//         its backward. dx is assigned; parameter gradients accumulate.
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

 public:
  using value_type = typename std::tuple_element_t<0, std::tuple<Layers...>>::value_type;
  static_assert((std::is_same_v<typename Layers::value_type, value_type> && ...),
                "every layer in a Sequential must have the same value_type");
  static constexpr std::size_t kSize = sizeof...(Layers);

  template <class Dev>
  struct Saved {
    std::tuple<saved_t<Layers, Dev>...> layers;
    // activations[i] is the output of layer i (the input of layer i + 1).
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
    Tensor<value_type, Dev> owner;
    forward_from<0>(dev, x, y, saved, owner);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const value_type> dy,
                TensorView<value_type> dx) {
    Tensor<value_type, Dev> owner;
    backward_from<kSize - 1>(dev, saved, dy, dx, owner);
  }

 private:
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

  // `owner` holds the current input when it is an intermediate that nobody saves.
  template <std::size_t I, class Dev>
  void forward_from(const Dev& dev, TensorView<const value_type> in, TensorView<value_type> y,
                    Saved<Dev>* saved, Tensor<value_type, Dev>& owner) const {
    const auto& layer = std::get<I>(layers_);
    auto* layer_saved = saved != nullptr ? &std::get<I>(saved->layers) : nullptr;
    if constexpr (I + 1 == kSize) {
      layer.forward(dev, in, y, layer_saved);
    } else {
      Tensor<value_type, Dev> out(layer.output_shape(in.shape));
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

  // `owner` holds the current upstream gradient when it is an intermediate.
  template <std::size_t I, class Dev>
  void backward_from(const Dev& dev, Saved<Dev>& saved, TensorView<const value_type> dy,
                     TensorView<value_type> dx, Tensor<value_type, Dev>& owner) {
    auto& layer = std::get<I>(layers_);
    if constexpr (I == 0) {
      layer.backward(dev, std::get<0>(saved.layers), dy, dx);
    } else {
      REVOX_CHECK(!saved.activations[I - 1].empty(),
                  "Sequential::backward: the saved activations are gone; run forward with "
                  "`saved` before each backward");
      Tensor<value_type, Dev> dx_layer(saved.activations[I - 1].shape());
      layer.backward(dev, std::get<I>(saved.layers), dy, dx_layer.view());
      saved.activations[I - 1] = Tensor<value_type, Dev>();  // its only reader is done
      owner = std::move(dx_layer);                          // releases the previous gradient
      backward_from<I - 1>(dev, saved, owner.cview(), dx, owner);
    }
  }

  std::tuple<Layers...> layers_;
};

}  // namespace revox
