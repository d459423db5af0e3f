// revox/ops/cpu/gemm_bf16.hpp — ops/cpu/gemm.hpp's two matrix products for bfloat16
// activations with float32 weights, float32 accumulation:
//
//   gemm_ax_bf16:   Y (M x S) = A (M x K) X (K x S) [+ bias[m] per row]      Y ASSIGNED
//                   A, bias float; X bfloat16; Y bfloat16 or float (OutT)
//   gemm_abt_bf16:  C (M x K) += D (M x S) X (K x S)^T                       C ACCUMULATED
//                   D, X bfloat16; C float
//
// Leading dimensions and the no-overlap rule are gemm.hpp's. Call from serial code: both start
// their own OpenMP team above a minimum size, and results do not depend on the thread count.
//
// Precision (the same on every path): A is rounded to bfloat16 for the products, as the
// bf16 instructions require and as PyTorch's autocast does with weights; a product of two
// bfloat16 values is exact in float32; sums are float32 (gemm_abt_bf16: float32 over at most
// a range of columns, then double, ranges fixed by S); bias is added in float32; a bfloat16 Y
// is the float32 result rounded to nearest even. The paths differ only in the order and
// rounding of the float32 sums (VDPBF16PS and TDPBF16PS add two products before they round,
// and treat subnormal inputs and results as zero), so they agree to the tolerances
// tests/test_gemm_bf16.cpp documents. Each path gives the same bits at any thread count.
//
// Paths, chosen at run time by CpuPath (core/cpu_features.hpp), the overloads without one
// taking cpu_path():
//  * avx512_bf16: VDPBF16PS, 32 multiply-adds per instruction (twice float32 FMA).
//    gemm_ax_bf16 packs strips of 64 columns of X as (k, k+1) pairs — the instruction's
//    operand — a block of up to 16 strips (256 KiB) at a time, and keeps a 6 x 64 tile of Y in
//    24 registers while K runs; threads split the blocks. gemm_abt_bf16 reads D and X rows as
//    they lie (consecutive columns are the pairs); a 4 x 4 tile of C sums in 16 registers over
//    a chunk of 1024 columns, every 4 columns of C in turn over the same chunk; threads split
//    ranges of columns (or, with fewer than 8 ranges, (range, 4 columns of C) items),
//    whose partial sums are added in range order.
//  * amx_bf16: AMX tiles (TDPBF16PS, 16 x 16 x 32 per instruction); the layouts are described
//    at the kernels below.
//  * portable (and avx512): threads split blocks of columns, which are widened to float32 in
//    a per-thread buffer (with AVX-512 on the avx512 path) and handed to gemm.hpp's float
//    kernels on that thread, with A rounded through bfloat16 first.
//
// activation_gemm_ax / activation_gemm_abt (at the end) pick gemm.hpp's products or these by
// the activation type, for the convolutions' kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "revox/core/bfloat16.hpp"
#include "revox/core/config.hpp"
#include "revox/core/cpu_features.hpp"
#include "revox/core/error.hpp"
#include "revox/core/precision.hpp"
#include "revox/ops/cpu/gemm.hpp"

namespace revox::cpu {
namespace detail {

// Below this many multiply-adds a product runs on the calling thread.
inline constexpr index_t kBf16ParallelMin = index_t{1} << 18;
// Columns in a gemm_ax_bf16 strip (four vectors of 16), rows in its register tile; strips
// packed together in a block (at most this many, within this many bytes of packed X).
inline constexpr index_t kBf16AxStrip = 64;
inline constexpr int kBf16AxRows = 6;
inline constexpr index_t kBf16AxBlockStrips = 16;
inline constexpr index_t kBf16AxBlockBytes = index_t{256} << 10;
// gemm_abt_bf16: columns per chunk summed in float32 registers, per range at least, and
// ranges at most (each range holds an M x K partial in double).
inline constexpr index_t kBf16AbtChunk = 1024;
inline constexpr index_t kBf16AbtRange = 8192;
inline constexpr index_t kBf16AbtMaxRanges = 64;
inline constexpr index_t kBf16AbtRangeItems = 8;
// Portable path: the float32 scratch of a block of columns per thread, in floats (256 KiB).
inline constexpr index_t kBf16PortableBlockFloats = index_t{1} << 16;

// C (M x K, leading dimension ldc) += the ranges' partial sums (each M x K, row-major, one
// after another), added in range order in double: how every path of gemm_abt_bf16 ends.
template <class P>
void add_range_partials(index_t M, index_t K, index_t ranges, const P* partials, float* C,
                        index_t ldc) {
  for (index_t m = 0; m < M; ++m)
    for (index_t k = 0; k < K; ++k) {
      double sum = static_cast<double>(C[m * ldc + k]);
      for (index_t r = 0; r < ranges; ++r) {
        sum += static_cast<double>(partials[(r * M + m) * K + k]);
      }
      C[m * ldc + k] = static_cast<float>(sum);
    }
}

template <class OutT>
void gemm_ax_bf16_portable(CpuPath conversions, index_t M, index_t K, index_t S,
                           const float* A, index_t lda, const bfloat16* X, index_t ldx, OutT* Y,
                           index_t ldy, const float* bias) {
  std::vector<float> a(static_cast<std::size_t>(M * K));
  for (index_t m = 0; m < M; ++m)
    for (index_t k = 0; k < K; ++k) {
      a[static_cast<std::size_t>(m * K + k)] =
          float_from_bfloat16_bits(bfloat16_bits(A[m * lda + k]));
    }
  // Threads split blocks of columns small enough that the widened X and the float Y of one
  // stay in cache; each runs gemm_ax on its block on its own thread (a nested region).
  // (A multiple of 192 columns: whole register tiles of gemm_ax at every vector width.)
  const index_t block = std::min(
      S, std::clamp<index_t>(kBf16PortableBlockFloats / std::max<index_t>(K + M, 1) / 192 * 192,
                             192, 1152));
  const index_t blocks = (S + block - 1) / block;
#pragma omp parallel if (M * K * S >= kBf16ParallelMin && blocks > 1)
  {
    std::vector<float> xs(static_cast<std::size_t>(K * block));
    std::vector<float> ys(static_cast<std::size_t>(M * block));
#pragma omp for schedule(static)
    for (index_t b = 0; b < blocks; ++b) {
      const index_t s0 = b * block;
      const index_t width = std::min(block, S - s0);
      for (index_t k = 0; k < K; ++k) {
        ::revox::detail::to_float_range(conversions, X + k * ldx + s0, xs.data() + k * width, 0,
                                       width);
      }
      gemm_ax<float>(M, K, width, a.data(), K, xs.data(), width, ys.data(), width, bias, false);
      for (index_t m = 0; m < M; ++m) {
        const float* row = ys.data() + m * width;
        OutT* out = Y + m * ldy + s0;
        if constexpr (std::is_same_v<OutT, float>) {
          std::copy(row, row + width, out);
        } else {
          ::revox::detail::to_bfloat16_range(conversions, row, out, 0, width);
        }
      }
    }
  }
}

inline void gemm_abt_bf16_portable(CpuPath conversions, index_t M, index_t K, index_t S,
                                   const bfloat16* D, index_t ldd, const bfloat16* X,
                                   index_t ldx, float* C, index_t ldc) {
  // Ranges of columns fixed by S (as on the avx512_bf16 path), split between threads; each
  // sums its blocks into a float partial with gemm_abt (on its own thread), and the partials
  // are added to C in range order in double.
  const index_t ranges = std::clamp<index_t>((S + kBf16AbtRange - 1) / kBf16AbtRange, 1,
                                             kBf16AbtMaxRanges);
  const index_t range_len = (S + ranges - 1) / ranges;
  // Blocks as long as 4 MiB of float scratch per thread allows: gemm_abt's cost per call
  // (its M x K double sums) wants long ones.
  const index_t block = std::min(
      range_len,
      std::max<index_t>(192, 16 * kBf16PortableBlockFloats / std::max<index_t>(K + M, 1)));
  std::vector<float> partials(static_cast<std::size_t>(ranges * M * K), 0.0f);
#pragma omp parallel if (M * K * S >= kBf16ParallelMin && ranges > 1)
  {
    std::vector<float> ds(static_cast<std::size_t>(M * block));
    std::vector<float> xs(static_cast<std::size_t>(K * block));
#pragma omp for schedule(static)
    for (index_t r = 0; r < ranges; ++r) {
      const index_t r1 = std::min(S, (r + 1) * range_len);
      for (index_t s0 = r * range_len; s0 < r1; s0 += block) {
        const index_t width = std::min(block, r1 - s0);
        for (index_t m = 0; m < M; ++m) {
          ::revox::detail::to_float_range(conversions, D + m * ldd + s0, ds.data() + m * width,
                                          0, width);
        }
        for (index_t k = 0; k < K; ++k) {
          ::revox::detail::to_float_range(conversions, X + k * ldx + s0, xs.data() + k * width,
                                          0, width);
        }
        gemm_abt<float>(M, K, width, ds.data(), width, xs.data(), width,
                        partials.data() + r * M * K, K);
      }
    }
  }
  add_range_partials(M, K, ranges, partials.data(), C, ldc);
}

#if REVOX_X86_CPUID
#define REVOX_TARGET_BF16 __attribute__((target("avx512f,avx512bf16")))

// (k, k+1) pairs of A's rows rounded to bfloat16: pairs[m * K2 + j] holds A[m][2j] in its low
// half and A[m][2j+1] (zero past K) in its high half.
inline std::vector<std::uint32_t> pack_a_pairs(index_t M, index_t K, const float* A,
                                               index_t lda) {
  const index_t K2 = (K + 1) / 2;
  std::vector<std::uint32_t> pairs(static_cast<std::size_t>(M * K2));
  for (index_t m = 0; m < M; ++m)
    for (index_t j = 0; j < K2; ++j) {
      const std::uint32_t lo = bfloat16_bits(A[m * lda + 2 * j]);
      const std::uint32_t hi = 2 * j + 1 < K ? bfloat16_bits(A[m * lda + 2 * j + 1]) : 0u;
      pairs[static_cast<std::size_t>(m * K2 + j)] = lo | (hi << 16);
    }
  return pairs;
}

// packed[j * 64 + c] = X[2j][s0 + c] | X[2j+1][s0 + c] << 16 for c < width, zero beyond (and
// for the missing row 2j+1 of an odd K).
REVOX_TARGET_BF16 inline void pack_x_strip(index_t K, index_t s0, index_t width,
                                           const bfloat16* X, index_t ldx,
                                           std::uint32_t* packed) {
  // The zero-masked forms with every lane set: see bfloat16.hpp on GCC 12's warnings.
  const __mmask16 kAll = 0xffff;
  const index_t K2 = (K + 1) / 2;
  const index_t full = width / 16 * 16;
  for (index_t j = 0; j < K2; ++j) {
    const bfloat16* r0 = X + 2 * j * ldx + s0;
    const bfloat16* r1 = 2 * j + 1 < K ? r0 + ldx : nullptr;
    std::uint32_t* out = packed + j * kBf16AxStrip;
    for (index_t c = 0; c < full; c += 16) {
      const __m512i lo = _mm512_maskz_cvtepu16_epi32(
          kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + c)));
      __m512i pair = lo;
      if (r1 != nullptr) {
        const __m512i hi = _mm512_maskz_cvtepu16_epi32(
            kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + c)));
        pair = _mm512_or_si512(lo, _mm512_maskz_slli_epi32(kAll, hi, 16));
      }
      _mm512_storeu_si512(static_cast<void*>(out + c), pair);
    }
    for (index_t c = full; c < kBf16AxStrip; ++c) {
      std::uint32_t v = 0;
      if (c < width) {
        v = r0[c].bits;
        if (r1 != nullptr) v |= static_cast<std::uint32_t>(r1[c].bits) << 16;
      }
      out[c] = v;
    }
  }
}

// Y rows [m0, m0 + MR) x strip columns [0, width) from the packed strip.
template <int MR, class OutT>
REVOX_TARGET_BF16 void ax_bf16_tile(index_t K2, const std::uint32_t* a_pairs, index_t m0,
                                    const std::uint32_t* packed, index_t s0, index_t width,
                                    OutT* Y, index_t ldy, const float* bias) {
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    const __m512 init = _mm512_set1_ps(bias != nullptr ? bias[m0 + r] : 0.0f);
    for (int v = 0; v < 4; ++v) acc[r][v] = init;
  }
  for (index_t j = 0; j < K2; ++j) {
    const std::uint32_t* xp = packed + j * kBf16AxStrip;
    __m512i x[4];
    for (int v = 0; v < 4; ++v) x[v] = _mm512_loadu_si512(static_cast<const void*>(xp + 16 * v));
    for (int r = 0; r < MR; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(a_pairs[(m0 + r) * K2 + j]));
      for (int v = 0; v < 4; ++v) {
        acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)a, (__m512bh)x[v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    OutT* out = Y + (m0 + r) * ldy + s0;
    for (int v = 0; v < 4; ++v) {
      const index_t c = 16 * v;
      if (c >= width) break;
      const index_t n = std::min<index_t>(16, width - c);
      const __mmask16 mask = static_cast<__mmask16>(n == 16 ? 0xffffu : (1u << n) - 1u);
      if constexpr (std::is_same_v<OutT, float>) {
        _mm512_mask_storeu_ps(out + c, mask, acc[r][v]);
      } else {
        const __m512i bits = _mm512_castps_si512(acc[r][v]);
        _mm512_mask_cvtepi32_storeu_epi16(out + c, mask,
                                          ::revox::detail::round_to_bfloat16_avx512(bits));
      }
    }
  }
}

template <class OutT>
REVOX_TARGET_BF16 void ax_bf16_rows(int rows, index_t K2, const std::uint32_t* a_pairs,
                                    index_t m0, const std::uint32_t* packed, index_t s0,
                                    index_t width, OutT* Y, index_t ldy, const float* bias) {
  switch (rows) {
    case 6: ax_bf16_tile<6>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
    case 5: ax_bf16_tile<5>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
    case 4: ax_bf16_tile<4>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
    case 3: ax_bf16_tile<3>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
    case 2: ax_bf16_tile<2>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
    default: ax_bf16_tile<1>(K2, a_pairs, m0, packed, s0, width, Y, ldy, bias); break;
  }
}

template <class OutT>
void gemm_ax_bf16_avx512bf16(index_t M, index_t K, index_t S, const float* A, index_t lda,
                             const bfloat16* X, index_t ldx, OutT* Y, index_t ldy,
                             const float* bias) {
  static_assert(kBf16AxRows == 6, "ax_bf16_rows dispatches tiles of up to 6 rows");
  const index_t K2 = (K + 1) / 2;
  const std::vector<std::uint32_t> a_pairs = pack_a_pairs(M, K, A, lda);
  const index_t strip_words = std::max<index_t>(K2, 1) * kBf16AxStrip;
  // A block: as many strips as keep the packed X within kBf16AxBlockBytes (at least one, at
  // most kBf16AxBlockStrips), so that each row of X and Y is touched in long runs.
  const index_t block_strips = std::clamp<index_t>(
      kBf16AxBlockBytes / (strip_words * 4), 1, kBf16AxBlockStrips);
  const index_t block_cols = block_strips * kBf16AxStrip;
  const index_t blocks = (S + block_cols - 1) / block_cols;
#pragma omp parallel if (M * K * S >= kBf16ParallelMin && blocks > 1)
  {
    std::vector<std::uint32_t> packed(static_cast<std::size_t>(strip_words * block_strips));
#pragma omp for schedule(static)
    for (index_t block = 0; block < blocks; ++block) {
      const index_t b0 = block * block_cols;
      const index_t strips = (std::min(block_cols, S - b0) + kBf16AxStrip - 1) / kBf16AxStrip;
      for (index_t t = 0; t < strips; ++t) {
        const index_t s0 = b0 + t * kBf16AxStrip;
        pack_x_strip(K, s0, std::min(kBf16AxStrip, S - s0), X, ldx,
                     packed.data() + t * strip_words);
      }
      for (index_t m0 = 0; m0 < M; m0 += kBf16AxRows) {
        const int rows = static_cast<int>(std::min<index_t>(kBf16AxRows, M - m0));
        for (index_t t = 0; t < strips; ++t) {
          const index_t s0 = b0 + t * kBf16AxStrip;
          ax_bf16_rows(rows, K2, a_pairs.data(), m0, packed.data() + t * strip_words, s0,
                       std::min(kBf16AxStrip, S - s0), Y, ldy, bias);
        }
      }
    }
  }
}

// partial[m * ldp + k] += sum over s in [c0, c1) of D[m][s] X[k][s] for m < M and the up
// to 4 columns k in [k0, k0 + cols), c1 - c0 a multiple of 32 and at most kBf16AbtChunk:
// float32 vectors over 32-column steps, their lanes then added in order into double.
REVOX_TARGET_BF16 inline void abt_bf16_chunk(index_t M, index_t k0, int cols, index_t c0,
                                             index_t c1, const bfloat16* D, index_t ldd,
                                             const bfloat16* X, index_t ldx, double* partial,
                                             index_t ldp) {
  for (index_t m0 = 0; m0 < M; m0 += 4) {
    const int rows = static_cast<int>(std::min<index_t>(4, M - m0));
    __m512 acc[4][4];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
    for (index_t s = c0; s < c1; s += 32) {
      __m512i x[4];
      for (int c = 0; c < 4; ++c) {
        x[c] = c < cols ? _mm512_loadu_si512(static_cast<const void*>(X + (k0 + c) * ldx + s))
                        : _mm512_setzero_si512();
      }
      for (int r = 0; r < rows; ++r) {
        const __m512i d = _mm512_loadu_si512(static_cast<const void*>(D + (m0 + r) * ldd + s));
        for (int c = 0; c < 4; ++c) {
          acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)d, (__m512bh)x[c]);
        }
      }
    }
    alignas(64) float lanes[16];
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        _mm512_store_ps(lanes, acc[r][c]);
        double sum = 0.0;
        for (float lane : lanes) sum += static_cast<double>(lane);
        partial[(m0 + r) * ldp + k0 + c] += sum;
      }
  }
}

// The same for the columns [t0, t1) past a range's last whole 32, in double.
inline void abt_bf16_tail(index_t M, index_t k0, int cols, index_t t0, index_t t1,
                          const bfloat16* D, index_t ldd, const bfloat16* X, index_t ldx,
                          double* partial, index_t ldp) {
  for (index_t m = 0; m < M; ++m)
    for (int c = 0; c < cols; ++c) {
      double sum = 0.0;
      for (index_t s = t0; s < t1; ++s) {
        sum += static_cast<double>(float_from_bfloat16_bits(D[m * ldd + s].bits)) *
               static_cast<double>(float_from_bfloat16_bits(X[(k0 + c) * ldx + s].bits));
      }
      partial[m * ldp + k0 + c] += sum;
    }
}

// Every chunk of range [s0, s1) for the column groups [g0, g1) of C: chunks outer, so that a
// chunk of D's rows stays in cache while every group reads it.
inline void abt_bf16_range(index_t M, index_t K, index_t g0, index_t g1, index_t s0, index_t s1,
                           const bfloat16* D, index_t ldd, const bfloat16* X, index_t ldx,
                           double* partial) {
  const index_t full_end = s0 + (s1 - s0) / 32 * 32;
  for (index_t c0 = s0; c0 < full_end; c0 += kBf16AbtChunk) {
    const index_t c1 = std::min(full_end, c0 + kBf16AbtChunk);
    for (index_t g = g0; g < g1; ++g) {
      const int cols = static_cast<int>(std::min<index_t>(4, K - 4 * g));
      abt_bf16_chunk(M, 4 * g, cols, c0, c1, D, ldd, X, ldx, partial, K);
    }
  }
  for (index_t g = g0; g < g1; ++g) {
    const int cols = static_cast<int>(std::min<index_t>(4, K - 4 * g));
    abt_bf16_tail(M, 4 * g, cols, full_end, s1, D, ldd, X, ldx, partial, K);
  }
}

inline void gemm_abt_bf16_avx512bf16(index_t M, index_t K, index_t S, const bfloat16* D,
                                     index_t ldd, const bfloat16* X, index_t ldx, float* C,
                                     index_t ldc) {
  const index_t ranges = std::clamp<index_t>((S + kBf16AbtRange - 1) / kBf16AbtRange, 1,
                                             kBf16AbtMaxRanges);
  // Range boundaries on multiples of 32 columns, fixed by S alone.
  const index_t range_len = ((S + ranges - 1) / ranges + 31) / 32 * 32;
  const index_t groups = (K + 3) / 4;
  std::vector<double> partials(static_cast<std::size_t>(ranges * M * K), 0.0);
  // Each (range, group) sums its chunks in the same order whichever thread runs it, so the
  // two ways of sharing the work give the same bits: whole ranges when there are several
  // (kBf16AbtRangeItems), otherwise (range, group) items.
  if (ranges >= kBf16AbtRangeItems) {
#pragma omp parallel for schedule(static) if (M * K * S >= kBf16ParallelMin)
    for (index_t r = 0; r < ranges; ++r) {
      const index_t s0 = std::min(S, r * range_len);
      abt_bf16_range(M, K, 0, groups, s0, std::min(S, s0 + range_len), D, ldd, X, ldx,
                     partials.data() + r * M * K);
    }
  } else {
#pragma omp parallel for schedule(static) collapse(2) if (M * K * S >= kBf16ParallelMin)
    for (index_t r = 0; r < ranges; ++r) {
      for (index_t g = 0; g < groups; ++g) {
        const index_t s0 = std::min(S, r * range_len);
        abt_bf16_range(M, K, g, g + 1, s0, std::min(S, s0 + range_len), D, ldd, X, ldx,
                       partials.data() + r * M * K);
      }
    }
  }
  add_range_partials(M, K, ranges, partials.data(), C, ldc);
}
#undef REVOX_TARGET_BF16

// ---- AMX ----------------------------------------------------------------------------------
// gemm_ax_bf16 on tiles: A (rounded to bfloat16, zero-padded to a multiple of 32 rows and 32
// columns) is the row-major A operand of TDPBF16PS; the (k, k+1)-packed strips of X, padded
// to a multiple of 16 pairs, are its B operand as they lie. Each step of 32 k updates a
// 32 x 32 block of Y in four accumulator tiles (tmm0-3) from two A tiles (tmm4-5) and two B
// tiles (tmm6-7); the block is then stored to a buffer and written out with the bias and the
// rounding, through AVX-512.
#define REVOX_TARGET_AMX __attribute__((target("avx512f,avx512bf16,amx-tile,amx-bf16")))

struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

// Every tile 16 rows of 64 bytes; loaded on the calling thread (tile state is per thread).
REVOX_TARGET_AMX inline void amx_configure_tiles() {
  AmxTileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  _tile_loadconfig(&config);
}

// One step of a 32 x 32 block: accumulator tiles 0-3 += A tiles (a0, a1: rows 0-15, 16-31)
// times B tiles (b0, b1: columns 0-15, 16-31).
REVOX_TARGET_AMX inline void amx_block_step(const void* a0, const void* a1, long a_stride,
                                            const void* b0, const void* b1, long b_stride) {
  _tile_loadd(4, a0, a_stride);
  _tile_loadd(5, a1, a_stride);
  _tile_loadd(6, b0, b_stride);
  _tile_loadd(7, b1, b_stride);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

// The block's accumulators into cbuf: 32 rows of 32 floats, tile (r, c) at rows 16 r,
// columns 16 c.
REVOX_TARGET_AMX inline void amx_store_block(float* cbuf) {
  _tile_stored(0, cbuf, 128);
  _tile_stored(1, cbuf + 16, 128);
  _tile_stored(2, cbuf + 16 * 32, 128);
  _tile_stored(3, cbuf + 16 * 32 + 16, 128);
}

REVOX_TARGET_AMX inline void amx_zero_block() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// The 32 x 32 block of Y at rows m0 (of the padded A) and strip columns [c0, c0 + 32).
template <class OutT>
REVOX_TARGET_AMX void amx_ax_block(index_t Kp, const std::uint16_t* a16, index_t m0,
                                   const std::uint32_t* packed, index_t c0, index_t M,
                                   index_t s0, index_t width, OutT* Y, index_t ldy,
                                   const float* bias, float* cbuf) {
  amx_zero_block();
  const long a_stride = static_cast<long>(Kp * 2);
  const long b_stride = static_cast<long>(kBf16AxStrip * 4);
  for (index_t k0 = 0; k0 < Kp; k0 += 32) {
    const std::uint32_t* b = packed + (k0 / 2) * kBf16AxStrip + c0;
    amx_block_step(a16 + m0 * Kp + k0, a16 + (m0 + 16) * Kp + k0, a_stride, b, b + 16,
                   b_stride);
  }
  amx_store_block(cbuf);
  const index_t rows = std::min<index_t>(32, M - m0);
  for (index_t r = 0; r < rows; ++r) {
    const __m512 b = _mm512_set1_ps(bias != nullptr ? bias[m0 + r] : 0.0f);
    OutT* out = Y + (m0 + r) * ldy + s0;
    for (index_t h = 0; h < 2; ++h) {
      const index_t c = c0 + 16 * h;
      if (c >= width) break;
      const index_t n = std::min<index_t>(16, width - c);
      const __mmask16 mask = static_cast<__mmask16>(n == 16 ? 0xffffu : (1u << n) - 1u);
      const __m512 v = _mm512_add_ps(_mm512_loadu_ps(cbuf + r * 32 + 16 * h), b);
      if constexpr (std::is_same_v<OutT, float>) {
        _mm512_mask_storeu_ps(out + c, mask, v);
      } else {
        _mm512_mask_cvtepi32_storeu_epi16(
            out + c, mask, ::revox::detail::round_to_bfloat16_avx512(_mm512_castps_si512(v)));
      }
    }
  }
}

// One block of columns [b0, b0 + block_cols): packs its strips, then every 32 x 32 block of
// Y in it. Configures the tiles and releases them (a block is about a million multiply-adds
// and more; the configuration costs a few hundred cycles).
template <class OutT>
REVOX_TARGET_AMX void amx_ax_column_block(index_t M, index_t Mp, index_t K, index_t Kp,
                                          const std::uint16_t* a16, index_t S, index_t b0,
                                          index_t block_cols, const bfloat16* X, index_t ldx,
                                          OutT* Y, index_t ldy, const float* bias,
                                          std::uint32_t* packed, index_t strip_words) {
  alignas(64) float cbuf[32 * 32];
  const index_t strips = (std::min(block_cols, S - b0) + kBf16AxStrip - 1) / kBf16AxStrip;
  for (index_t t = 0; t < strips; ++t) {
    const index_t s0 = b0 + t * kBf16AxStrip;
    std::uint32_t* strip = packed + t * strip_words;
    // Rows of pairs past K (up to Kp / 2) are never written: zero since the buffer was made.
    pack_x_strip(K, s0, std::min(kBf16AxStrip, S - s0), X, ldx, strip);
  }
  __asm__ volatile("" ::: "memory");  // the tile loads below read the packed strips
  amx_configure_tiles();
  for (index_t m0 = 0; m0 < Mp; m0 += 32) {
    for (index_t t = 0; t < strips; ++t) {
      const index_t s0 = b0 + t * kBf16AxStrip;
      const index_t width = std::min(kBf16AxStrip, S - s0);
      for (index_t c0 = 0; c0 < width; c0 += 32) {
        amx_ax_block(Kp, a16, m0, packed + t * strip_words, c0, M, s0, width, Y, ldy, bias,
                     cbuf);
      }
    }
  }
  _tile_release();
}

template <class OutT>
void gemm_ax_bf16_amx(index_t M, index_t K, index_t S, const float* A, index_t lda,
                      const bfloat16* X, index_t ldx, OutT* Y, index_t ldy, const float* bias) {
  const index_t Kp = std::max<index_t>(32, (K + 31) / 32 * 32);
  const index_t Mp = (M + 31) / 32 * 32;
  std::vector<std::uint16_t> a16(static_cast<std::size_t>(Mp * Kp), 0);
  for (index_t m = 0; m < M; ++m)
    for (index_t k = 0; k < K; ++k) {
      a16[static_cast<std::size_t>(m * Kp + k)] = bfloat16_bits(A[m * lda + k]);
    }
  const index_t strip_words = Kp / 2 * kBf16AxStrip;
  const index_t block_strips = std::clamp<index_t>(
      kBf16AxBlockBytes / (strip_words * 4), 1, kBf16AxBlockStrips);
  const index_t block_cols = block_strips * kBf16AxStrip;
  const index_t blocks = (S + block_cols - 1) / block_cols;
#pragma omp parallel if (M * K * S >= kBf16ParallelMin && blocks > 1)
  {
    std::vector<std::uint32_t> packed(static_cast<std::size_t>(strip_words * block_strips));
#pragma omp for schedule(static)
    for (index_t block = 0; block < blocks; ++block) {
      amx_ax_column_block(M, Mp, K, Kp, a16.data(), S, block * block_cols, block_cols, X, ldx,
                          Y, ldy, bias, packed.data(), strip_words);
    }
  }
}

// gemm_abt_bf16 on tiles. Over a chunk of 32-column steps, D's rows (copied into a buffer of
// whole 32-row tiles, zero-padded) are the A operand as they lie; X^T is the B operand, whose
// row j holds the pair (X[k][2j], X[k][2j+1]) for 16 values of k: each 16 x 16 block of X's
// 32-bit pairs transposed. A 32 x 32 block of C sums in four accumulator tiles over the chunk,
// then adds into the range's double partial, as the avx512_bf16 path does.
inline constexpr index_t kAmxAbtChunk = 1024;

// bt[(kt * steps + st) * 256 + j * 16 + kk] = pair j of step st of row 16 kt + kk of X (zero
// past K), for the chunk [c0, c0 + 32 steps).
REVOX_TARGET_AMX inline void amx_pack_xt(index_t K, index_t Kt, index_t c0, index_t steps,
                                         const bfloat16* X, index_t ldx, std::uint32_t* bt) {
  for (index_t kt = 0; kt < Kt; ++kt) {
    for (index_t st = 0; st < steps; ++st) {
      std::uint32_t* tile = bt + (kt * steps + st) * 256;
      for (index_t kk = 0; kk < 16; ++kk) {
        const index_t k = 16 * kt + kk;
        if (k >= K) {
          for (index_t j = 0; j < 16; ++j) tile[j * 16 + kk] = 0u;
          continue;
        }
        const bfloat16* row = X + k * ldx + c0 + 32 * st;
        for (index_t j = 0; j < 16; ++j) {
          tile[j * 16 + kk] = static_cast<std::uint32_t>(row[2 * j].bits) |
                              (static_cast<std::uint32_t>(row[2 * j + 1].bits) << 16);
        }
      }
    }
  }
}

// One chunk of a range: partial (M x K, row-major) += D[:, c0:c1] X[:, c0:c1]^T.
REVOX_TARGET_AMX inline void amx_abt_chunk(index_t M, index_t K, index_t c0, index_t c1,
                                           const bfloat16* D, index_t ldd, const bfloat16* X,
                                           index_t ldx, double* partial, std::uint16_t* dbuf,
                                           std::uint32_t* bt) {
  const index_t steps = (c1 - c0) / 32;
  const index_t Mp = (M + 31) / 32 * 32;
  const index_t Kt = (K + 31) / 32 * 2;  // 16-column tiles of C, in pairs
  const index_t width = steps * 32;
  for (index_t m = 0; m < Mp; ++m) {
    std::uint16_t* out = dbuf + m * width;
    if (m < M) {
      std::memcpy(out, D + m * ldd + c0, static_cast<std::size_t>(width) * 2);
    } else {
      std::fill(out, out + width, std::uint16_t{0});
    }
  }
  amx_pack_xt(K, Kt, c0, steps, X, ldx, bt);
  __asm__ volatile("" ::: "memory");  // the tile loads below read dbuf and bt
  alignas(64) float cbuf[32 * 32];
  const long d_stride = static_cast<long>(width * 2);
  for (index_t m0 = 0; m0 < Mp; m0 += 32) {
    for (index_t kt = 0; kt < Kt; kt += 2) {
      amx_zero_block();
      for (index_t st = 0; st < steps; ++st) {
        amx_block_step(dbuf + m0 * width + 32 * st, dbuf + (m0 + 16) * width + 32 * st,
                       d_stride, bt + (kt * steps + st) * 256,
                       bt + ((kt + 1) * steps + st) * 256, 64);
      }
      amx_store_block(cbuf);
      const index_t rows = std::min<index_t>(32, M - m0);
      const index_t cols = std::min<index_t>(32, K - 16 * kt);
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
          partial[(m0 + r) * K + 16 * kt + c] += static_cast<double>(cbuf[r * 32 + c]);
        }
    }
  }
}

// The whole chunks of [s0, s1), with the tiles configured for them.
REVOX_TARGET_AMX inline void amx_abt_chunks(index_t M, index_t K, index_t s0, index_t s1,
                                            const bfloat16* D, index_t ldd, const bfloat16* X,
                                            index_t ldx, double* partial, std::uint16_t* dbuf,
                                            std::uint32_t* bt) {
  amx_configure_tiles();
  for (index_t c0 = s0; c0 < s1; c0 += kAmxAbtChunk) {
    amx_abt_chunk(M, K, c0, std::min(s1, c0 + kAmxAbtChunk), D, ldd, X, ldx, partial, dbuf, bt);
  }
  _tile_release();
}

inline void gemm_abt_bf16_amx(index_t M, index_t K, index_t S, const bfloat16* D, index_t ldd,
                              const bfloat16* X, index_t ldx, float* C, index_t ldc) {
  const index_t ranges = std::clamp<index_t>((S + kBf16AbtRange - 1) / kBf16AbtRange, 1,
                                             kBf16AbtMaxRanges);
  const index_t range_len = ((S + ranges - 1) / ranges + 31) / 32 * 32;
  const index_t Mp = (M + 31) / 32 * 32;
  const index_t Kt = (K + 31) / 32 * 2;
  std::vector<double> partials(static_cast<std::size_t>(ranges * M * K), 0.0);
#pragma omp parallel if (M * K * S >= kBf16ParallelMin && ranges > 1)
  {
    std::vector<std::uint16_t> dbuf(static_cast<std::size_t>(Mp * kAmxAbtChunk));
    std::vector<std::uint32_t> bt(static_cast<std::size_t>(Kt * (kAmxAbtChunk / 32) * 256));
#pragma omp for schedule(static)
    for (index_t r = 0; r < ranges; ++r) {
      const index_t s0 = std::min(S, r * range_len);
      const index_t s1 = std::min(S, s0 + range_len);
      const index_t full_end = s0 + (s1 - s0) / 32 * 32;
      double* partial = partials.data() + r * M * K;
      amx_abt_chunks(M, K, s0, full_end, D, ldd, X, ldx, partial, dbuf.data(), bt.data());
      for (index_t g = 0; g < (K + 3) / 4; ++g) {
        const int cols = static_cast<int>(std::min<index_t>(4, K - 4 * g));
        abt_bf16_tail(M, 4 * g, cols, full_end, s1, D, ldd, X, ldx, partial, K);
      }
    }
  }
  add_range_partials(M, K, ranges, partials.data(), C, ldc);
}
#undef REVOX_TARGET_AMX
#endif  // REVOX_X86_CPUID

inline void check_bf16_path(const char* op, CpuPath path) {
  REVOX_CHECK(cpu_path_available(path), op, ": the ", cpu_path_name(path),
              " path is not available on this CPU");
}

}  // namespace detail

// Y = A X (+ bias) with bfloat16 X, float A and bias, on `path` (see the header comment).
template <class OutT>
void gemm_ax_bf16(CpuPath path, index_t M, index_t K, index_t S, const float* A, index_t lda,
                  const bfloat16* X, index_t ldx, OutT* Y, index_t ldy, const float* bias) {
  static_assert(std::is_same_v<OutT, float> || std::is_same_v<OutT, bfloat16>,
                "gemm_ax_bf16 writes float or bfloat16");
  detail::check_bf16_path("cpu::gemm_ax_bf16", path);
  if (M <= 0 || S <= 0) return;
#if REVOX_X86_CPUID
  if (path >= CpuPath::amx_bf16) {
    detail::gemm_ax_bf16_amx(M, K, S, A, lda, X, ldx, Y, ldy, bias);
    return;
  }
  if (path >= CpuPath::avx512_bf16) {
    detail::gemm_ax_bf16_avx512bf16(M, K, S, A, lda, X, ldx, Y, ldy, bias);
    return;
  }
#endif
  detail::gemm_ax_bf16_portable(std::min(path, CpuPath::avx512), M, K, S, A, lda, X, ldx, Y, ldy,
                                bias);
}

template <class OutT>
void gemm_ax_bf16(index_t M, index_t K, index_t S, const float* A, index_t lda,
                  const bfloat16* X, index_t ldx, OutT* Y, index_t ldy, const float* bias) {
  gemm_ax_bf16(cpu_path(), M, K, S, A, lda, X, ldx, Y, ldy, bias);
}

// C += D X^T with bfloat16 D and X, float C, on `path` (see the header comment).
inline void gemm_abt_bf16(CpuPath path, index_t M, index_t K, index_t S, const bfloat16* D,
                          index_t ldd, const bfloat16* X, index_t ldx, float* C, index_t ldc) {
  detail::check_bf16_path("cpu::gemm_abt_bf16", path);
  if (M <= 0 || K <= 0 || S <= 0) return;
#if REVOX_X86_CPUID
  if (path >= CpuPath::amx_bf16) {
    detail::gemm_abt_bf16_amx(M, K, S, D, ldd, X, ldx, C, ldc);
    return;
  }
  if (path >= CpuPath::avx512_bf16) {
    detail::gemm_abt_bf16_avx512bf16(M, K, S, D, ldd, X, ldx, C, ldc);
    return;
  }
#endif
  detail::gemm_abt_bf16_portable(std::min(path, CpuPath::avx512), M, K, S, D, ldd, X, ldx, C,
                                 ldc);
}

inline void gemm_abt_bf16(index_t M, index_t K, index_t S, const bfloat16* D, index_t ldd,
                          const bfloat16* X, index_t ldx, float* C, index_t ldc) {
  gemm_abt_bf16(cpu_path(), M, K, S, D, ldd, X, ldx, C, ldc);
}

// The products for activations of type T, with parameters of type param_t<T>: gemm.hpp's for
// float and double, the bfloat16 ones above (on cpu_path()) for bfloat16.
template <class T>
void activation_gemm_ax(index_t M, index_t K, index_t S, const param_t<T>* A, index_t lda,
                        const T* X, index_t ldx, T* Y, index_t ldy, const param_t<T>* bias) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    gemm_ax_bf16<bfloat16>(M, K, S, A, lda, X, ldx, Y, ldy, bias);
  } else {
    gemm_ax<T>(M, K, S, A, lda, X, ldx, Y, ldy, bias, false);
  }
}

template <class T>
void activation_gemm_abt(index_t M, index_t K, index_t S, const T* D, index_t ldd, const T* X,
                         index_t ldx, param_t<T>* C, index_t ldc) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    gemm_abt_bf16(M, K, S, D, ldd, X, ldx, C, ldc);
  } else {
    gemm_abt<T>(M, K, S, D, ldd, X, ldx, C, ldc);
  }
}

}  // namespace revox::cpu
