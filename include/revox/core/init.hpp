// revox/core/init.hpp — PyTorch's default parameter initialisers, so a revox model starts
// from the same distributions as its PyTorch twin.
//
// Conv weights: kaiming_uniform_(a = sqrt(5)), i.e. U(-b, b) with
//   b = gain * sqrt(3 / fan_in),  gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)  =>  b = 1/sqrt(fan_in)
// Conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).  fan_in = (Cin / groups) * kD * kH * kW.
// GroupNorm: weight 1, bias 0.
// All initialisers write through host pointers (parameters are initialised on the host).
//
// torch.nn.init's Kaiming (He) and Xavier (Glorot) initialisers, same formulas:
//   calculate_fans(shape): like torch's _calculate_fan_in_and_fan_out, for rank >= 2:
//     receptive = product of dims[2:] (1 for rank 2),
//     fan_in = dims[1] * receptive, fan_out = dims[0] * receptive
//     (a conv weight [Cout, Cin/groups, kD, kH, kW]: fan_in = Cin/groups * kD kH kW).
//   calculate_gain(nonlinearity, param): Linear and Sigmoid 1, Tanh 5/3, ReLU sqrt(2),
//     LeakyReLU sqrt(2 / (1 + slope^2)) (slope = param, torch's default 0.01), SELU 3/4.
//   kaiming_normal:  N(0, std^2),   std = gain / sqrt(fan)
//   kaiming_uniform: U(-b, b),      b = sqrt(3) * gain / sqrt(fan)
//     fan = fan_in (FanMode::FanIn, the default) or fan_out; gain from Kaiming's
//     nonlinearity with slope `a` (defaults as torch: LeakyReLU with a = 0, i.e. sqrt(2)).
//   xavier_normal:   N(0, std^2),   std = gain * sqrt(2 / (fan_in + fan_out))
//   xavier_uniform:  U(-b, b),      b = sqrt(3) * gain * sqrt(2 / (fan_in + fan_out))
// Each takes (values, shape) or a bound Param<T>. for_each_weight(layer, fn) calls
// fn(name, Param<T>&) for every parameter of rank >= 2 (conv weights; biases and GroupNorm's
// affine parameters are rank 1), the way to apply one of them to a whole model:
//   init::for_each_weight(model, [&](const std::string&, auto& w) {
//     init::kaiming_normal(w, rng, {init::FanMode::FanOut, init::Nonlinearity::ReLU});
//   });
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"

namespace revox::init {

template <class T>
void kaiming_uniform_conv_weight(T* weight, index_t count, index_t fan_in, Rng& rng) {
  REVOX_CHECK(fan_in > 0, "kaiming_uniform: fan_in must be positive, got ", fan_in);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  fill_uniform(weight, count, rng, -bound, bound);
}

template <class T>
void uniform_conv_bias(T* bias, index_t count, index_t fan_in, Rng& rng) {
  REVOX_CHECK(fan_in > 0, "conv bias init: fan_in must be positive, got ", fan_in);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  fill_uniform(bias, count, rng, -bound, bound);
}

template <class T>
void constant(T* values, index_t count, T value) {
  std::fill(values, values + count, value);
}

// ---- Kaiming and Xavier (torch.nn.init) -------------------------------------------------

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };

struct Fans {
  index_t fan_in = 0;
  index_t fan_out = 0;
};

// torch.nn.init._calculate_fan_in_and_fan_out.
inline Fans calculate_fans(const ParamShape& shape) {
  REVOX_CHECK(shape.rank >= 2, "init: fan in and fan out need a weight of rank >= 2, got shape ",
              shape);
  index_t receptive = 1;
  for (int i = 2; i < shape.rank; ++i) receptive *= shape.dims[static_cast<std::size_t>(i)];
  return Fans{shape.dims[1] * receptive, shape.dims[0] * receptive};
}

// torch.nn.init.calculate_gain; `param` is LeakyReLU's negative slope (ignored otherwise).
inline double calculate_gain(Nonlinearity nonlinearity, double param = 0.01) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU:
      REVOX_CHECK(std::isfinite(param), "init::calculate_gain: leaky_relu slope must be finite, "
                  "got ", param);
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::SELU:
      return 0.75;
  }
  REVOX_CHECK(false, "init::calculate_gain: unknown nonlinearity ",
              static_cast<int>(nonlinearity));
  return 0.0;
}

// Kaiming options; the defaults are torch's (a = 0, mode 'fan_in', 'leaky_relu').
struct Kaiming {
  FanMode mode = FanMode::FanIn;
  Nonlinearity nonlinearity = Nonlinearity::LeakyReLU;
  double a = 0.0;  // LeakyReLU's negative slope
};

// The standard deviation both Kaiming initialisers aim at: gain / sqrt(fan).
inline double kaiming_std(const ParamShape& shape, const Kaiming& options = {}) {
  const Fans fans = calculate_fans(shape);
  const index_t fan = options.mode == FanMode::FanIn ? fans.fan_in : fans.fan_out;
  REVOX_CHECK(fan > 0, "init::kaiming: ", options.mode == FanMode::FanIn ? "fan_in" : "fan_out",
              " of shape ", shape, " must be positive");
  return calculate_gain(options.nonlinearity, options.a) / std::sqrt(static_cast<double>(fan));
}

// The standard deviation both Xavier initialisers aim at: gain sqrt(2 / (fan_in + fan_out)).
inline double xavier_std(const ParamShape& shape, double gain = 1.0) {
  const Fans fans = calculate_fans(shape);
  REVOX_CHECK(fans.fan_in + fans.fan_out > 0, "init::xavier: fan_in + fan_out of shape ", shape,
              " must be positive");
  REVOX_CHECK(std::isfinite(gain), "init::xavier: gain must be finite, got ", gain);
  return gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
}

template <class T>
void fill_normal(T* values, index_t count, Rng& rng, double mean, double stddev) {
  for (index_t i = 0; i < count; ++i) values[i] = static_cast<T>(mean + stddev * rng.normal());
}

template <class T>
void kaiming_uniform(T* values, const ParamShape& shape, Rng& rng, const Kaiming& options = {}) {
  const double bound = std::sqrt(3.0) * kaiming_std(shape, options);
  fill_uniform(values, shape.numel(), rng, -bound, bound);
}

template <class T>
void kaiming_normal(T* values, const ParamShape& shape, Rng& rng, const Kaiming& options = {}) {
  fill_normal(values, shape.numel(), rng, 0.0, kaiming_std(shape, options));
}

template <class T>
void xavier_uniform(T* values, const ParamShape& shape, Rng& rng, double gain = 1.0) {
  const double bound = std::sqrt(3.0) * xavier_std(shape, gain);
  fill_uniform(values, shape.numel(), rng, -bound, bound);
}

template <class T>
void xavier_normal(T* values, const ParamShape& shape, Rng& rng, double gain = 1.0) {
  fill_normal(values, shape.numel(), rng, 0.0, xavier_std(shape, gain));
}

namespace detail {
template <class T>
T* bound_values(Param<T>& p, const char* init) {
  REVOX_CHECK(p.bound(), "init::", init, ": the parameter of shape ", p.shape,
              " is not bound to a Parameters buffer yet; construct Parameters<T>(layer) first");
  return p.value;
}
}  // namespace detail

// The same on a bound parameter (its values, host memory), e.g. from for_each_weight.
template <class T>
void kaiming_uniform(Param<T>& p, Rng& rng, const Kaiming& options = {}) {
  kaiming_uniform(detail::bound_values(p, "kaiming_uniform"), p.shape, rng, options);
}
template <class T>
void kaiming_normal(Param<T>& p, Rng& rng, const Kaiming& options = {}) {
  kaiming_normal(detail::bound_values(p, "kaiming_normal"), p.shape, rng, options);
}
template <class T>
void xavier_uniform(Param<T>& p, Rng& rng, double gain = 1.0) {
  xavier_uniform(detail::bound_values(p, "xavier_uniform"), p.shape, rng, gain);
}
template <class T>
void xavier_normal(Param<T>& p, Rng& rng, double gain = 1.0) {
  xavier_normal(detail::bound_values(p, "xavier_normal"), p.shape, rng, gain);
}

// Calls fn(name, Param<T>&) for every parameter of `layer` of rank >= 2 (the weights of
// convolutions), in visit_params order.
template <class Layer, class Fn>
void for_each_weight(Layer& layer, Fn&& fn) {
  layer.visit_params([&fn](const std::string& name, auto& p) {
    if (p.shape.rank >= 2) fn(name, p);
  });
}

}  // namespace revox::init
