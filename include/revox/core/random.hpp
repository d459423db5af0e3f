// revox/core/random.hpp — a seeded random number generator and the fill helpers built on
// it. Every random thing in revox (initialisation, augmentation, test inputs) draws from an
// Rng constructed from an explicit seed, so runs repeat exactly.
//
// The engine is std::mt19937_64, whose sequence the C++ standard fixes. The distributions
// are written here rather than taken from <random> because the standard leaves
// std::uniform_real_distribution's algorithm to the implementation.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "revox/core/tensor.hpp"

namespace revox {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  std::uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform01() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform01(); }
  // Standard normal (Box-Muller; one value per call, for simplicity over speed).
  double normal() {
    double u1 = uniform01();
    while (u1 <= 0.0) u1 = uniform01();
    const double u2 = uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
  }
  // Uniform integer in [0, bound).
  std::uint64_t below(std::uint64_t bound) {
    REVOX_CHECK(bound > 0, "Rng::below: bound must be positive");
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % bound);
    std::uint64_t value = engine_();
    while (value >= limit) value = engine_();
    return value % bound;
  }

 private:
  std::mt19937_64 engine_;
};

// Fills a host view with independent draws from U[low, high).
template <class T>
void fill_uniform(TensorView<T> out, Rng& rng, double low, double high) {
  for (index_t i = 0; i < out.numel(); ++i) out[i] = static_cast<T>(rng.uniform(low, high));
}

template <class T>
void fill_uniform(T* out, index_t count, Rng& rng, double low, double high) {
  for (index_t i = 0; i < count; ++i) out[i] = static_cast<T>(rng.uniform(low, high));
}

}  // namespace revox
