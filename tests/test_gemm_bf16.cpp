// The bfloat16 matrix products (revox/ops/cpu/gemm_bf16.hpp) on every CPU path this machine
// has (portable always; avx512_bf16 where the CPU has VDPBF16PS), against references in
// double.
//
// Tolerances, and why they hold:
//  * Against the exact products of the kernel's own inputs (A rounded to bfloat16, as the
//    kernel documents): every path sums K exact products in float32, so |y - ref| is at most
//    (K + 2) 2^-24 sum_k |a_k x_k| (the worst case of float summation; a missing or doubled
//    term breaks it by about 1/K of the sum). A bfloat16 Y adds its own rounding, at most
//    2^-8 |y|. gemm_abt_bf16 is bounded the same way with S terms.
//  * Against float32 (A not rounded): rounding A to bfloat16 moves each product by at most
//    2^-8 of itself, so |y - ref_f32| <= 2^-8 sum_k |a_k x_k| plus the above.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "revox/core/bfloat16.hpp"
#include "revox/core/cpu_features.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/cpu/gemm_bf16.hpp"

using revox::bfloat16;
using revox::CpuPath;
using revox::index_t;

namespace {

constexpr double kUnit = 1.0 / (1 << 24);  // float32's unit roundoff, 2^-24
constexpr double kBf16Step = 1.0 / (1 << 8);  // bfloat16's relative rounding bound, 2^-8

double as_double(bfloat16 v) { return static_cast<double>(static_cast<float>(v)); }
double rounded(float v) { return as_double(bfloat16(v)); }

std::vector<float> random_floats(index_t n, std::uint64_t seed, float scale = 1.0f) {
  revox::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = scale * static_cast<float>(rng.uniform(-1.0, 1.0));
  return v;
}

std::vector<bfloat16> random_bf16(index_t n, std::uint64_t seed) {
  std::vector<bfloat16> v(static_cast<std::size_t>(n));
  const std::vector<float> f = random_floats(n, seed);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = bfloat16(f[i]);
  return v;
}

struct AxShape {
  index_t m, k, s, pad;  // pad: extra elements per row of X and Y (ldx = ldy = s + pad)
};

// M around the 6-row tile, K odd and even (pairs), S around the 16-lane vectors and the
// 64-column strip, with and without row padding; the last ones are large enough to run on
// several threads.
const AxShape kAxShapes[] = {{1, 1, 1, 0},    {1, 2, 16, 0},   {5, 3, 15, 3},  {6, 4, 64, 0},
                             {7, 17, 65, 1},  {13, 33, 63, 0}, {12, 64, 200, 5},
                             {64, 130, 1000, 0}, {20, 96, 5000, 7}};

template <class OutT>
void check_ax(CpuPath path, const AxShape& c, bool with_bias) {
  INFO("path " << revox::cpu_path_name(path) << ", M " << c.m << " K " << c.k << " S " << c.s
               << " pad " << c.pad << (with_bias ? " bias" : "")
               << (std::is_same_v<OutT, float> ? " float out" : " bf16 out"));
  const index_t ld = c.s + c.pad;
  const std::vector<float> a = random_floats(c.m * c.k, 11 + c.m, 0.5f);
  const std::vector<float> bias = random_floats(c.m, 13);
  const std::vector<bfloat16> x = random_bf16(c.k * ld, 17 + c.k);
  std::vector<OutT> y(static_cast<std::size_t>(c.m * ld));
  const OutT sentinel = OutT(-123.0f);
  std::fill(y.begin(), y.end(), sentinel);
  revox::cpu::gemm_ax_bf16(path, c.m, c.k, c.s, a.data(), c.k, x.data(), ld, y.data(), ld,
                           with_bias ? bias.data() : nullptr);
  index_t bad = 0, bad_f32 = 0, touched = 0;
  double worst = 0.0;
  for (index_t m = 0; m < c.m; ++m) {
    for (index_t s = 0; s < ld; ++s) {
      const double got = static_cast<double>(static_cast<float>(y[m * ld + s]));
      if (s >= c.s) {
        touched += got != -123.0;
        continue;
      }
      double exact = with_bias ? static_cast<double>(bias[m]) : 0.0;
      double exact_f32 = exact;
      double sum_abs = std::abs(exact);
      for (index_t k = 0; k < c.k; ++k) {
        const double xv = as_double(x[k * ld + s]);
        exact += rounded(a[m * c.k + k]) * xv;
        exact_f32 += static_cast<double>(a[m * c.k + k]) * xv;
        sum_abs += std::abs(static_cast<double>(a[m * c.k + k]) * xv);
      }
      double tol = static_cast<double>(c.k + 2) * kUnit * sum_abs * (1 + kBf16Step);
      if (!std::is_same_v<OutT, float>) tol += kBf16Step * (std::abs(exact) + tol);
      const double err = std::abs(got - exact);
      worst = std::max(worst, err / (sum_abs + 1e-30));
      bad += !(err <= tol);
      bad_f32 += !(std::abs(got - exact_f32) <= tol + kBf16Step * sum_abs);
    }
  }
  INFO("worst error / sum|a x|: " << worst);
  CHECK(bad == 0);
  CHECK(bad_f32 == 0);
  CHECK(touched == 0);  // nothing written in the padding past S
}

struct AbtShape {
  index_t m, k, s;
};

const AbtShape kAbtShapes[] = {{1, 1, 1},    {3, 5, 31},   {4, 4, 32},    {5, 7, 33},
                               {9, 6, 100},  {16, 24, 2049}, {6, 10, 8200}, {32, 16, 20000}};

void check_abt(CpuPath path, const AbtShape& c) {
  INFO("path " << revox::cpu_path_name(path) << ", M " << c.m << " K " << c.k << " S " << c.s);
  const index_t ldc = c.k + 2;
  const std::vector<bfloat16> d = random_bf16(c.m * c.s, 23 + c.m);
  const std::vector<bfloat16> x = random_bf16(c.k * c.s, 29 + c.k);
  const std::vector<float> c0 = random_floats(c.m * ldc, 31);
  std::vector<float> out = c0;
  revox::cpu::gemm_abt_bf16(path, c.m, c.k, c.s, d.data(), c.s, x.data(), c.s, out.data(), ldc);
  index_t bad = 0, touched = 0;
  for (index_t m = 0; m < c.m; ++m) {
    for (index_t k = 0; k < ldc; ++k) {
      const std::size_t at = static_cast<std::size_t>(m * ldc + k);
      if (k >= c.k) {
        touched += out[at] != c0[at];
        continue;
      }
      double exact = static_cast<double>(c0[at]);
      double sum_abs = std::abs(exact);
      for (index_t s = 0; s < c.s; ++s) {
        const double p = as_double(d[m * c.s + s]) * as_double(x[k * c.s + s]);
        exact += p;
        sum_abs += std::abs(p);
      }
      bad += !(std::abs(static_cast<double>(out[at]) - exact) <= static_cast<double>(c.s + 2) * kUnit * sum_abs);
    }
  }
  CHECK(bad == 0);
  CHECK(touched == 0);  // columns past K of C untouched
}

}  // namespace

TEST_CASE("cpu::gemm_ax_bf16 matches the double reference on every path",
          "[gemm][bfloat16][simd]") {
  for (CpuPath path : revox::available_cpu_paths()) {
    for (const AxShape& c : kAxShapes) {
      for (bool with_bias : {false, true}) {
        check_ax<float>(path, c, with_bias);
        check_ax<bfloat16>(path, c, with_bias);
      }
    }
  }
}

TEST_CASE("cpu::gemm_abt_bf16 matches the double reference on every path",
          "[gemm][bfloat16][simd]") {
  for (CpuPath path : revox::available_cpu_paths()) {
    for (const AbtShape& c : kAbtShapes) check_abt(path, c);
  }
}

TEST_CASE("cpu::gemm_ax_bf16 and gemm_abt_bf16 results do not depend on the number of threads",
          "[gemm][bfloat16][simd][threads]") {
  const index_t M = 24, K = 40, S = 30000;
  const std::vector<float> a = random_floats(M * K, 41);
  const std::vector<bfloat16> x = random_bf16(K * S, 43);
  const std::vector<bfloat16> d = random_bf16(M * S, 47);
  const int threads = omp_get_max_threads();
  for (CpuPath path : revox::available_cpu_paths()) {
    INFO("path " << revox::cpu_path_name(path));
    std::vector<std::vector<bfloat16>> ys;
    std::vector<std::vector<float>> cs;
    for (int t : {1, 3}) {
      omp_set_num_threads(t);
      std::vector<bfloat16> y(static_cast<std::size_t>(M * S));
      revox::cpu::gemm_ax_bf16(path, M, K, S, a.data(), K, x.data(), S, y.data(), S, nullptr);
      std::vector<float> c(static_cast<std::size_t>(M * K), 0.0f);
      revox::cpu::gemm_abt_bf16(path, M, K, S, d.data(), S, x.data(), S, c.data(), K);
      ys.push_back(std::move(y));
      cs.push_back(std::move(c));
    }
    omp_set_num_threads(threads);
    index_t differ = 0;
    for (std::size_t i = 0; i < ys[0].size(); ++i) differ += ys[0][i].bits != ys[1][i].bits;
    CHECK(differ == 0);
    CHECK(cs[0] == cs[1]);
  }
}

TEST_CASE("cpu::gemm_ax_bf16 on an exactly representable example gives the exact result",
          "[gemm][bfloat16]") {
  // Small integers are exact in bfloat16 and their products and sums exact in float32, so
  // every path gives the same, exact answer: Y = A X + b.
  const float a[2 * 3] = {1, 2, 3, -1, 0, 4};
  const float bias[2] = {0.5f, -2};
  bfloat16 x[3 * 2];
  const float xf[3 * 2] = {1, -2, 3, 0, 5, 1};
  for (int i = 0; i < 6; ++i) x[i] = bfloat16(xf[i]);
  for (CpuPath path : revox::available_cpu_paths()) {
    INFO("path " << revox::cpu_path_name(path));
    float y[2 * 2] = {};
    revox::cpu::gemm_ax_bf16(path, 2, 3, 2, a, 3, x, 2, y, 2, bias);
    CHECK(y[0] == 1 * 1 + 2 * 3 + 3 * 5 + 0.5f);
    CHECK(y[1] == 1 * -2 + 2 * 0 + 3 * 1 + 0.5f);
    CHECK(y[2] == -1 * 1 + 0 * 3 + 4 * 5 - 2.0f);
    CHECK(y[3] == -1 * -2 + 0 * 0 + 4 * 1 - 2.0f);
    float c[2 * 3] = {1, 1, 1, 1, 1, 1};
    // C (2 x 3) += Y-shaped D (2 x 2) times X^T (2 x 3): D = X's first two rows.
    revox::cpu::gemm_abt_bf16(path, 2, 3, 2, x, 2, x, 2, c, 3);
    CHECK(c[0] == 1 + 1 * 1 + -2 * -2);
    CHECK(c[1] == 1 + 1 * 3 + -2 * 0);
    CHECK(c[2] == 1 + 1 * 5 + -2 * 1);
    CHECK(c[3] == 1 + 3 * 1 + 0 * -2);
    CHECK(c[5] == 1 + 3 * 5 + 0 * 1);
  }
}

TEST_CASE("cpu::gemm_bf16 refuses a path this CPU lacks", "[gemm][bfloat16]") {
  if (revox::cpu_path_available(CpuPath::avx512_bf16)) {
    SUCCEED("this CPU has every path");
    return;
  }
  float a = 1.0f, y = 0.0f;
  bfloat16 x(1.0f);
  CHECK_THROWS_WITH(revox::cpu::gemm_ax_bf16(CpuPath::avx512_bf16, 1, 1, 1, &a, 1, &x, 1, &y, 1,
                                             static_cast<const float*>(nullptr)),
                    Catch::Contains("the avx512_bf16 path is not available on this CPU"));
}
