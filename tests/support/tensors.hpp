// tests/support/tensors.hpp — tensor helpers shared by the tests (.cpp and .cu): random
// inputs and the two error measures the kernel tests compare with.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "revox/core/init.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"

namespace revox::test {

// A host tensor of `shape` with elements drawn uniformly from [low, high).
template <class T>
Tensor<T> random_tensor(Shape5 shape, Rng& rng, double low = -1.0, double high = 1.0) {
  Tensor<T> t(shape);
  fill_uniform(t.view(), rng, low, high);
  return t;
}

// max over elements of |actual - expected| / max(floor, |expected|). Strict: infinity when
// the element counts differ or when either side holds a NaN or an infinity anywhere.
template <class A, class B>
double max_error(const A* actual, const B* expected, index_t count, double floor = 1.0) {
  double worst = 0.0;
  for (index_t i = 0; i < count; ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (!std::isfinite(a) || !std::isfinite(e)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(a - e) / std::max(floor, std::abs(e)));
  }
  return worst;
}
template <class A, class B>
double max_error(const Tensor<A>& actual, const Tensor<B>& expected) {
  if (actual.numel() != expected.numel()) return std::numeric_limits<double>::infinity();
  return max_error(actual.data(), expected.data(), actual.numel());
}

// As max_error, but equal values count as no error, NaN against NaN and an infinity
// against the same infinity included: for kernels that must propagate non-finite inputs
// exactly as the reference does. Infinity when counts differ or only one side is NaN.
template <class A, class B>
double max_error_same_nonfinite(const A* actual, const B* expected, index_t count,
                                double floor = 1.0) {
  double worst = 0.0;
  for (index_t i = 0; i < count; ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (a == e || (std::isnan(a) && std::isnan(e))) continue;
    const double err = std::abs(a - e) / std::max(floor, std::abs(e));
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}
template <class A, class B>
double max_error_same_nonfinite(const Tensor<A>& actual, const Tensor<B>& expected) {
  if (actual.shape() != expected.shape()) return std::numeric_limits<double>::infinity();
  return max_error_same_nonfinite(actual.data(), expected.data(), actual.numel());
}

}  // namespace revox::test
