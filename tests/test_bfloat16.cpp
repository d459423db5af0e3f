// bfloat16 conversion (revox/core/bfloat16.hpp) and run-time CPU features
// (revox/core/cpu_features.hpp): the scalar rounding against a table of special values and
// against an independent reference (the nearer neighbour computed in double, ties to the
// even one) over a sweep of every exponent, every bfloat16 value round trip, and every array
// path this CPU has (portable always, AVX-512 where present) bit for bit against the scalar
// conversion, at odd lengths and across chunk and lane boundaries.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <vector>

#include "revox/core/bfloat16.hpp"
#include "revox/core/cpu_features.hpp"
#include "revox/core/random.hpp"

using revox::bfloat16;
using revox::CpuPath;
using revox::index_t;

namespace {

float float_from_bits(std::uint32_t u) {
  float f = 0.0f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// An independent reference for finite inputs: the two bfloat16 candidates around |x| (its
// upper half truncated, and one step up) compared in double; on a tie the even one.
std::uint16_t reference_bits(std::uint32_t u) {
  const std::uint32_t sign = u & 0x80000000u;
  const std::uint32_t magnitude = u & 0x7fffffffu;
  const std::uint32_t low = magnitude & 0xffff0000u;
  const std::uint32_t high = low + 0x10000u;  // may be the bits of inf: fine, compared below
  const double x = static_cast<double>(float_from_bits(magnitude));
  const double lo = static_cast<double>(float_from_bits(low));
  // Above the largest finite bfloat16 the next step would be 2^128 (where inf's bits sit).
  const double hi = high == 0x7f800000u ? std::ldexp(1.0, 128)
                                         : static_cast<double>(float_from_bits(high));
  std::uint32_t chosen = low;
  if (x - lo > hi - x) {
    chosen = high;
  } else if (x - lo == hi - x) {
    chosen = ((low >> 16) & 1u) != 0 ? high : low;
  }
  return static_cast<std::uint16_t>((sign | chosen) >> 16);
}

std::vector<CpuPath> available_paths() { return revox::available_cpu_paths(); }

}  // namespace

TEST_CASE("bfloat16: special values round as specified", "[bfloat16][core]") {
  struct Case {
    std::uint32_t in;
    std::uint16_t out;
    const char* what;
  };
  const Case cases[] = {
      {0x00000000u, 0x0000, "+0"},
      {0x80000000u, 0x8000, "-0"},
      {0x7f800000u, 0x7f80, "+inf"},
      {0xff800000u, 0xff80, "-inf"},
      {0x7fc00000u, 0x7fc0, "quiet NaN"},
      {0xffc00000u, 0xffc0, "negative quiet NaN"},
      {0x7f800001u, 0x7fc0, "signalling NaN, payload in the low half only: NaN, not inf"},
      {0xff800001u, 0xffc0, "negative signalling NaN, low payload"},
      {0x7fa00000u, 0x7fe0, "signalling NaN, high payload: kept, made quiet"},
      {0x7fffffffu, 0x7fff, "NaN with every payload bit"},
      {0x7f7fffffu, 0x7f80, "largest float: past the largest bfloat16, rounds to inf"},
      {0xff7fffffu, 0xff80, "-largest float: -inf"},
      {0x7f7f7fffu, 0x7f7f, "just under half a step above the largest bfloat16: stays"},
      {0x7f7f8000u, 0x7f80, "half a step above the largest bfloat16 (odd): to inf"},
      {0x00000001u, 0x0000, "smallest subnormal: rounds to +0"},
      {0x80000001u, 0x8000, "-smallest subnormal: rounds to -0"},
      {0x00008000u, 0x0000, "subnormal tie, even below: down"},
      {0x00018000u, 0x0002, "subnormal tie, odd below: up"},
      {0x00010000u, 0x0001, "smallest bfloat16 subnormal: exact, not flushed"},
      {0x007fffffu, 0x0080, "largest subnormal: up to the smallest normal"},
      {0x3f800000u, 0x3f80, "1"},
      {0x3f808000u, 0x3f80, "1 + half a step: tie, even: down"},
      {0x3f818000u, 0x3f82, "1 + 1.5 steps: tie, odd: up"},
      {0x3f808001u, 0x3f81, "just past the tie: up"},
      {0x3f807fffu, 0x3f80, "just before the tie: down"},
      {0xbf818000u, 0xbf82, "negative tie, odd: away from zero"},
  };
  for (const Case& c : cases) {
    INFO(c.what << " (0x" << std::hex << c.in << ")");
    CHECK(revox::bfloat16_bits(float_from_bits(c.in)) == c.out);
    CHECK(bfloat16(float_from_bits(c.in)).bits == c.out);
  }
  // float(bfloat16) is exact: the bits come back in the upper half.
  CHECK(static_cast<float>(bfloat16::from_bits(0x3f81)) == 1.0078125f);
  CHECK(std::isnan(static_cast<float>(bfloat16::from_bits(0x7fc1))));
}

TEST_CASE("bfloat16: the rounding agrees with an independent reference", "[bfloat16][core]") {
  // Every exponent (subnormals included) with low halves at and around the tie, at the ends,
  // and a stride through the rest; both signs; then random bit patterns.
  std::vector<std::uint32_t> inputs;
  for (std::uint32_t high = 0; high < 0x7f80u; ++high) {
    for (std::uint32_t low : {0x0000u, 0x0001u, 0x7ffeu, 0x7fffu, 0x8000u, 0x8001u, 0xfffeu,
                              0xffffu, 0x1234u, 0xc000u}) {
      inputs.push_back((high << 16) | low);
    }
  }
  revox::Rng rng(5);
  for (int i = 0; i < 200000; ++i) {
    const auto u = static_cast<std::uint32_t>(rng.next_u64());
    if ((u & 0x7fffffffu) < 0x7f800000u) inputs.push_back(u);  // finite only
  }
  index_t mismatches = 0;
  for (std::uint32_t magnitude : inputs) {
    for (std::uint32_t sign : {0u, 0x80000000u}) {
      const std::uint32_t u = magnitude | sign;
      const std::uint16_t got = revox::bfloat16_bits(float_from_bits(u));
      const std::uint16_t want = reference_bits(u);
      if (got != want && ++mismatches <= 5) {
        FAIL_CHECK("0x" << std::hex << u << ": got 0x" << got << ", reference 0x" << want);
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(inputs.size() > 300000);
}

TEST_CASE("bfloat16: every value survives float and back", "[bfloat16][core]") {
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    const float f = revox::float_from_bfloat16_bits(b);
    std::uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    REQUIRE(u == (bits << 16));
    const bool nan = (bits & 0x7fffu) > 0x7f80u;
    // A NaN comes back quiet (bit 6 set), everything else unchanged.
    REQUIRE(revox::bfloat16_bits(f) == (nan ? static_cast<std::uint16_t>(b | 0x0040u) : b));
  }
}

TEST_CASE("bfloat16: every array path this CPU has equals the scalar conversion",
          "[bfloat16][core][simd]") {
  const revox::CpuFeatures& f = revox::cpu_features();
  std::cout << "CPU features: avx512f " << f.avx512f << ", avx512bw " << f.avx512bw
            << ", avx512_bf16 " << f.avx512_bf16 << ", amx_tile " << f.amx_tile << ", amx_bf16 "
            << f.amx_bf16 << "; default path " << revox::cpu_path_name(revox::cpu_path())
            << "\n";
  // Inputs: a stride through all bit patterns, every special case of the scalar test in every
  // lane position, at lengths that end inside a vector and past a conversion chunk (2^16).
  std::vector<float> src;
  for (std::uint64_t u = 0; u <= 0xffffffffull; u += 65521) {
    src.push_back(float_from_bits(static_cast<std::uint32_t>(u)));
  }
  for (std::uint32_t u : {0x7f800001u, 0xff800001u, 0x7f7fffffu, 0x00018000u, 0x3f808000u,
                          0x3f818000u, 0x80000001u, 0x7fa00000u}) {
    for (int lane = 0; lane < 17; ++lane) src.push_back(float_from_bits(u));
  }
  revox::Rng rng(9);
  while (src.size() < 140000) {
    src.push_back(float_from_bits(static_cast<std::uint32_t>(rng.next_u64())));
  }
  std::vector<std::uint16_t> want(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) want[i] = revox::bfloat16_bits(src[i]);

  for (CpuPath path : available_paths()) {
    INFO("path " << revox::cpu_path_name(path));
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16},
                          std::size_t{17}, std::size_t{1000}, src.size()}) {
      INFO("n = " << n);
      std::vector<bfloat16> dst(n + 1, bfloat16::from_bits(0xabcd));
      revox::to_bfloat16(path, src.data(), dst.data(), static_cast<index_t>(n));
      index_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) wrong += dst[i].bits != want[i];
      CHECK(wrong == 0);
      CHECK(dst[n].bits == 0xabcd);  // nothing written past n

      std::vector<float> back(n + 1, -7.0f);
      revox::to_float(path, dst.data(), back.data(), static_cast<index_t>(n));
      index_t inexact = 0;
      for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t u = 0;
        std::memcpy(&u, &back[i], sizeof u);
        inexact += u != (static_cast<std::uint32_t>(dst[i].bits) << 16);
      }
      CHECK(inexact == 0);
      CHECK(back[n] == -7.0f);  // nothing written past n
    }
  }
  // The default entry points take cpu_path().
  std::vector<bfloat16> dst(src.size());
  revox::to_bfloat16(src.data(), dst.data(), static_cast<index_t>(src.size()));
  index_t wrong = 0;
  for (std::size_t i = 0; i < src.size(); ++i) wrong += dst[i].bits != want[i];
  CHECK(wrong == 0);
}

TEST_CASE("bfloat16: misuse errors", "[bfloat16][core]") {
  float x = 1.0f;
  bfloat16 b;
  CHECK_THROWS_WITH(revox::to_bfloat16(CpuPath::portable, &x, &b, -1),
                    Catch::Contains("to_bfloat16: negative count -1"));
  CHECK_THROWS_WITH(revox::to_float(CpuPath::portable, &b, &x, -2),
                    Catch::Contains("to_float: negative count -2"));
  if (!revox::cpu_path_available(CpuPath::avx512)) {
    CHECK_THROWS_WITH(revox::to_bfloat16(CpuPath::avx512, &x, &b, 1),
                      Catch::Contains("the avx512 path is not available on this CPU"));
  }
}
