// revox/ops/cpu/depthwise_conv3d.hpp — DepthwiseConv3dKernels<Cpu>: depthwise 3x3x3
// convolution (groups = channels, stride 1, zero padding 1) on the CPU: forward,
// backward-data, backward-weight and the fused backward (data and weight in one pass), each
// with a plain reference in revox::cpu::reference beside the fast path (the kernels take the
// device first, the references do not).
//
//   x, y, dy, dx : (N, C, D, H, W), all of the same shape
//   weight       : (C, 1, 3, 3, 3), PyTorch's Conv3d(C, C, 3, padding=1, groups=C) layout
//   bias, dbias  : (C), or nullptr for none
//   forward:          y[n,c,d,h,w] = bias[c] + sum_{i,j,k in 0..2} weight[c,0,i,j,k] *
//                                    x[n,c,d+i-1,h+j-1,w+k-1]   (x outside the volume is 0)
//                     ASSIGNS y.
//   backward_data:    dx = the same correlation of dy with the kernel flipped along all three
//                     axes (and no bias): dx = (dy/dx)^T dy.                      ASSIGNS dx.
//   backward_weight:  dweight[c,0,i,j,k] += sum_{n,d,h,w} dy[n,c,d,h,w] * x[n,c,d+i-1,h+j-1,w+k-1]
//                     dbias[c] += sum_{n,d,h,w} dy[n,c,d,h,w] (skipped when dbias is nullptr).
//                     ACCUMULATES, summing in double.
//   backward:         backward_data and backward_weight in one pass over x and dy (12 bytes
//                     per element instead of 16): dx ASSIGNED, dweight and dbias ACCUMULATED,
//                     with exactly the results of the two separate calls.
// Preconditions: outputs do not overlap inputs; weight is not nullptr.
// Only the output view or dweight deduces T (the other arguments are written
// std::add_const_t<T> / std::add_pointer_t<T>, which do not deduce): callers may pass mutable
// views for inputs and a plain nullptr for bias and dbias.
//
// Fast path (simd.hpp vectors of N lanes along W, N = simd::native_lanes<T>):
//  * Work is split into tasks (plane (n, c), slab of up to 32 depth slices), fixed by the
//    shape alone, and run with OpenMP (serially below kDepthwiseParallelMin elements).
//  * A task streams its slab slice by slice. Each input slice it needs is copied once into a
//    per-thread ring of three zero-padded slices ((H rounded up to R) + 2 rows of
//    ceil(W / N) + 1 vectors), so the inner loops have no bounds checks and every load stays
//    in L1/L2: the data is read from memory once (plus two halo slices per slab).
//  * Correlation (forward, backward-data): a block of R output rows by one vector is kept in
//    registers while all 27 taps are applied, one kernel plane at a time (its 9 weights in
//    registers); each loaded input vector feeds up to 3 rows, so loads per FMA are
//    (R + 5) / 3R. The finished block is stored straight into the output rows; only a
//    vector that ends past W goes through a one-vector buffer. Every output is summed in
//    (i, j, k) tap order, starting from the bias.
//  * Weight gradient: for each kernel plane, the 9 tap accumulators (vectors) stay in
//    registers over a block of R rows of dy; they are summed per slice into double, per task
//    into a partial, and the partials of a channel are added in task order after the
//    parallel loop. Every output element and every sum is therefore computed by one thread in
//    an order that depends on the shape only: results do not depend on the number of threads.
//  * Memory: the next input slice is prefetched while the current one computes (by the
//    correlation alone: into L2, a share of its rows per row block, so that the reads
//    overlap the whole slice's arithmetic; by the weight and fused passes: all at once when
//    a slice is copied into the ring), and outputs of at least kDepthwiseStreamBytes are
//    written with streaming stores (no read for ownership). Neither changes any value.
//  * Per-thread scratch (the rings, O(H * W) elements, and one vector) is plain heap memory
//    (simd::AlignedBuffer), not tracked tensors; nothing else is allocated.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/cpu/simd.hpp"
#include "revox/ops/depthwise_conv3d.hpp"

namespace revox::cpu {
namespace detail {

inline constexpr int kDepthwiseTaps = 27;
// Below this many elements a call runs on the calling thread: starting a team costs more.
inline constexpr index_t kDepthwiseParallelMin = index_t{1} << 15;
// Depth slices per task at most; fixed so that the task split depends on the shape only.
inline constexpr index_t kDepthwiseSlabDepth = 32;
// Outputs of at least this many bytes are written with streaming stores (simd::stream_row):
// they are far larger than the caches, so keeping them there would only cost the reads of
// write-allocation. Smaller outputs stay in cache for the layer that reads them next.
inline constexpr index_t kDepthwiseStreamBytes = index_t{16} << 20;
// Output rows per register block: 8 where the target has 32 vector registers (AVX-512).
inline constexpr int kDepthwiseRows = simd::kNativeBytes >= 64 ? 8 : 4;

// How a (D, H, W) plane is tiled: padded slices of `rows` x `stride` elements hold
// x[h = row - 1, w = column - 1] and zeros elsewhere.
struct DepthwiseGeometry {
  index_t depth = 0, height = 0, width = 0;
  index_t vectors = 0;      // ceil(W / N): output vectors per row
  index_t stride = 0;       // (vectors + 1) * N >= vectors * N + 2 (N >= 2)
  index_t rows = 0;         // ceil(H / R) * R + 2
  index_t slab_depth = 0;   // depth slices per task
  index_t slabs = 0;        // tasks per plane

  index_t slice_elements() const { return rows * stride; }
};

template <int N, int R>
DepthwiseGeometry depthwise_geometry(const Shape5& s) {
  static_assert(N >= 2 && R >= 1, "depthwise kernels need at least 2 lanes and 1 row");
  DepthwiseGeometry g;
  g.depth = s.d;
  g.height = s.h;
  g.width = s.w;
  g.vectors = (s.w + N - 1) / N;
  g.stride = (g.vectors + 1) * N;
  g.rows = (s.h + R - 1) / R * R + 2;
  g.slabs = (s.d + kDepthwiseSlabDepth - 1) / kDepthwiseSlabDepth;
  g.slab_depth = (s.d + g.slabs - 1) / g.slabs;
  return g;
}

// dst[0..count) = src[0..count) with whole vectors, then elements (rows here are short: a call
// to memmove per row would cost as much as the row's copy).
template <class T, int N>
inline void depthwise_copy_row(const T* src, index_t count, T* dst) {
  index_t i = 0;
  for (; i + N <= count; i += N) {
    simd::Vec<T, N> v;
    simd::load<T, N>(v, src + i);
    // Keeps GCC from turning the loop into a call to memmove (costly for short rows).
    simd::keep_in_register(v);
    simd::store<T, N>(dst + i, v);
  }
  for (; i < count; ++i) dst[i] = src[i];
}

// Starts reading the line at p into L2 (not L1: it is used a whole slice later).
inline void depthwise_prefetch_l2(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

// Three zero-padded copies of the slices of one (D, H, W) plane, plus a zero slice for the
// slices outside the volume. Only the interior of a slot is ever written, so its border
// stays zero.
template <class T, int N>
class PaddedSliceRing {
 public:
  // prefetch_next: get() prefetches the whole next slice when it copies one in (callers that
  // spread the prefetch over their own work pass false).
  PaddedSliceRing(const DepthwiseGeometry& g, bool prefetch_next)
      : g_(g), buffer_(4 * g.slice_elements()), prefetch_next_(prefetch_next) {
    reset();
  }

  // Forget what the slots hold (a new plane follows).
  void reset() { loaded_[0] = loaded_[1] = loaded_[2] = -1; }

  // The padded slice d of `plane`; copied in when the ring does not hold it yet.
  const T* get(const T* plane, index_t d) {
    if (d < 0 || d >= g_.depth) return buffer_.data() + 3 * g_.slice_elements();
    const auto slot = static_cast<int>(d % 3);
    T* dst = buffer_.data() + slot * g_.slice_elements();
    if (loaded_[slot] != d) {
      const index_t slice = g_.height * g_.width;
      const T* src = plane + d * slice;
      for (index_t h = 0; h < g_.height; ++h) {
        depthwise_copy_row<T, N>(src + h * g_.width, g_.width, dst + (h + 1) * g_.stride + 1);
      }
      loaded_[slot] = d;
      // Slice d + 1 is the next one asked for: start reading it from memory now, so that it
      // arrives while slice d - 1's outputs are computed.
      if (prefetch_next_ && d + 1 < g_.depth) {
        constexpr index_t line = 64 / static_cast<index_t>(sizeof(T));
        for (index_t i = 0; i < slice; i += line) REVOX_PREFETCH(src + slice + i);
      }
    }
    return dst;
  }

 private:
  DepthwiseGeometry g_;
  simd::AlignedBuffer<T> buffer_;
  bool prefetch_next_;
  index_t loaded_[3];
};

// Output rows h0 .. h0+R-1, vector v (lanes v*N .. v*N+N-1) of one slice, all 27 taps:
//   acc[r] = init + sum_{i,j,k} w27[9i+3j+k] * slices[i][h0 + r + j][v*N + l + k]
// summed in (i, j, k) order, skipping planes i whose slice is nullptr. The slices are padded:
// row h0 + r + j, column v*N + l + k holds input row h0 + r + j - 1, column v*N + l + k - 1,
// the tap (j, k) of output (h0 + r, v*N + l). w27v holds the 27 taps as vectors.
template <class T, int N, int R>
REVOX_SIMD_INLINE void depthwise_correlate_vector(const T* const slices[3],
                                                  const DepthwiseGeometry& g, index_t offset,
                                                  const simd::Vec<T, N>* w27v,
                                                  const simd::Vec<T, N>& start,
                                                  simd::Vec<T, N> (&acc)[R]) {
  using V = simd::Vec<T, N>;
REVOX_UNROLL(16)
  for (int r = 0; r < R; ++r) acc[r] = start;
  const index_t stride = g.stride;
REVOX_UNROLL(3)
  for (int i = 0; i < 3; ++i) {
    if (slices[i] == nullptr) continue;
    V w[9];
REVOX_UNROLL(9)
    for (int t = 0; t < 9; ++t) {
      w[t] = w27v[9 * i + t];
      simd::keep_in_register(w[t]);
    }
    const T* base = slices[i] + offset;
REVOX_UNROLL(16)
    for (int ir = 0; ir < R + 2; ++ir) {
      const T* row = base + ir * stride;
      V x0;
      simd::load<T, N>(x0, row);
      simd::keep_in_register(x0);
      V x1;
      simd::load<T, N>(x1, row + 1);
      simd::keep_in_register(x1);
      V x2;
      simd::load<T, N>(x2, row + 2);
      simd::keep_in_register(x2);
REVOX_UNROLL(3)
      for (int j = 0; j < 3; ++j) {
        const int r = ir - j;
        if (r < 0 || r >= R) continue;
        acc[r] += w[3 * j] * x0;
        acc[r] += w[3 * j + 1] * x1;
        acc[r] += w[3 * j + 2] * x2;
      }
    }
  }
}

// acc9[3j+k] (vectors, ACCUMULATED) += sum over rows h0 .. h0+R-1 and all vectors of
// dy[h][w] * x[h + j - 1][w + k - 1], with dy_slice and x_slice padded slices (padding makes
// the lanes past W and the rows past H contribute zero).
template <class T, int N, int R>
void depthwise_weight_block(const T* x_slice, const T* dy_slice, const DepthwiseGeometry& g,
                            index_t h0, T* acc9) {
  using V = simd::Vec<T, N>;
  V acc[9];
  for (int t = 0; t < 9; ++t) simd::load<T, N>(acc[t], acc9 + t * N);
  const T* x_base = x_slice + h0 * g.stride;
  const T* g_base = dy_slice + (h0 + 1) * g.stride + 1;
  for (index_t v = 0; v < g.vectors; ++v) {
    V dy[R];
REVOX_UNROLL(16)
    for (int r = 0; r < R; ++r) {
      simd::load<T, N>(dy[r], g_base + r * g.stride + v * N);
      simd::keep_in_register(dy[r]);
    }
REVOX_UNROLL(16)
    for (int ir = 0; ir < R + 2; ++ir) {
      const T* row = x_base + ir * g.stride + v * N;
      V x0;
      simd::load<T, N>(x0, row);
      simd::keep_in_register(x0);
      V x1;
      simd::load<T, N>(x1, row + 1);
      simd::keep_in_register(x1);
      V x2;
      simd::load<T, N>(x2, row + 2);
      simd::keep_in_register(x2);
REVOX_UNROLL(3)
      for (int j = 0; j < 3; ++j) {
        const int r = ir - j;
        if (r < 0 || r >= R) continue;
        acc[3 * j] += dy[r] * x0;
        acc[3 * j + 1] += dy[r] * x1;
        acc[3 * j + 2] += dy[r] * x2;
      }
    }
  }
  for (int t = 0; t < 9; ++t) simd::store<T, N>(acc9 + t * N, acc[t]);
}

// One output slice d of the correlation with w27 (+ init): the three padded input slices of
// depths d-1, d, d+1 (nullptr for those outside the volume) -> out_slice (H x W, unpadded).
// Each block of R rows by one vector is computed in registers and written straight to the
// output (streaming stores when `stream`); a vector that ends past W goes through `tail`
// (N elements) and only its first W - v*N lanes are copied out. `next` (H x W, or nullptr):
// the input slice needed next, prefetched a block of rows at a time so that its reads from
// memory overlap the whole computation.
template <class T, int N, int R>
void depthwise_correlate_slice(const T* const slices[3], const DepthwiseGeometry& g,
                               const T* w27, T init, bool stream, const T* next, T* tail,
                               T* out_slice) {
  constexpr index_t line = 64 / static_cast<index_t>(sizeof(T));
  using V = simd::Vec<T, N>;
  V w27v[kDepthwiseTaps];
  for (int t = 0; t < kDepthwiseTaps; ++t) simd::broadcast<T, N>(w27v[t], w27[t]);
  V start;
  simd::broadcast<T, N>(start, init);
  const index_t full = g.width / N;  // vectors that end inside the row
  for (index_t h0 = 0; h0 < g.height; h0 += R) {
    const index_t rows = std::min<index_t>(R, g.height - h0);
    T* out = out_slice + h0 * g.width;
    const index_t offset = h0 * g.stride;
    if (next != nullptr) {
      const T* first = next + h0 * g.width;
      for (index_t i = 0; i < rows * g.width; i += line) depthwise_prefetch_l2(first + i);
    }
    if (rows == R) {
      for (index_t v = 0; v < full; ++v) {
        V acc[R];
        depthwise_correlate_vector<T, N, R>(slices, g, offset + v * N, w27v, start, acc);
        if (stream) {
REVOX_UNROLL(16)
          for (int r = 0; r < R; ++r) simd::stream_store<T, N>(out + r * g.width + v * N, acc[r]);
        } else {
REVOX_UNROLL(16)
          for (int r = 0; r < R; ++r) simd::store<T, N>(out + r * g.width + v * N, acc[r]);
        }
      }
    } else {
      for (index_t v = 0; v < full; ++v) {
        V acc[R];
        depthwise_correlate_vector<T, N, R>(slices, g, offset + v * N, w27v, start, acc);
        for (index_t r = 0; r < rows; ++r) simd::store<T, N>(out + r * g.width + v * N, acc[r]);
      }
    }
    if (full < g.vectors) {
      V acc[R];
      depthwise_correlate_vector<T, N, R>(slices, g, offset + full * N, w27v, start, acc);
      const index_t lanes = g.width - full * N;
      for (index_t r = 0; r < rows; ++r) {
        simd::store<T, N>(tail, acc[r]);
        T* dst = out + r * g.width + full * N;
        for (index_t l = 0; l < lanes; ++l) dst[l] = tail[l];
      }
    }
  }
}

// acc27 (27 vectors, ACCUMULATED) += the weight gradient of output slice d: dy slice d
// against the padded x slices of depths d-1, d, d+1 (nullptr outside the volume).
template <class T, int N, int R>
void depthwise_weight_slice(const T* const x_slices[3], const T* dy_slice,
                            const DepthwiseGeometry& g, T* acc27) {
  for (index_t h0 = 0; h0 < g.height; h0 += R) {
    for (int i = 0; i < 3; ++i) {
      if (x_slices[i] == nullptr) continue;
      depthwise_weight_block<T, N, R>(x_slices[i], dy_slice, g, h0, acc27 + 9 * i * N);
    }
  }
}

// Adds the lanes of the 27 vector accumulators (and of the dy-sum vector) to the double
// sums of a task, then clears them.
template <class T, int N>
void depthwise_flush_sums(T* acc27, T* dy_sum, double* sums28) {
  for (int t = 0; t < kDepthwiseTaps; ++t) {
    for (int l = 0; l < N; ++l) sums28[t] += static_cast<double>(acc27[t * N + l]);
  }
  for (int l = 0; l < N; ++l) sums28[kDepthwiseTaps] += static_cast<double>(dy_sum[l]);
  std::fill(acc27, acc27 + kDepthwiseTaps * N, T(0));
  std::fill(dy_sum, dy_sum + N, T(0));
}

// dy_sum (one vector, ACCUMULATED) += the elements of a padded slice (its padding is zero).
template <class T, int N>
void depthwise_sum_slice(const T* padded, const DepthwiseGeometry& g, T* dy_sum) {
  using V = simd::Vec<T, N>;
  V acc;
  simd::load<T, N>(acc, dy_sum);
  for (index_t h = 0; h < g.height; ++h) {
    const T* row = padded + (h + 1) * g.stride + 1;
    for (index_t v = 0; v < g.vectors; ++v) {
      V value;
      simd::load<T, N>(value, row + v * N);
      acc += value;
    }
  }
  simd::store<T, N>(dy_sum, acc);
}

// What each fast-path driver does per task.
enum class DepthwisePass { correlate, weight, fused };

// Runs `pass` over every (plane, slab) task:
//   correlate: out = correlation of `in` (x or dy) with taps27(c) (+ bias)
//   weight:    sums of dy x shifted x per task -> partials (tasks x 28: 27 taps, then sum dy)
//   fused:     both, `in` = dy correlated into out with taps27(c), and the weight sums.
// taps27(c) gives the 27 taps of channel c as used by the correlation.
template <class T, int N, int R, class Taps>
void depthwise_run(DepthwisePass pass, const Shape5& s, const T* x, const T* in, Taps taps27,
                   const T* bias, T* out, double* partials) {
  const DepthwiseGeometry g = depthwise_geometry<N, R>(s);
  const index_t planes = s.n * s.c;
  const index_t plane = s.spatial();
  const index_t tasks = planes * g.slabs;
  const bool correlate = pass != DepthwisePass::weight;
  const bool weight = pass != DepthwisePass::correlate;
  const bool stream = s.numel() * static_cast<index_t>(sizeof(T)) >= kDepthwiseStreamBytes;
#pragma omp parallel if (s.numel() >= kDepthwiseParallelMin)
  {
    // The correlation alone spreads its prefetch over each slice's rows (see
    // depthwise_correlate_slice); the weight and fused passes prefetch whole slices.
    PaddedSliceRing<T, N> in_ring(g, weight);
    std::unique_ptr<PaddedSliceRing<T, N>> x_ring;
    if (weight) x_ring = std::make_unique<PaddedSliceRing<T, N>>(g, true);
    simd::AlignedBuffer<T> tail(N);
    simd::AlignedBuffer<T> acc((kDepthwiseTaps + 1) * N);
#pragma omp for schedule(static)
    for (index_t task = 0; task < tasks; ++task) {
      const index_t p = task / g.slabs;
      const index_t c = p % s.c;
      const index_t d_begin = (task % g.slabs) * g.slab_depth;
      const index_t d_end = std::min(d_begin + g.slab_depth, s.d);
      const T* in_plane = in + p * plane;
      in_ring.reset();
      if (weight) x_ring->reset();
      T taps[kDepthwiseTaps];
      if (correlate) taps27(c, taps);
      const T init = bias != nullptr ? bias[c] : T(0);
      double sums[kDepthwiseTaps + 1] = {};
      for (index_t d = d_begin; d < d_end; ++d) {
        // The weight pass reads only slice d of dy; the correlation all three.
        const T* in_slices[3] = {nullptr, nullptr, nullptr};
        for (int i = correlate ? 0 : 1; i < (correlate ? 3 : 2); ++i) {
          const index_t id = d + i - 1;
          in_slices[i] = id >= 0 && id < s.d ? in_ring.get(in_plane, id) : nullptr;
        }
        if (correlate) {
          // Input slice d + 2 is the one the ring copies in for the next output slice.
          const T* next = !weight && d + 1 < d_end && d + 2 < s.d
                              ? in_plane + (d + 2) * s.h * s.w
                              : nullptr;
          depthwise_correlate_slice<T, N, R>(in_slices, g, taps, init, stream, next, tail.data(),
                                             out + p * plane + d * s.h * s.w);
        }
        if (weight) {
          const T* x_plane = x + p * plane;
          const T* x_slices[3];
          for (int i = 0; i < 3; ++i) {
            const index_t id = d + i - 1;
            x_slices[i] = id >= 0 && id < s.d ? x_ring->get(x_plane, id) : nullptr;
          }
          depthwise_weight_slice<T, N, R>(x_slices, in_slices[1], g, acc.data());
          depthwise_sum_slice<T, N>(in_slices[1], g, acc.data() + kDepthwiseTaps * N);
          depthwise_flush_sums<T, N>(acc.data(), acc.data() + kDepthwiseTaps * N, sums);
        }
      }
      if (weight) {
        std::copy(sums, sums + kDepthwiseTaps + 1, partials + task * (kDepthwiseTaps + 1));
      }
    }
    simd::stream_fence();
  }
}

// dweight[c] += the partials of channel c's tasks, in (n, slab) order; likewise dbias.
template <class T>
void depthwise_reduce_partials(const Shape5& s, index_t slabs, const double* partials,
                               T* dweight, T* dbias) {
  for (index_t c = 0; c < s.c; ++c) {
    double sums[kDepthwiseTaps + 1] = {};
    for (index_t n = 0; n < s.n; ++n) {
      for (index_t slab = 0; slab < slabs; ++slab) {
        const double* part = partials + ((n * s.c + c) * slabs + slab) * (kDepthwiseTaps + 1);
        for (int t = 0; t <= kDepthwiseTaps; ++t) sums[t] += part[t];
      }
    }
    T* dw = dweight + c * kDepthwiseTaps;
    for (int t = 0; t < kDepthwiseTaps; ++t) {
      dw[t] = static_cast<T>(static_cast<double>(dw[t]) + sums[t]);
    }
    if (dbias != nullptr) {
      dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + sums[kDepthwiseTaps]);
    }
  }
}

// The fast paths for an explicit vector width N and row block R (the public functions use
// the native width); tests run several widths on any machine.
template <class T, int N, int R>
void depthwise_conv3d_forward_impl(TensorView<const T> x, const T* weight, const T* bias,
                                   TensorView<T> y) {
  const Shape5 s = x.shape;
  if (s.empty()) return;
  auto taps = [weight](index_t c, T* out) {
    std::copy(weight + c * kDepthwiseTaps, weight + (c + 1) * kDepthwiseTaps, out);
  };
  depthwise_run<T, N, R>(DepthwisePass::correlate, s, nullptr, x.data, taps, bias, y.data,
                         nullptr);
}

// Tap (i, j, k) of the flipped kernel is tap (2-i, 2-j, 2-k), i.e. index 26 - index.
template <class T>
struct FlippedTaps {
  const T* weight;
  void operator()(index_t c, T* out) const {
    for (int t = 0; t < kDepthwiseTaps; ++t) {
      out[t] = weight[c * kDepthwiseTaps + kDepthwiseTaps - 1 - t];
    }
  }
};

template <class T, int N, int R>
void depthwise_conv3d_backward_data_impl(TensorView<const T> dy, const T* weight,
                                         TensorView<T> dx) {
  const Shape5 s = dy.shape;
  if (s.empty()) return;
  depthwise_run<T, N, R>(DepthwisePass::correlate, s, nullptr, dy.data, FlippedTaps<T>{weight},
                         nullptr, dx.data, nullptr);
}

template <class T, int N, int R>
void depthwise_conv3d_backward_weight_impl(TensorView<const T> x, TensorView<const T> dy,
                                           T* dweight, T* dbias) {
  const Shape5 s = x.shape;
  if (s.empty()) return;
  const DepthwiseGeometry g = depthwise_geometry<N, R>(s);
  std::vector<double> partials(
      static_cast<std::size_t>(s.n * s.c * g.slabs * (kDepthwiseTaps + 1)));
  depthwise_run<T, N, R>(DepthwisePass::weight, s, x.data, dy.data, FlippedTaps<T>{nullptr},
                         nullptr, nullptr, partials.data());
  depthwise_reduce_partials(s, g.slabs, partials.data(), dweight, dbias);
}

template <class T, int N, int R>
void depthwise_conv3d_backward_impl(TensorView<const T> x, TensorView<const T> dy,
                                    const T* weight, TensorView<T> dx, T* dweight, T* dbias) {
  const Shape5 s = x.shape;
  if (s.empty()) return;
  const DepthwiseGeometry g = depthwise_geometry<N, R>(s);
  std::vector<double> partials(
      static_cast<std::size_t>(s.n * s.c * g.slabs * (kDepthwiseTaps + 1)));
  depthwise_run<T, N, R>(DepthwisePass::fused, s, x.data, dy.data, FlippedTaps<T>{weight},
                         nullptr, dx.data, partials.data());
  depthwise_reduce_partials(s, g.slabs, partials.data(), dweight, dbias);
}

}  // namespace detail
}  // namespace revox::cpu

namespace revox::ops {

template <>
struct DepthwiseConv3dKernels<Cpu> {
  template <class T>
  static void depthwise_conv3d_forward(const Cpu& /*dev*/, TensorView<std::add_const_t<T>> x,
                                       std::add_const_t<T>* weight, std::add_const_t<T>* bias,
                                       TensorView<T> y) {
    cpu::detail::check_depthwise_shapes("depthwise_conv3d_forward", "x", x.shape, "y", y.shape,
                                        weight);
    cpu::detail::depthwise_conv3d_forward_impl<T, cpu::simd::native_lanes<T>,
                                               cpu::detail::kDepthwiseRows>(x, weight, bias, y);
  }

  template <class T>
  static void depthwise_conv3d_backward_data(const Cpu& /*dev*/,
                                             TensorView<std::add_const_t<T>> dy,
                                             std::add_const_t<T>* weight, TensorView<T> dx) {
    cpu::detail::check_depthwise_shapes("depthwise_conv3d_backward_data", "dy", dy.shape, "dx",
                                        dx.shape, weight);
    cpu::detail::depthwise_conv3d_backward_data_impl<T, cpu::simd::native_lanes<T>,
                                                     cpu::detail::kDepthwiseRows>(dy, weight, dx);
  }

  template <class T>
  static void depthwise_conv3d_backward_weight(const Cpu& /*dev*/,
                                               TensorView<std::add_const_t<T>> x,
                                               TensorView<std::add_const_t<T>> dy, T* dweight,
                                               std::add_pointer_t<T> dbias) {
    cpu::detail::check_depthwise_shapes("depthwise_conv3d_backward_weight", "x", x.shape, "dy",
                                        dy.shape, dweight);
    cpu::detail::depthwise_conv3d_backward_weight_impl<T, cpu::simd::native_lanes<T>,
                                                       cpu::detail::kDepthwiseRows>(x, dy, dweight,
                                                                                    dbias);
  }

  template <class T>
  static void depthwise_conv3d_backward(const Cpu& /*dev*/, TensorView<std::add_const_t<T>> x,
                                        TensorView<std::add_const_t<T>> dy,
                                        std::add_const_t<T>* weight, TensorView<T> dx,
                                        std::add_pointer_t<T> dweight,
                                        std::add_pointer_t<T> dbias) {
    cpu::detail::check_depthwise_shapes("depthwise_conv3d_backward", "x", x.shape, "dy",
                                        dy.shape, weight);
    cpu::detail::check_depthwise_shapes("depthwise_conv3d_backward", "x", x.shape, "dx",
                                        dx.shape, weight);
    REVOX_CHECK(dweight != nullptr, "depthwise_conv3d_backward: dweight must not be null");
    cpu::detail::depthwise_conv3d_backward_impl<T, cpu::simd::native_lanes<T>,
                                                cpu::detail::kDepthwiseRows>(x, dy, weight, dx,
                                                                             dweight, dbias);
  }
};

}  // namespace revox::ops

namespace revox::cpu {

// Plain loops straight from the definitions above, summing in double; what tests compare
// the fast path against.
namespace reference {

template <class T>
void depthwise_conv3d_forward(TensorView<std::add_const_t<T>> x, std::add_const_t<T>* weight,
                              std::add_const_t<T>* bias, TensorView<T> y) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_forward", "x", x.shape,
                                             "y", y.shape, weight);
  const Shape5 s = x.shape;
  for (index_t n = 0; n < s.n; ++n)
    for (index_t c = 0; c < s.c; ++c)
      for (index_t d = 0; d < s.d; ++d)
        for (index_t h = 0; h < s.h; ++h)
          for (index_t w = 0; w < s.w; ++w) {
            double acc = bias != nullptr ? static_cast<double>(bias[c]) : 0.0;
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 3; ++j)
                for (index_t k = 0; k < 3; ++k) {
                  const index_t id = d + i - 1, ih = h + j - 1, iw = w + k - 1;
                  if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  acc += static_cast<double>(weight[c * 27 + i * 9 + j * 3 + k]) *
                         static_cast<double>(x.at(n, c, id, ih, iw));
                }
            y.at(n, c, d, h, w) = static_cast<T>(acc);
          }
}

// dx[n,c,d,h,w] = sum over the outputs (od, oh, ow) = (d-i+1, h-j+1, w-k+1) that read x[d,h,w]
// through tap (i, j, k).
template <class T>
void depthwise_conv3d_backward_data(TensorView<std::add_const_t<T>> dy,
                                    std::add_const_t<T>* weight, TensorView<T> dx) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_backward_data", "dy",
                                             dy.shape, "dx", dx.shape, weight);
  const Shape5 s = dy.shape;
  for (index_t n = 0; n < s.n; ++n)
    for (index_t c = 0; c < s.c; ++c)
      for (index_t d = 0; d < s.d; ++d)
        for (index_t h = 0; h < s.h; ++h)
          for (index_t w = 0; w < s.w; ++w) {
            double acc = 0.0;
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 3; ++j)
                for (index_t k = 0; k < 3; ++k) {
                  const index_t od = d - i + 1, oh = h - j + 1, ow = w - k + 1;
                  if (od < 0 || od >= s.d || oh < 0 || oh >= s.h || ow < 0 || ow >= s.w) continue;
                  acc += static_cast<double>(weight[c * 27 + i * 9 + j * 3 + k]) *
                         static_cast<double>(dy.at(n, c, od, oh, ow));
                }
            dx.at(n, c, d, h, w) = static_cast<T>(acc);
          }
}

template <class T>
void depthwise_conv3d_backward_weight(TensorView<std::add_const_t<T>> x,
                                      TensorView<std::add_const_t<T>> dy, T* dweight,
                                      std::add_pointer_t<T> dbias) {
  revox::cpu::detail::check_depthwise_shapes("reference::depthwise_conv3d_backward_weight", "x",
                                             x.shape, "dy", dy.shape, dweight);
  const Shape5 s = x.shape;
  for (index_t c = 0; c < s.c; ++c) {
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 3; ++j)
        for (index_t k = 0; k < 3; ++k) {
          double acc = 0.0;
          for (index_t n = 0; n < s.n; ++n)
            for (index_t d = 0; d < s.d; ++d)
              for (index_t h = 0; h < s.h; ++h)
                for (index_t w = 0; w < s.w; ++w) {
                  const index_t id = d + i - 1, ih = h + j - 1, iw = w + k - 1;
                  if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  acc += static_cast<double>(dy.at(n, c, d, h, w)) *
                         static_cast<double>(x.at(n, c, id, ih, iw));
                }
          T& dw = dweight[c * 27 + i * 9 + j * 3 + k];
          dw = static_cast<T>(static_cast<double>(dw) + acc);
        }
    if (dbias != nullptr) {
      double acc = 0.0;
      for (index_t n = 0; n < s.n; ++n)
        for (index_t i = 0; i < s.spatial(); ++i) acc += static_cast<double>(dy.channel(n, c)[i]);
      dbias[c] = static_cast<T>(static_cast<double>(dbias[c]) + acc);
    }
  }
}

// The fused backward is, by definition, the two passes above.
template <class T>
void depthwise_conv3d_backward(TensorView<std::add_const_t<T>> x,
                               TensorView<std::add_const_t<T>> dy, std::add_const_t<T>* weight,
                               TensorView<T> dx, std::add_pointer_t<T> dweight,
                               std::add_pointer_t<T> dbias) {
  reference::depthwise_conv3d_backward_data<T>(dy, weight, dx);
  reference::depthwise_conv3d_backward_weight<T>(x, dy, dweight, dbias);
}

}  // namespace reference
}  // namespace revox::cpu
