// revox/optim/adam.hpp — Adam and AdamW, update for update as torch.optim.Adam / AdamW
// (PyTorch 1.13, single-tensor path, amsgrad off, maximize off).
//
// For each parameter element p with gradient g, at step t = steps() + 1:
//   Adam:   g <- g + weight_decay * p                      (L2 penalty in the gradient)
//   AdamW:  p <- p * (1 - lr * weight_decay)               (decoupled decay, before the step)
//   both:   m <- beta1 m + (1 - beta1) g                    state "exp_avg"
//           v <- beta2 v + (1 - beta2) g^2                  state "exp_avg_sq"
//           p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The scalars are computed in double and the element arithmetic runs in T, as PyTorch does.
// Gradients are read, never changed. State buffers start at zero and have the flat
// buffers' length (padding stays zero). See optim/optimizer.hpp for the common interface
// and devices: Adam(params, options) on the CPU, Adam(dev, params, options) on any device.
#pragma once

#include <cmath>
#include <cstdint>

#include "revox/optim/optimizer.hpp"

namespace revox::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2: added to the gradient
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * weight_decay
};

namespace detail {

// The element update of Adam (decoupled = false) or AdamW (true) at step `step` (>= 1): the
// scalars computed in double and cast to T once, as PyTorch does.
template <class T>
kernels::AdamUpdate<T> adam_update(T* p, const T* g, T* m, T* v, double lr, double beta1,
                                   double beta2, double eps, double weight_decay, bool decoupled,
                                   std::int64_t step) {
  const auto t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  kernels::AdamUpdate<T> update{};
  update.p = p;
  update.g = g;
  update.m = m;
  update.v = v;
  update.neg_step_size = static_cast<T>(-(lr / bias_correction1));
  update.bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
  update.beta1 = static_cast<T>(beta1);
  update.beta2 = static_cast<T>(beta2);
  update.one_minus_beta1 = static_cast<T>(1.0 - beta1);
  update.one_minus_beta2 = static_cast<T>(1.0 - beta2);
  update.eps = static_cast<T>(eps);
  update.l2 = decoupled ? T(0) : static_cast<T>(weight_decay);
  update.decay = static_cast<T>(1.0 - lr * weight_decay);
  update.decay_params = decoupled && weight_decay != 0.0;
  update.decay_grads = !decoupled && weight_decay != 0.0;
  return update;
}

template <class T, class Device>
class AdamBase : public OptimizerBase<T, Device> {
 public:
  template <class Fn>
  void visit_state(Fn&& fn) {
    fn("exp_avg", exp_avg_.view());
    fn("exp_avg_sq", exp_avg_sq_.view());
  }
  template <class Fn>
  void visit_state(Fn&& fn) const {
    fn("exp_avg", exp_avg_.view());
    fn("exp_avg_sq", exp_avg_sq_.view());
  }

 protected:
  AdamBase(const char* name, const Device& dev, Parameters<T, Device>& params, double lr,
           double beta1, double beta2, double eps, double weight_decay, bool decoupled)
      : OptimizerBase<T, Device>(name, dev, params, lr),
        beta1_(beta1),
        beta2_(beta2),
        eps_(eps),
        weight_decay_(weight_decay),
        decoupled_(decoupled) {
    check_beta(name, "beta1", beta1);
    check_beta(name, "beta2", beta2);
    check_finite_non_negative(name, "eps", eps);
    check_finite_non_negative(name, "weight_decay", weight_decay);
    exp_avg_ = this->zero_state();
    exp_avg_sq_ = this->zero_state();
  }

  void adam_step() {
    ++this->steps_;
    this->apply(adam_update<T>(this->values_.data, this->grads_.data, exp_avg_.data(),
                               exp_avg_sq_.data(), this->lr_, beta1_, beta2_, eps_,
                               weight_decay_, decoupled_, this->steps_));
  }

  double beta1_;
  double beta2_;
  double eps_;
  double weight_decay_;
  bool decoupled_;
  Tensor<T, Device> exp_avg_;
  Tensor<T, Device> exp_avg_sq_;
};

}  // namespace detail

// torch.optim.Adam: weight decay is an L2 term added to the gradient.
template <class T, class Device = Cpu>
class Adam : public detail::AdamBase<T, Device> {
 public:
  // On the CPU.
  explicit Adam(Parameters<T, Device>& params, AdamOptions options = {})
      : Adam(Device{}, params, options) {
    static_assert(is_cpu_v<Device>, "Adam: pass the device first, Adam(dev, params, options)");
  }
  Adam(const Device& dev, Parameters<T, Device>& params, AdamOptions options = {})
      : detail::AdamBase<T, Device>("Adam", dev, params, options.lr, options.beta1,
                                    options.beta2, options.eps, options.weight_decay, false),
        options_(options) {}
  void step() { this->adam_step(); }
  // The options given to the constructor (lr as constructed; lr() is the current one).
  const AdamOptions& options() const { return options_; }

 private:
  AdamOptions options_;
};

// torch.optim.AdamW: decoupled weight decay, p *= 1 - lr * weight_decay before the Adam step.
template <class T, class Device = Cpu>
class AdamW : public detail::AdamBase<T, Device> {
 public:
  // On the CPU.
  explicit AdamW(Parameters<T, Device>& params, AdamWOptions options = {})
      : AdamW(Device{}, params, options) {
    static_assert(is_cpu_v<Device>, "AdamW: pass the device first, AdamW(dev, params, options)");
  }
  AdamW(const Device& dev, Parameters<T, Device>& params, AdamWOptions options = {})
      : detail::AdamBase<T, Device>("AdamW", dev, params, options.lr, options.beta1,
                                    options.beta2, options.eps, options.weight_decay, true),
        options_(options) {}
  void step() { this->adam_step(); }
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
};

}  // namespace revox::optim
