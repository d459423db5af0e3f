// revox/ops/cpu/gemm.hpp — the two matrix products behind revox's CPU convolutions on NCDHW
// data, where a channel's voxels are a contiguous row (pointwise: the activations themselves;
// dense 3x3x3: the im2col columns of ops/cpu/conv3d.hpp):
//
//   gemm_ax:   Y (M x S) = A (M x K) X (K x S)           Y ASSIGNED (plus bias[m] per row when
//              bias is not null), or ACCUMULATED when accumulate is true
//   gemm_abt:  C (M x K) += D (M x S) X (K x S)^T        C ACCUMULATED, summed in double
//
// A and C are row-major with leading dimensions lda and ldc; the rows of X, Y and D start ldx,
// ldy and ldd elements apart. Outputs must not overlap inputs. Call from serial code: both
// start their own OpenMP team above a minimum size.
//
// Fast path (simd.hpp vectors of N lanes along S):
//  * gemm_ax: a tile of MR rows of Y by NV vectors stays in registers while K runs; each
//    k loads NV vectors of X and broadcasts MR elements of A (MR * NV FMAs). K is blocked by
//    kGemmKBlock so that the X panel stays in L1 across all row tiles. Threads split S into
//    column blocks (at most kGemmAxBlock columns, narrow enough for K rows of X to stay in
//    L2), and the next block's X rows are prefetched while a block computes. Every element of
//    Y is computed by one thread, in k order.
//  * gemm_abt: C is cut into MR x KR tiles whose vector accumulators (lane l sums the columns
//    s = l mod N) stay in registers over a cache block of kGemmChunk columns; the spatial axis
//    is cut into ranges (at most kGemmMaxRanges, about kGemmRange columns each) over which a
//    tile's vectors sum in T, then its lanes are added in lane order into double. With many
//    ranges, threads split the ranges (each computes all of C into a partial, added in range
//    order at the end); otherwise they split columns of tiles (all of M for KR columns of C,
//    so X's rows are read once). The split, the ranges and every summation order are fixed
//    by the shapes: results do not depend on the number of threads.
// namespace reference has the plain loops the tests compare against.
#pragma once

#include <algorithm>
#include <vector>

#include "revox/core/config.hpp"
#include "revox/ops/cpu/simd.hpp"

namespace revox::cpu {
namespace detail {

// Below this many multiply-adds a product runs on the calling thread.
inline constexpr index_t kGemmParallelMin = index_t{1} << 18;
inline constexpr index_t kGemmKBlock = 128;
// gemm_ax: columns per block at most (rounded down to whole register tiles), and the bytes
// of X a block may span (K rows), so that it stays in a 1 MiB L2 with Y's block beside it.
inline constexpr index_t kGemmAxBlock = 1024;
inline constexpr index_t kGemmAxPanelBytes = index_t{256} << 10;
// gemm_abt: columns per cache block, per range summed in float vectors, and ranges at most.
inline constexpr index_t kGemmChunk = 2048;
inline constexpr index_t kGemmRange = 16384;
inline constexpr index_t kGemmMaxRanges = 64;
// Register tiles: 32 vector registers with AVX-512, 16 otherwise.
inline constexpr int kGemmAxRows = simd::kNativeBytes >= 64 ? 8 : 4;
inline constexpr int kGemmAxVectors = simd::kNativeBytes >= 64 ? 3 : 2;
inline constexpr int kGemmAbtRows = simd::kNativeBytes >= 64 ? 4 : 2;
inline constexpr int kGemmAbtCols = 4;

// Y[0..MR) x [0..NV*N) (+)= A[0..MR) x [k0..k1) * X[k0..k1) x [0..NV*N); start: 0 = from zero,
// 1 = from bias, 2 = from Y.
template <class T, int N, int MR, int NV>
void gemm_ax_tile(index_t k0, index_t k1, const T* A, index_t lda, const T* X, index_t ldx, T* Y,
                  index_t ldy, int start, const T* bias) {
  using V = simd::Vec<T, N>;
  V acc[MR][NV];
REVOX_UNROLL(8)
  for (int m = 0; m < MR; ++m) {
REVOX_UNROLL(4)
    for (int v = 0; v < NV; ++v) {
      if (start == 2) {
        simd::load<T, N>(acc[m][v], Y + m * ldy + v * N);
      } else {
        simd::broadcast<T, N>(acc[m][v], start == 1 ? bias[m] : T(0));
      }
    }
  }
  for (index_t k = k0; k < k1; ++k) {
    V x[NV];
REVOX_UNROLL(4)
    for (int v = 0; v < NV; ++v) simd::load<T, N>(x[v], X + k * ldx + v * N);
REVOX_UNROLL(8)
    for (int m = 0; m < MR; ++m) {
      const T a = A[m * lda + k];
REVOX_UNROLL(4)
      for (int v = 0; v < NV; ++v) acc[m][v] += a * x[v];
    }
  }
REVOX_UNROLL(8)
  for (int m = 0; m < MR; ++m) {
REVOX_UNROLL(4)
    for (int v = 0; v < NV; ++v) simd::store<T, N>(Y + m * ldy + v * N, acc[m][v]);
  }
}

// The same for `rows` < MR rows (the last row tile), dispatched to a tile of that height.
template <class T, int N, int MR, int NV>
void gemm_ax_rows(int rows, index_t k0, index_t k1, const T* A, index_t lda, const T* X,
                  index_t ldx, T* Y, index_t ldy, int start, const T* bias) {
  if constexpr (MR > 1) {
    if (rows < MR) {
      gemm_ax_rows<T, N, MR - 1, NV>(rows, k0, k1, A, lda, X, ldx, Y, ldy, start, bias);
      return;
    }
  }
  gemm_ax_tile<T, N, MR, NV>(k0, k1, A, lda, X, ldx, Y, ldy, start, bias);
}

// Columns [s0, s0 + width) of Y, width < N: plain loops, k in the same order.
template <class T>
void gemm_ax_columns(index_t M, index_t K, index_t s0, index_t width, const T* A, index_t lda,
                     const T* X, index_t ldx, T* Y, index_t ldy, const T* bias, bool accumulate) {
  for (index_t m = 0; m < M; ++m) {
    for (index_t s = s0; s < s0 + width; ++s) {
      T acc = accumulate ? Y[m * ldy + s] : bias != nullptr ? bias[m] : T(0);
      for (index_t k = 0; k < K; ++k) acc += A[m * lda + k] * X[k * ldx + s];
      Y[m * ldy + s] = acc;
    }
  }
}

template <class T, int N, int MR, int NV>
void gemm_ax_impl(index_t M, index_t K, index_t S, const T* A, index_t lda, const T* X,
                  index_t ldx, T* Y, index_t ldy, const T* bias, bool accumulate) {
  if (M <= 0 || S <= 0) return;
  const index_t tile = NV * N;
  // Column blocks of whole tiles: long contiguous runs of each row of X and Y (few pages per
  // stream), but narrow enough for the block's K rows of X to stay in L2 across row tiles.
  const index_t fitting = kGemmAxPanelBytes / static_cast<index_t>(sizeof(T)) / std::max<index_t>(K, 1);
  const index_t block = std::max<index_t>(tile, std::min(kGemmAxBlock, fitting) / tile * tile);
  const index_t blocks = (S + block - 1) / block;
  const int first_start = accumulate ? 2 : bias != nullptr ? 1 : 0;
#pragma omp parallel for schedule(static) if (M * K * S >= kGemmParallelMin)
  for (index_t b = 0; b < blocks; ++b) {
    const index_t b0 = b * block;
    const index_t b1 = std::min(S, b0 + block);
    if (K == 0) {
      gemm_ax_columns(M, K, b0, b1 - b0, A, lda, X, ldx, Y, ldy, bias, accumulate);
      continue;
    }
    for (index_t k0 = 0; k0 < K; k0 += kGemmKBlock) {
      const index_t k1 = std::min(K, k0 + kGemmKBlock);
      const int start = k0 == 0 ? first_start : 2;
      for (index_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = static_cast<int>(std::min<index_t>(MR, M - m0));
        const T* a = A + m0 * lda;
        const T* row_bias = bias != nullptr ? bias + m0 : nullptr;
        T* y = Y + m0 * ldy;
        index_t s = b0;
        for (; s + tile <= b1; s += tile) {
          // Start loading the next block's X rows while the first row tile computes.
          if (b + 1 < blocks) {
            constexpr index_t line = 64 / static_cast<index_t>(sizeof(T));
            if (m0 == 0) {
              for (index_t k = k0; k < k1; ++k) {
                for (index_t c = 0; c < tile; c += line) {
                  REVOX_PREFETCH(X + k * ldx + s + block + c);
                }
              }
            }
          }
          gemm_ax_rows<T, N, MR, NV>(rows, k0, k1, a, lda, X + s, ldx, y + s, ldy, start,
                                     row_bias);
        }
        // The last, partial tile: whole vectors one at a time, then the leftover columns.
        for (; s + N <= b1; s += N) {
          gemm_ax_rows<T, N, MR, 1>(rows, k0, k1, a, lda, X + s, ldx, y + s, ldy, start,
                                    row_bias);
        }
        if (s < b1 && k0 == 0) {
          // Plain loops over all of K at once for the leftover columns.
          gemm_ax_columns(static_cast<index_t>(rows), K, s, b1 - s, a, lda, X, ldx, y, ldy,
                          row_bias, accumulate);
        }
      }
    }
  }
}

// The vector accumulators of an MR x KR tile of C (lane l of sum[m][k] sums the columns
// s = l mod N) += D[0..MR) x X[0..KR)^T over the whole vectors of columns [s0, s1); sums
// holds the tile's vectors (N elements each), row stride ldsum vectors. Returns the first
// column not covered.
template <class T, int N, int MR, int KR>
index_t gemm_abt_tile(index_t s0, index_t s1, const T* D, index_t ldd, const T* X, index_t ldx,
                      T* sums, index_t ldsum) {
  using V = simd::Vec<T, N>;
  V sum[MR][KR];
  REVOX_UNROLL(4)
  for (int m = 0; m < MR; ++m) {
    REVOX_UNROLL(4)
    for (int k = 0; k < KR; ++k) simd::load<T, N>(sum[m][k], sums + (m * ldsum + k) * N);
  }
  index_t s = s0;
  for (; s + N <= s1; s += N) {
    V d[MR];
    V x[KR];
    REVOX_UNROLL(4)
    for (int m = 0; m < MR; ++m) {
      simd::load<T, N>(d[m], D + m * ldd + s);
      simd::keep_in_register(d[m]);
    }
    REVOX_UNROLL(4)
    for (int k = 0; k < KR; ++k) {
      simd::load<T, N>(x[k], X + k * ldx + s);
      simd::keep_in_register(x[k]);
    }
    REVOX_UNROLL(4)
    for (int m = 0; m < MR; ++m) {
      REVOX_UNROLL(4)
      for (int k = 0; k < KR; ++k) sum[m][k] += d[m] * x[k];
    }
  }
  REVOX_UNROLL(4)
  for (int m = 0; m < MR; ++m) {
    REVOX_UNROLL(4)
    for (int k = 0; k < KR; ++k) simd::store<T, N>(sums + (m * ldsum + k) * N, sum[m][k]);
  }
  return s;
}

// gemm_abt_tile for a tile of rows x cols <= MR x KR (the last tiles of C).
template <class T, int N, int MR, int KR>
index_t gemm_abt_block(int rows, int cols, index_t s0, index_t s1, const T* D, index_t ldd,
                       const T* X, index_t ldx, T* sums, index_t ldsum) {
  if constexpr (MR > 1) {
    if (rows < MR) {
      return gemm_abt_block<T, N, MR - 1, KR>(rows, cols, s0, s1, D, ldd, X, ldx, sums, ldsum);
    }
  }
  if constexpr (KR > 1) {
    if (cols < KR) {
      return gemm_abt_block<T, N, MR, KR - 1>(rows, cols, s0, s1, D, ldd, X, ldx, sums, ldsum);
    }
  }
  return gemm_abt_tile<T, N, MR, KR>(s0, s1, D, ldd, X, ldx, sums, ldsum);
}

// total (double, M x K) += C-tiles of columns [s0, s1): every tile's vector sums over
// chunks of kGemmChunk columns, then their lanes in lane order, then the leftover columns
// (s1 - s0 not a multiple of N) in column order. Tiles [t0, t1) of the (M / MR) x (K / KR)
// grid, numbered column-major (the tiles of one column of C, which share their rows of X,
// are consecutive); sums: scratch for M x K vectors of N elements.
template <class T, int N, int MR, int KR>
void gemm_abt_columns(index_t M, index_t K, index_t t0, index_t t1, index_t s0, index_t s1,
                      const T* D, index_t ldd, const T* X, index_t ldx, T* sums,
                      double* total) {
  const index_t row_tiles = (M + MR - 1) / MR;
  for (index_t t = t0; t < t1; ++t) {
    const index_t m0 = (t % row_tiles) * MR;
    const index_t k0 = (t / row_tiles) * KR;
    for (index_t m = m0; m < std::min(M, m0 + MR); ++m) {
      for (index_t k = k0; k < std::min(K, k0 + KR); ++k) {
        std::fill(sums + (m * K + k) * N, sums + (m * K + k + 1) * N, T(0));
      }
    }
  }
  index_t vector_end = s0;
  for (index_t c0 = s0; c0 < s1; c0 += kGemmChunk) {
    const index_t c1 = std::min(s1, c0 + kGemmChunk);
    for (index_t t = t0; t < t1; ++t) {
      const index_t m0 = (t % row_tiles) * MR;
      const index_t k0 = (t / row_tiles) * KR;
      vector_end = gemm_abt_block<T, N, MR, KR>(
          static_cast<int>(std::min<index_t>(MR, M - m0)),
          static_cast<int>(std::min<index_t>(KR, K - k0)), c0, c1, D + m0 * ldd, ldd,
          X + k0 * ldx, ldx, sums + (m0 * K + k0) * N, K);
    }
  }
  for (index_t t = t0; t < t1; ++t) {
    const index_t m0 = (t % row_tiles) * MR;
    const index_t k0 = (t / row_tiles) * KR;
    for (index_t m = m0; m < std::min(M, m0 + MR); ++m) {
      for (index_t k = k0; k < std::min(K, k0 + KR); ++k) {
        double value = 0.0;
        for (int l = 0; l < N; ++l) value += static_cast<double>(sums[(m * K + k) * N + l]);
        for (index_t s = vector_end; s < s1; ++s) {
          value += static_cast<double>(D[m * ldd + s]) * static_cast<double>(X[k * ldx + s]);
        }
        total[m * K + k] += value;
      }
    }
  }
}

// Two splits, chosen by the shapes only (so results never depend on the thread count):
//  * many columns (at least 8 ranges of kGemmRange): threads take whole column ranges and
//    compute all of C for each into a per-range partial; the partials are added in range
//    order. D and X are read once.
//  * otherwise: threads take columns of tiles of C (all of M for KR columns of C) and run
//    over all columns of D and X, in ranges and cache blocks, for each.
template <class T, int N, int MR, int KR>
void gemm_abt_impl(index_t M, index_t K, index_t S, const T* D, index_t ldd, const T* X,
                   index_t ldx, T* C, index_t ldc) {
  if (M <= 0 || K <= 0) return;
  const index_t row_tiles = (M + MR - 1) / MR;
  const index_t col_tiles = (K + KR - 1) / KR;
  const index_t tiles = row_tiles * col_tiles;
  index_t ranges = std::min<index_t>(kGemmMaxRanges, (S + kGemmRange - 1) / kGemmRange);
  const bool split_columns = ranges >= 8;
  if (!split_columns) ranges = std::max<index_t>(1, (S + kGemmRange - 1) / kGemmRange);
  // Range length: a multiple of N, so only the last range has leftover columns.
  const index_t range_length = std::max<index_t>(N, ((S + ranges - 1) / ranges + N - 1) / N * N);
  std::vector<double> partials(static_cast<std::size_t>((split_columns ? ranges : 1) * M * K),
                               0.0);
#pragma omp parallel if (M * K * S >= kGemmParallelMin)
  {
    simd::AlignedBuffer<T> sums(M * K * N);
    if (split_columns) {
#pragma omp for schedule(static)
      for (index_t r = 0; r < ranges; ++r) {
        const index_t s0 = std::min(S, r * range_length);
        const index_t s1 = std::min(S, s0 + range_length);
        gemm_abt_columns<T, N, MR, KR>(M, K, 0, tiles, s0, s1, D, ldd, X, ldx, sums.data(),
                                       partials.data() + r * M * K);
      }
    } else {
      // One column of tiles per task: its rows of X are read once, D's block stays in cache.
#pragma omp for schedule(static)
      for (index_t kt = 0; kt < col_tiles; ++kt) {
        for (index_t s0 = 0; s0 < S; s0 += range_length) {
          gemm_abt_columns<T, N, MR, KR>(M, K, kt * row_tiles, (kt + 1) * row_tiles, s0,
                                         std::min(S, s0 + range_length), D, ldd, X, ldx,
                                         sums.data(), partials.data());
        }
      }
    }
  }
  for (index_t m = 0; m < M; ++m) {
    for (index_t k = 0; k < K; ++k) {
      double sum = 0.0;
      for (index_t r = 0; r < (split_columns ? ranges : 1); ++r) {
        sum += partials[(r * M + m) * K + k];
      }
      T& c = C[m * ldc + k];
      c = static_cast<T>(static_cast<double>(c) + sum);
    }
  }
}

}  // namespace detail

template <class T>
void gemm_ax(index_t M, index_t K, index_t S, const T* A, index_t lda, const T* X, index_t ldx,
             T* Y, index_t ldy, const T* bias, bool accumulate) {
  detail::gemm_ax_impl<T, simd::native_lanes<T>, detail::kGemmAxRows, detail::kGemmAxVectors>(
      M, K, S, A, lda, X, ldx, Y, ldy, bias, accumulate);
}

template <class T>
void gemm_abt(index_t M, index_t K, index_t S, const T* D, index_t ldd, const T* X, index_t ldx,
              T* C, index_t ldc) {
  detail::gemm_abt_impl<T, simd::native_lanes<T>, detail::kGemmAbtRows, detail::kGemmAbtCols>(
      M, K, S, D, ldd, X, ldx, C, ldc);
}

namespace reference {

template <class T>
void gemm_ax(index_t M, index_t K, index_t S, const T* A, index_t lda, const T* X, index_t ldx,
             T* Y, index_t ldy, const T* bias, bool accumulate) {
  for (index_t m = 0; m < M; ++m) {
    for (index_t s = 0; s < S; ++s) {
      double sum = accumulate ? static_cast<double>(Y[m * ldy + s])
                              : bias != nullptr ? static_cast<double>(bias[m]) : 0.0;
      for (index_t k = 0; k < K; ++k) {
        sum += static_cast<double>(A[m * lda + k]) * static_cast<double>(X[k * ldx + s]);
      }
      Y[m * ldy + s] = static_cast<T>(sum);
    }
  }
}

template <class T>
void gemm_abt(index_t M, index_t K, index_t S, const T* D, index_t ldd, const T* X, index_t ldx,
              T* C, index_t ldc) {
  for (index_t m = 0; m < M; ++m) {
    for (index_t k = 0; k < K; ++k) {
      double sum = 0.0;
      for (index_t s = 0; s < S; ++s) {
        sum += static_cast<double>(D[m * ldd + s]) * static_cast<double>(X[k * ldx + s]);
      }
      C[m * ldc + k] = static_cast<T>(static_cast<double>(C[m * ldc + k]) + sum);
    }
  }
}

}  // namespace reference
}  // namespace revox::cpu
