// revox/optim/sgd.hpp — SGD with momentum, update for update as torch.optim.SGD (PyTorch
// 1.13, single-tensor path, maximize off).
//
// For each parameter element p with gradient g:
//   d <- g + weight_decay * p
//   with momentum != 0 (state "momentum_buffer" b):
//     first step:  b <- d                     (PyTorch clones the first gradient)
//     later:       b <- momentum b + (1 - dampening) d
//     d <- nesterov ? d + momentum b : b
//   p <- p - lr d
// The momentum buffer exists only when momentum != 0, and is valid once steps() > 0 (a
// restored checkpoint sets both through visit_state and set_steps). Nesterov needs
// momentum > 0 and dampening 0, as in PyTorch. See optim/optimizer.hpp for the common
// interface.
#pragma once

#include <cmath>
#include <cstdint>

#include "revox/optim/optimizer.hpp"

namespace revox::optim {

struct SGDOptions {
  double lr = -1.0;  // required, as in torch.optim.SGD: the constructor rejects the default
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

template <class T, class Device = Cpu>
class SGD : public detail::OptimizerBase<T, Device> {
 public:
  SGD(Parameters<T, Device>& params, SGDOptions options)
      : detail::OptimizerBase<T, Device>("SGD", params, checked_lr(options.lr)),
        options_(options) {
    detail::check_finite_non_negative("SGD", "momentum", options.momentum);
    detail::check_finite_non_negative("SGD", "dampening", options.dampening);
    detail::check_finite_non_negative("SGD", "weight_decay", options.weight_decay);
    REVOX_CHECK(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0),
                "SGD: Nesterov momentum requires momentum > 0 and dampening 0, got momentum ",
                options.momentum, " and dampening ", options.dampening);
    if (options.momentum != 0.0) momentum_buffer_ = this->zero_state();
  }

  void step() {
    const bool first = this->steps_ == 0;
    ++this->steps_;
    const T neg_lr = static_cast<T>(-this->lr_);
    const T weight_decay = static_cast<T>(options_.weight_decay);
    const bool decay = options_.weight_decay != 0.0;
    const T momentum = static_cast<T>(options_.momentum);
    const T one_minus_dampening = static_cast<T>(1.0 - options_.dampening);
    const bool nesterov = options_.nesterov;
    T* p = this->values_.data;
    const T* g = this->grads_.data;
    if (options_.momentum == 0.0) {
      this->for_each_element([=](index_t i) {
        const T d = decay ? g[i] + weight_decay * p[i] : g[i];
        p[i] = p[i] + neg_lr * d;
      });
      return;
    }
    T* b = momentum_buffer_.data();
    this->for_each_element([=](index_t i) {
      T d = decay ? g[i] + weight_decay * p[i] : g[i];
      b[i] = first ? d : b[i] * momentum + one_minus_dampening * d;
      d = nesterov ? d + momentum * b[i] : b[i];
      p[i] = p[i] + neg_lr * d;
    });
  }

  template <class Fn>
  void visit_state(Fn&& fn) {
    if (!momentum_buffer_.empty()) fn("momentum_buffer", momentum_buffer_.view());
  }
  template <class Fn>
  void visit_state(Fn&& fn) const {
    if (!momentum_buffer_.empty()) fn("momentum_buffer", momentum_buffer_.view());
  }

  const SGDOptions& options() const { return options_; }

 private:
  static double checked_lr(double lr) {
    REVOX_CHECK(std::isfinite(lr) && lr >= 0.0,
                "SGD: lr is required and must be finite and non-negative, got ", lr);
    return lr;
  }

  SGDOptions options_;
  Tensor<T, Device> momentum_buffer_;
};

}  // namespace revox::optim
