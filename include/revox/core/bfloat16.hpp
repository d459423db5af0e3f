// revox/core/bfloat16.hpp — bfloat16, the storage type for mixed-precision activations: the
// upper 16 bits of an IEEE-754 binary32 (1 sign, 8 exponent, 7 mantissa bits), so it has
// float32's range with 8 bits of precision. Arithmetic happens in float32; bfloat16 only
// stores.
//
// float -> bfloat16 rounds to nearest, ties to even (PyTorch's and oneDNN's rounding):
//   - finite values round to the nearer of the two neighbouring bfloat16 values, the one with
//     an even last bit on a tie; a value past the largest finite bfloat16 (3.3895e38) by half
//     a step or more becomes +-inf;
//   - subnormal inputs round like any other value (no flush to zero: the AVX512-BF16
//     instruction VCVTNEPS2BF16 flushes them, so revox does not use it for this);
//   - +-inf stay +-inf, -0 stays -0;
//   - NaN stays NaN with its sign, made quiet (a signalling NaN whose payload sits only in the
//     low 16 bits would otherwise become inf).
// bfloat16 -> float is exact.
//
// to_bfloat16(src, dst, n) and to_float(src, dst, n) convert arrays, on cpu_path() (AVX-512
// where the CPU has it, chosen at run time, else portable C++); both give the same bits as
// the scalar conversion for every input. The overloads taking a CpuPath run that path (tests
// run each one the machine has).
#pragma once

#include <cstdint>
#include <cstring>

#include "revox/core/config.hpp"
#include "revox/core/cpu_features.hpp"
#include "revox/core/error.hpp"

#if REVOX_X86_CPUID
#include <immintrin.h>
#endif

namespace revox {

// The bits of `value` rounded to bfloat16 (see the header comment).
inline std::uint16_t bfloat16_bits(float value) {
  std::uint32_t u = 0;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN: keep the sign, make quiet
  }
  const std::uint32_t bias = 0x7fffu + ((u >> 16) & 1u);  // ties go to the even neighbour
  return static_cast<std::uint16_t>((u + bias) >> 16);
}

// The float whose upper half is `bits` (exact).
inline float float_from_bfloat16_bits(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float value = 0.0f;
  std::memcpy(&value, &u, sizeof value);
  return value;
}

struct bfloat16 {
  std::uint16_t bits = 0;

  bfloat16() = default;
  explicit bfloat16(float value) : bits(bfloat16_bits(value)) {}
  // Through float: a double lying within 2^-25 relative of a bfloat16 tie may round the other
  // way than a direct rounding would (random test data and constants, not kernel results).
  explicit bfloat16(double value) : bits(bfloat16_bits(static_cast<float>(value))) {}
  static bfloat16 from_bits(std::uint16_t b) {
    bfloat16 x;
    x.bits = b;
    return x;
  }
  explicit operator float() const { return float_from_bfloat16_bits(bits); }
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 must be 16 bits");

namespace detail {

inline void to_bfloat16_portable(const float* src, bfloat16* dst, index_t begin, index_t end) {
  for (index_t i = begin; i < end; ++i) dst[i].bits = bfloat16_bits(src[i]);
}

inline void to_float_portable(const bfloat16* src, float* dst, index_t begin, index_t end) {
  for (index_t i = begin; i < end; ++i) dst[i] = float_from_bfloat16_bits(src[i].bits);
}

#if REVOX_X86_CPUID
// The scalar rounding on 16 lanes with AVX-512F integer instructions. The zero-masked forms
// (maskz with every lane set) compute the same as the plain ones, whose pass-through operand
// trips GCC 12's -Wmaybe-uninitialized inside its own intrinsics header.
// The 16 float lanes of u (as bits) rounded to bfloat16, each in the low half of its lane.
__attribute__((target("avx512f"))) inline __m512i round_to_bfloat16_avx512(__m512i u) {
  const __mmask16 kAll = 0xffff;
  const __m512i high = _mm512_maskz_srli_epi32(kAll, u, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                        _mm512_and_si512(high, _mm512_set1_epi32(1)));
  const __m512i rounded = _mm512_maskz_srli_epi32(kAll, _mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x0040)));
}

__attribute__((target("avx512f"))) inline void to_bfloat16_avx512(const float* src,
                                                                  bfloat16* dst, index_t begin,
                                                                  index_t end) {
  const __mmask16 kAll = 0xffff;
  index_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const __m512i rounded =
        round_to_bfloat16_avx512(_mm512_loadu_si512(static_cast<const void*>(src + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_maskz_cvtepi32_epi16(kAll, rounded));
  }
  to_bfloat16_portable(src, dst, i, end);
}

__attribute__((target("avx512f"))) inline void to_float_avx512(const bfloat16* src, float* dst,
                                                               index_t begin, index_t end) {
  const __mmask16 kAll = 0xffff;
  index_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m512i u = _mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtepu16_epi32(kAll, b), 16);
    _mm512_storeu_si512(static_cast<void*>(dst + i), u);
  }
  to_float_portable(src, dst, i, end);
}
#endif

// Splits [0, n) into chunks of 2^16 over OpenMP threads (one thread below two chunks).
template <class Fn>
void for_each_conversion_chunk(index_t n, Fn&& fn) {
  constexpr index_t kChunk = index_t{1} << 16;
  const index_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (index_t c = 0; c < chunks; ++c) {
    const index_t begin = c * kChunk;
    fn(begin, begin + kChunk < n ? begin + kChunk : n);
  }
}

// The conversions of [begin, end) on `path`, on the calling thread (no OpenMP region: for
// callers that convert many short rows, or from inside their own parallel loop).
inline void to_bfloat16_range(CpuPath path, const float* src, bfloat16* dst, index_t begin,
                              index_t end) {
#if REVOX_X86_CPUID
  if (path >= CpuPath::avx512) {
    to_bfloat16_avx512(src, dst, begin, end);
    return;
  }
#endif
  static_cast<void>(path);
  to_bfloat16_portable(src, dst, begin, end);
}

inline void to_float_range(CpuPath path, const bfloat16* src, float* dst, index_t begin,
                           index_t end) {
#if REVOX_X86_CPUID
  if (path >= CpuPath::avx512) {
    to_float_avx512(src, dst, begin, end);
    return;
  }
#endif
  static_cast<void>(path);
  to_float_portable(src, dst, begin, end);
}

}  // namespace detail

// dst[i] = bfloat16(src[i]) for i < n, on `path` (which must be available on this CPU).
inline void to_bfloat16(CpuPath path, const float* src, bfloat16* dst, index_t n) {
  REVOX_CHECK(n >= 0, "to_bfloat16: negative count ", n);
  REVOX_CHECK(cpu_path_available(path), "to_bfloat16: the ", cpu_path_name(path),
              " path is not available on this CPU");
  detail::for_each_conversion_chunk(n, [&](index_t begin, index_t end) {
    detail::to_bfloat16_range(path, src, dst, begin, end);
  });
}

// dst[i] = float(src[i]) for i < n, on `path` (which must be available on this CPU).
inline void to_float(CpuPath path, const bfloat16* src, float* dst, index_t n) {
  REVOX_CHECK(n >= 0, "to_float: negative count ", n);
  REVOX_CHECK(cpu_path_available(path), "to_float: the ", cpu_path_name(path),
              " path is not available on this CPU");
  detail::for_each_conversion_chunk(n, [&](index_t begin, index_t end) {
    detail::to_float_range(path, src, dst, begin, end);
  });
}

inline void to_bfloat16(const float* src, bfloat16* dst, index_t n) {
  to_bfloat16(cpu_path(), src, dst, n);
}
inline void to_float(const bfloat16* src, float* dst, index_t n) {
  to_float(cpu_path(), src, dst, n);
}

}  // namespace revox
