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
// buffers' length (padding stays zero). See optim/optimizer.hpp for the common interface.
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
  AdamBase(const char* name, Parameters<T, Device>& params, double lr, double beta1,
           double beta2, double eps, double weight_decay, bool decoupled)
      : OptimizerBase<T, Device>(name, params, lr),
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
    const auto step = static_cast<double>(this->steps_);
    const double lr = this->lr_;
    const double bias_correction1 = 1.0 - std::pow(beta1_, step);
    const double bias_correction2 = 1.0 - std::pow(beta2_, step);
    const T neg_step_size = static_cast<T>(-(lr / bias_correction1));
    const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const T beta1 = static_cast<T>(beta1_);
    const T beta2 = static_cast<T>(beta2_);
    const T one_minus_beta1 = static_cast<T>(1.0 - beta1_);
    const T one_minus_beta2 = static_cast<T>(1.0 - beta2_);
    const T eps = static_cast<T>(eps_);
    const T l2 = decoupled_ ? T(0) : static_cast<T>(weight_decay_);
    const T decay = static_cast<T>(1.0 - lr * weight_decay_);
    const bool decay_params = decoupled_ && weight_decay_ != 0.0;
    const bool decay_grads = !decoupled_ && weight_decay_ != 0.0;
    T* p = this->values_.data;
    const T* g = this->grads_.data;
    T* m = exp_avg_.data();
    T* v = exp_avg_sq_.data();
    this->for_each_element([=](index_t i) {
      if (decay_params) p[i] = p[i] * decay;
      const T grad = decay_grads ? g[i] + l2 * p[i] : g[i];
      m[i] = m[i] * beta1 + one_minus_beta1 * grad;
      v[i] = v[i] * beta2 + one_minus_beta2 * grad * grad;
      const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
      p[i] = p[i] + neg_step_size * (m[i] / denom);
    });
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
  explicit Adam(Parameters<T, Device>& params, AdamOptions options = {})
      : detail::AdamBase<T, Device>("Adam", params, options.lr, options.beta1, options.beta2,
                                    options.eps, options.weight_decay, false),
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
  explicit AdamW(Parameters<T, Device>& params, AdamWOptions options = {})
      : detail::AdamBase<T, Device>("AdamW", params, options.lr, options.beta1, options.beta2,
                                    options.eps, options.weight_decay, true),
        options_(options) {}
  void step() { this->adam_step(); }
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
};

}  // namespace revox::optim
