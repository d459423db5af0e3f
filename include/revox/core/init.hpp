// revox/core/init.hpp — PyTorch's default parameter initialisers, so a revox model starts
// from the same distributions as its PyTorch twin.
//
// Conv weights: kaiming_uniform_(a = sqrt(5)), i.e. U(-b, b) with
//   b = gain * sqrt(3 / fan_in),  gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)  =>  b = 1/sqrt(fan_in)
// Conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).  fan_in = (Cin / groups) * kD * kH * kW.
// GroupNorm: weight 1, bias 0.
// All initialisers write through host pointers (parameters are initialised on the host).
#pragma once

#include <algorithm>
#include <cmath>

#include "revox/core/error.hpp"
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

}  // namespace revox::init
