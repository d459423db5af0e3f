// tests/support/tensors.hpp — tensor helpers shared by the tests (.cpp and .cu): random
// inputs, NaN-filled outputs, the odd shape of the kernel tests, exact comparisons (value by
// value, byte by byte) and the error measures the kernel tests compare with.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "revox/core/init.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"

namespace revox::test {

// The usual bound on a CPU fast path's error against the plain reference: 1e-5 in float,
// 1e-12 in double.
template <class T>
constexpr double fast_path_tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
T nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// A tensor of NaN: an element a body never writes stays NaN and fails the comparison.
template <class T>
Tensor<T> nan_tensor(Shape5 shape) {
  return Tensor<T>::full(shape, nan<T>());
}

// Elements that differ in value, where NaN equals NaN only. 0 when the tensors agree exactly.
template <class T>
index_t mismatches(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<index_t>::max();
  index_t count = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const bool both_nan =
        std::isnan(static_cast<double>(a[i])) && std::isnan(static_cast<double>(b[i]));
    if (!both_nan && !(a[i] == b[i])) ++count;
  }
  return count;
}

// The same shape and the same bytes.
template <class T>
bool identical(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

// N=2, C=3, 5x7x9: every index path of a body is taken.
inline const Shape5 kOddShape{2, 3, 5, 7, 9};

// A host tensor of `shape` with elements drawn uniformly from [low, high).
template <class T>
Tensor<T> random_tensor(Shape5 shape, Rng& rng, double low = -1.0, double high = 1.0) {
  Tensor<T> t(shape);
  fill_uniform(t.view(), rng, low, high);
  return t;
}
// The same from a fresh Rng(seed).
template <class T>
Tensor<T> random_tensor(Shape5 shape, std::uint64_t seed, double low = -1.0, double high = 1.0) {
  Rng rng(seed);
  return random_tensor<T>(shape, rng, low, high);
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

// max over elements of |actual - expected| / (1 + |expected|): an absolute error for values
// below 1, a relative one above (the convolution tests' measure). Strict like max_error:
// infinity for any NaN or infinity on either side, and when the shapes differ.
template <class A, class B>
double max_mixed_error(const Tensor<A>& actual, const Tensor<B>& expected) {
  if (actual.shape() != expected.shape()) return std::numeric_limits<double>::infinity();
  double worst = 0.0;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (!std::isfinite(a) || !std::isfinite(e)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(a - e) / (1.0 + std::abs(e)));
  }
  return worst;
}

}  // namespace revox::test
