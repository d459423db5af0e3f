// A type-erased layer for tests that build compositions at run time: Erased<T, kind> wraps
// any CPU layer behind virtual calls and satisfies the layer contract itself, so containers
// (Sequential, ReversibleBlock, ...) can be instantiated over it while the layers inside
// are chosen by a random generator. The kind is part of the type, because containers decide
// at compile time how to treat a layer: plain, keeps its output (keeps_output_v), or
// reversible (an inverse() member).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "revox/layers/layer.hpp"

namespace revox_test {

enum class LayerKind { plain, keeps_output, reversible };

template <class T>
struct ErasedConcept {
  virtual ~ErasedConcept() = default;
  virtual revox::Shape5 output_shape(revox::Shape5 in) const = 0;
  virtual void visit_params(
      const std::function<void(const std::string&, revox::Param<T>&)>& fn) = 0;
  virtual void reset_parameters(revox::Rng& rng) = 0;
  virtual void forward(revox::TensorView<const T> x, revox::TensorView<T> y,
                       std::shared_ptr<void>* saved) const = 0;
  virtual void backward(std::shared_ptr<void>& saved, revox::TensorView<const T> dy,
                        revox::TensorView<T> dx) = 0;
  virtual void inverse(revox::TensorView<T> y) const = 0;
};

template <class L>
struct ErasedModel final : ErasedConcept<typename L::value_type> {
  using T = typename L::value_type;
  explicit ErasedModel(L l) : layer(std::move(l)) {}
  revox::Shape5 output_shape(revox::Shape5 in) const override { return layer.output_shape(in); }
  void visit_params(
      const std::function<void(const std::string&, revox::Param<T>&)>& fn) override {
    layer.visit_params([&fn](const std::string& name, revox::Param<T>& p) { fn(name, p); });
  }
  void reset_parameters(revox::Rng& rng) override { layer.reset_parameters(rng); }
  void forward(revox::TensorView<const T> x, revox::TensorView<T> y,
               std::shared_ptr<void>* saved) const override {
    if (saved == nullptr) {
      layer.forward(revox::Cpu{}, x, y, nullptr);
      return;
    }
    auto state = std::make_shared<revox::saved_t<L, revox::Cpu>>();
    layer.forward(revox::Cpu{}, x, y, state.get());
    *saved = std::move(state);
  }
  void backward(std::shared_ptr<void>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) override {
    REVOX_CHECK(saved != nullptr, "Erased::backward: nothing saved");
    layer.backward(revox::Cpu{}, *static_cast<revox::saved_t<L, revox::Cpu>*>(saved.get()), dy,
                   dx);
    saved.reset();
  }
  void inverse(revox::TensorView<T> y) const override {
    if constexpr (revox::is_reversible_v<L>) {
      layer.inverse(revox::Cpu{}, y);
    } else {
      (void)y;
      throw revox::Error("Erased::inverse: the wrapped layer is not reversible");
    }
  }
  L layer;
};

template <class T, LayerKind Kind>
class Erased {
 public:
  using value_type = T;
  static constexpr LayerKind kind = Kind;
  static constexpr bool keeps_output = Kind != LayerKind::plain;

  template <class Dev>
  struct Saved {
    std::shared_ptr<void> state;
  };

  template <class L>
  static Erased of(L layer) {
    static_assert(std::is_same_v<typename L::value_type, T>);
    if constexpr (Kind == LayerKind::reversible) {
      static_assert(revox::is_reversible_v<L>, "Erased<reversible> needs a reversible layer");
    }
    if constexpr (Kind == LayerKind::plain) {
      static_assert(!revox::keeps_output_v<L>, "Erased<plain> needs a plain layer");
    }
    Erased erased;
    erased.impl_ = std::make_shared<ErasedModel<L>>(std::move(layer));
    return erased;
  }

  revox::Shape5 output_shape(revox::Shape5 in) const { return impl_->output_shape(in); }
  template <class Fn>
  void visit_params(Fn&& fn) {
    impl_->visit_params([&fn](const std::string& name, revox::Param<T>& p) { fn(name, p); });
  }
  void reset_parameters(revox::Rng& rng) { impl_->reset_parameters(rng); }

  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    static_assert(revox::is_cpu_v<Dev>, "Erased runs on the CPU only");
    impl_->forward(x, y, saved != nullptr ? &saved->state : nullptr);
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    impl_->backward(saved.state, dy, dx);
  }
  template <class Dev, LayerKind K = Kind, std::enable_if_t<K == LayerKind::reversible, int> = 0>
  void inverse(const Dev&, revox::TensorView<T> y) const {
    impl_->inverse(y);
  }

 private:
  std::shared_ptr<ErasedConcept<T>> impl_;
};

}  // namespace revox_test
