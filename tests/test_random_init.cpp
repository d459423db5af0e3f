#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "revox/core/init.hpp"
#include "revox/core/random.hpp"

TEST_CASE("Rng is seeded and repeatable", "[core][random]") {
  revox::Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const auto va = a.next_u64();
    CHECK(va == b.next_u64());
    differs = differs || va != c.next_u64();
  }
  CHECK(differs);
  // std::mt19937_64's 10000th output is fixed by the C++ standard.
  revox::Rng standard(5489u);
  std::uint64_t value = 0;
  for (int i = 0; i < 10000; ++i) value = standard.next_u64();
  CHECK(value == 9981545732273789042ull);
}

TEST_CASE("Rng distributions have the right range and moments", "[core][random]") {
  revox::Rng rng(1);
  const int n = 200000;
  double sum = 0, sum_sq = 0, nsum = 0, nsum_sq = 0;
  std::vector<int> buckets(7, 0);
  int out_of_range = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform(-2.0, 3.0);
    out_of_range += (u < -2.0 || u >= 3.0) ? 1 : 0;
    sum += u;
    sum_sq += u * u;
    const double z = rng.normal();
    nsum += z;
    nsum_sq += z * z;
    ++buckets[static_cast<std::size_t>(rng.below(7))];
  }
  CHECK(out_of_range == 0);
  CHECK(sum / n == Approx(0.5).margin(0.02));
  CHECK(sum_sq / n - (sum / n) * (sum / n) == Approx(25.0 / 12.0).epsilon(0.02));
  CHECK(nsum / n == Approx(0.0).margin(0.01));
  CHECK(nsum_sq / n == Approx(1.0).epsilon(0.02));
  for (int count : buckets) CHECK(count == Approx(n / 7.0).epsilon(0.03));
  CHECK_THROWS_AS(rng.below(0), revox::Error);
}

TEST_CASE("PyTorch default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))", "[core][init]") {
  // Conv3d(8 -> 16, k=3): fan_in = 8 * 27 = 216, bound = 0.0680414
  const revox::index_t fan_in = 8 * 27, count = 16 * 8 * 27;
  std::vector<float> weight(static_cast<std::size_t>(count));
  std::vector<float> bias(16);
  revox::Rng rng(3);
  revox::init::kaiming_uniform_conv_weight(weight.data(), count, fan_in, rng);
  revox::init::uniform_conv_bias(bias.data(), 16, fan_in, rng);
  const double bound = 1.0 / std::sqrt(216.0);
  double max_abs = 0, sum_sq = 0;
  for (float w : weight) {
    max_abs = std::max(max_abs, double(std::abs(w)));
    sum_sq += double(w) * w;
  }
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.95 * bound);
  // Variance of U(-b, b) is b^2 / 3.
  CHECK(sum_sq / count == Approx(bound * bound / 3).epsilon(0.08));
  for (float b : bias) CHECK(std::abs(b) <= bound);
  CHECK_THROWS_WITH(revox::init::kaiming_uniform_conv_weight(weight.data(), count, 0, rng),
                    Catch::Contains("fan_in must be positive, got 0"));
}
