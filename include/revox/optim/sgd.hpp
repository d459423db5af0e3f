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
// interface and devices: SGD(params, options) on the CPU, SGD(dev, params, options) on any
// device.
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

namespace detail {

// The element update of SGD with `options`; `first`: this is the first step (b <- d).
template <class T>
kernels::SgdUpdate<T> sgd_update(T* p, const T* g, T* momentum_buffer, double lr,
                                 const SGDOptions& options, bool first) {
  kernels::SgdUpdate<T> update{};
  update.p = p;
  update.g = g;
  update.b = momentum_buffer;
  update.neg_lr = static_cast<T>(-lr);
  update.weight_decay = static_cast<T>(options.weight_decay);
  update.momentum = static_cast<T>(options.momentum);
  update.one_minus_dampening = static_cast<T>(1.0 - options.dampening);
  update.decay = options.weight_decay != 0.0;
  update.has_momentum = options.momentum != 0.0;
  update.first = first;
  update.nesterov = options.nesterov;
  return update;
}

}  // namespace detail

template <class T, class Device = Cpu>
class SGD : public detail::OptimizerBase<T, Device> {
 public:
  // On the CPU.
  SGD(Parameters<T, Device>& params, SGDOptions options) : SGD(Device{}, params, options) {
    static_assert(is_cpu_v<Device>, "SGD: pass the device first, SGD(dev, params, options)");
  }
  SGD(const Device& dev, Parameters<T, Device>& params, SGDOptions options)
      : detail::OptimizerBase<T, Device>("SGD", dev, params, checked_lr(options.lr)),
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
    this->apply(detail::sgd_update<T>(this->values_.data, this->grads_.data,
                                      momentum_buffer_.data(), this->lr_, options_, first));
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
