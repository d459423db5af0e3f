// revox/ops/cpu/simd.hpp — the short vectors the CPU fast paths compute with: Vec<T, N>, N
// lanes of T, with element-wise +, -, * (a scalar operand is broadcast), and unaligned
// load/store helpers. With GCC or Clang it is the compiler's vector extension, so each
// operation becomes one instruction of the target's widest enabled vector unit (several for
// N wider than the unit) and a * b + c is contracted to an FMA where the target has one and
// the language mode allows it (GCC's default -std=gnu++17 does: -ffp-contract=fast); other
// compilers get a plain struct of N lanes with loops the optimiser may vectorise.
//
// native_lanes<T>: lanes of the widest vector the translation unit is compiled for (64 bytes
// with AVX-512, 32 with AVX, otherwise 16), i.e. what the fast paths pick by default. The
// revox target adds no -march flag: the width follows the user's own compiler flags.
// Kernels take N as a template parameter so tests can run every width on any machine.
//
// Also here: keep_in_register (stops GCC from re-reading a loaded vector per FMA),
// stream_store / stream_row / stream_fence (non-temporal stores for outputs far larger than
// the caches, x86 only, ordinary stores elsewhere), interleave / deinterleave / shift_in /
// shift_out (lane permutations: the compiler's shuffles with GCC >= 12 or Clang, otherwise
// the copies through arrays of namespace portable, which the tests compare them with),
// AlignedBuffer (64-byte aligned per-thread scratch), REVOX_UNROLL and REVOX_PREFETCH. None of
// them changes a computed value. The vector width does: sums split across lanes (weight
// gradients) group their terms by N, so results are bitwise reproducible for a given build
// (instruction set) at any thread count, not across builds for different instruction sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "revox/core/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__CUDACC__) && \
    defined(__SSE2__)
#include <immintrin.h>
#define REVOX_SIMD_X86_STREAM 1
#else
#define REVOX_SIMD_X86_STREAM 0
#endif

// REVOX_UNROLL(n): ask GCC to unroll the next loop n times (register tiles are arrays that
// must be fully unrolled to live in registers); nothing for other compilers, including the
// CUDA front end, which does not know GCC's pragma.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define REVOX_PRAGMA(text) _Pragma(#text)
#define REVOX_UNROLL(n) REVOX_PRAGMA(GCC unroll n)
#else
#define REVOX_UNROLL(n)
#endif

// REVOX_PREFETCH(address): a hint to start loading the cache line at address.
#if defined(__GNUC__)
#define REVOX_PREFETCH(address) __builtin_prefetch(address)
#else
#define REVOX_PREFETCH(address) ((void)(address))
#endif

namespace revox::cpu::simd {

#if defined(__AVX512F__)
inline constexpr int kNativeBytes = 64;
#elif defined(__AVX__)
inline constexpr int kNativeBytes = 32;
#else
inline constexpr int kNativeBytes = 16;
#endif

template <class T>
inline constexpr int native_lanes = kNativeBytes / static_cast<int>(sizeof(T));

#if defined(__GNUC__)

#define REVOX_SIMD_INLINE inline __attribute__((always_inline))

template <class T, int N>
struct VecType {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};

template <class T, int N>
using Vec = typename VecType<T, N>::type;

template <class T, int N>
REVOX_SIMD_INLINE void broadcast(Vec<T, N>& v, T value) {
  v = Vec<T, N>{} + value;
}

#else

#define REVOX_SIMD_INLINE inline

template <class T, int N>
struct Vec {
  T lane[N];
  T& operator[](int i) { return lane[i]; }
  T operator[](int i) const { return lane[i]; }
  friend Vec operator+(Vec a, const Vec& b) {
    for (int i = 0; i < N; ++i) a.lane[i] += b.lane[i];
    return a;
  }
  friend Vec operator-(Vec a, const Vec& b) {
    for (int i = 0; i < N; ++i) a.lane[i] -= b.lane[i];
    return a;
  }
  friend Vec operator*(Vec a, const Vec& b) {
    for (int i = 0; i < N; ++i) a.lane[i] *= b.lane[i];
    return a;
  }
  friend Vec operator*(T s, Vec a) {
    for (int i = 0; i < N; ++i) a.lane[i] *= s;
    return a;
  }
  Vec& operator+=(const Vec& b) { return *this = *this + b; }
};

template <class T, int N>
inline void broadcast(Vec<T, N>& v, T value) {
  for (int i = 0; i < N; ++i) v.lane[i] = value;
}

#endif

// keep_in_register(v): makes the compiler materialise vector v in a register here. A value
// loaded once and used by several FMAs is otherwise often re-read from memory by each FMA (a
// folded memory operand), which turns a register-blocked kernel load-bound. A no-op for
// vectors wider than the target's registers and outside GCC/Clang.
template <class V>
REVOX_SIMD_INLINE void keep_in_register(V& v) {
#if defined(__GNUC__) && !defined(__CUDACC__)
  if constexpr (sizeof(V) <= static_cast<std::size_t>(kNativeBytes)) {
#if defined(__AVX512F__)
    asm("" : "+v"(v));
#else
    asm("" : "+x"(v));
#endif
  }
#else
  (void)v;
#endif
}

template <class T, int N>
REVOX_SIMD_INLINE void load(Vec<T, N>& v, const T* p) {
  std::memcpy(&v, p, sizeof(v));
}

template <class T, int N>
REVOX_SIMD_INLINE void store(T* p, const Vec<T, N>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// *dst = v with a non-temporal (streaming) store where the target has one, N is its native
// width and dst is vector-aligned: the line bypasses the caches and is not read first, which
// saves a third of the memory traffic of a streaming kernel's output. Otherwise an ordinary
// store. Call stream_fence() before other threads read the data (the end of the thread's
// work).
template <class T, int N>
REVOX_SIMD_INLINE void stream_store(T* dst, const Vec<T, N>& v) {
#if REVOX_SIMD_X86_STREAM
  constexpr bool native = N * sizeof(T) == static_cast<std::size_t>(kNativeBytes);
  if constexpr (native && (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
    if (reinterpret_cast<std::uintptr_t>(dst) % kNativeBytes == 0) {
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        _mm512_stream_ps(dst, reinterpret_cast<const __m512&>(v));
      } else {
        _mm512_stream_pd(dst, reinterpret_cast<const __m512d&>(v));
      }
#elif defined(__AVX__)
      if constexpr (std::is_same_v<T, float>) {
        _mm256_stream_ps(dst, reinterpret_cast<const __m256&>(v));
      } else {
        _mm256_stream_pd(dst, reinterpret_cast<const __m256d&>(v));
      }
#else
      if constexpr (std::is_same_v<T, float>) {
        _mm_stream_ps(dst, reinterpret_cast<const __m128&>(v));
      } else {
        _mm_stream_pd(dst, reinterpret_cast<const __m128d&>(v));
      }
#endif
      return;
    }
  }
#endif
  store<T, N>(dst, v);
}

// dst[0..count) = src[0..count), whole vectors through stream_store, then the leftover
// elements with ordinary stores.
template <class T, int N>
REVOX_SIMD_INLINE void stream_row(const T* src, index_t count, T* dst) {
  index_t i = 0;
  for (; i + N <= count; i += N) {
    Vec<T, N> v;
    load<T, N>(v, src + i);
    stream_store<T, N>(dst + i, v);
  }
  for (; i < count; ++i) dst[i] = src[i];
}

// Orders this thread's streaming stores before its later stores (a no-op without them).
REVOX_SIMD_INLINE void stream_fence() {
#if REVOX_SIMD_X86_STREAM
  _mm_sfence();
#endif
}

#if (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)) && !defined(__CUDACC__)
#define REVOX_SIMD_SHUFFLE 1
namespace detail {
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void interleave_lo(const V& a, const V& b, V& out, std::index_sequence<I...>) {
  out = __builtin_shufflevector(a, b, (I % 2 == 0 ? I / 2 : sizeof...(I) + I / 2)...);
}
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void interleave_hi(const V& a, const V& b, V& out, std::index_sequence<I...>) {
  out = __builtin_shufflevector(
      a, b, (I % 2 == 0 ? sizeof...(I) / 2 + I / 2 : sizeof...(I) + sizeof...(I) / 2 + I / 2)...);
}
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void shift_in(const V& previous, const V& current, V& out,
                                std::index_sequence<I...>) {
  out = __builtin_shufflevector(previous, current, (sizeof...(I) - 1 + I)...);
}
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void shift_out(const V& current, const V& next, V& out,
                                 std::index_sequence<I...>) {
  out = __builtin_shufflevector(current, next, (I + 1)...);
}
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void even_lanes(const V& a, const V& b, V& out, std::index_sequence<I...>) {
  out = __builtin_shufflevector(a, b, (2 * I)...);
}
template <class V, std::size_t... I>
REVOX_SIMD_INLINE void odd_lanes(const V& a, const V& b, V& out, std::index_sequence<I...>) {
  out = __builtin_shufflevector(a, b, (2 * I + 1)...);
}
}  // namespace detail
#else
#define REVOX_SIMD_SHUFFLE 0
#endif

// The lane permutations below, as plain copies through arrays: what runs where the compiler
// has no vector shuffle (and what the tests hold the shuffles to).
namespace portable {

template <class T, int N>
inline void interleave(const Vec<T, N>& a, const Vec<T, N>& b, Vec<T, N>& lo, Vec<T, N>& hi) {
  T in[2][N], out[2 * N];
  std::memcpy(in[0], &a, sizeof(a));
  std::memcpy(in[1], &b, sizeof(b));
  for (int i = 0; i < 2 * N; ++i) out[i] = in[i % 2][i / 2];
  std::memcpy(&lo, out, sizeof(lo));
  std::memcpy(&hi, out + N, sizeof(hi));
}

template <class T, int N>
inline void shift_in(const Vec<T, N>& previous, const Vec<T, N>& current, Vec<T, N>& shifted) {
  T row[2 * N];
  std::memcpy(row, &previous, sizeof(previous));
  std::memcpy(row + N, &current, sizeof(current));
  std::memcpy(&shifted, row + N - 1, sizeof(shifted));
}

template <class T, int N>
inline void shift_out(const Vec<T, N>& current, const Vec<T, N>& next, Vec<T, N>& shifted) {
  T row[2 * N];
  std::memcpy(row, &current, sizeof(current));
  std::memcpy(row + N, &next, sizeof(next));
  std::memcpy(&shifted, row + 1, sizeof(shifted));
}

template <class T, int N>
inline void deinterleave(const Vec<T, N>& lo, const Vec<T, N>& hi, Vec<T, N>& even,
                         Vec<T, N>& odd) {
  T in[2 * N], out[2][N];
  std::memcpy(in, &lo, sizeof(lo));
  std::memcpy(in + N, &hi, sizeof(hi));
  for (int i = 0; i < 2 * N; ++i) out[i % 2][i / 2] = in[i];
  std::memcpy(&even, out[0], sizeof(even));
  std::memcpy(&odd, out[1], sizeof(odd));
}

}  // namespace portable

// lo, hi = a0 b0 a1 b1 ... (the first and second N lanes of a and b interleaved).
template <class T, int N>
REVOX_SIMD_INLINE void interleave(const Vec<T, N>& a, const Vec<T, N>& b, Vec<T, N>& lo,
                                  Vec<T, N>& hi) {
#if REVOX_SIMD_SHUFFLE
  detail::interleave_lo(a, b, lo, std::make_index_sequence<N>{});
  detail::interleave_hi(a, b, hi, std::make_index_sequence<N>{});
#else
  portable::interleave<T, N>(a, b, lo, hi);
#endif
}

// Lanes one step to the right: (previous[N-1], current[0], ..., current[N-2]), i.e. the
// elements at i - 1 of a row whose vectors are previous, current.
template <class T, int N>
REVOX_SIMD_INLINE void shift_in(const Vec<T, N>& previous, const Vec<T, N>& current,
                                Vec<T, N>& shifted) {
#if REVOX_SIMD_SHUFFLE
  detail::shift_in(previous, current, shifted, std::make_index_sequence<N>{});
#else
  portable::shift_in<T, N>(previous, current, shifted);
#endif
}

// Lanes one step to the left: (current[1], ..., current[N-1], next[0]), i.e. the elements at
// i + 1 of a row whose vectors are current, next.
template <class T, int N>
REVOX_SIMD_INLINE void shift_out(const Vec<T, N>& current, const Vec<T, N>& next,
                                 Vec<T, N>& shifted) {
#if REVOX_SIMD_SHUFFLE
  detail::shift_out(current, next, shifted, std::make_index_sequence<N>{});
#else
  portable::shift_out<T, N>(current, next, shifted);
#endif
}

// even, odd = lanes 0, 2, 4, ... and 1, 3, 5, ... of the 2N lanes lo, hi (interleave's inverse).
template <class T, int N>
REVOX_SIMD_INLINE void deinterleave(const Vec<T, N>& lo, const Vec<T, N>& hi, Vec<T, N>& even,
                                    Vec<T, N>& odd) {
#if REVOX_SIMD_SHUFFLE
  detail::even_lanes(lo, hi, even, std::make_index_sequence<N>{});
  detail::odd_lanes(lo, hi, odd, std::make_index_sequence<N>{});
#else
  portable::deinterleave<T, N>(lo, hi, even, odd);
#endif
}

// A zero-initialised, 64-byte aligned buffer of count elements (per-thread scratch of the
// fast paths: plain heap memory, not a tracked tensor).
template <class T>
class AlignedBuffer {
 public:
  explicit AlignedBuffer(index_t count)
      : data_(static_cast<T*>(::operator new(static_cast<std::size_t>(count) * sizeof(T),
                                             std::align_val_t{64}))) {
    for (index_t i = 0; i < count; ++i) data_.get()[i] = T(0);
  }
  T* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<T, Free> data_;
};

}  // namespace revox::cpu::simd
