// revox/ops/cpu/conv_shapes.hpp — what the three convolutions' dispatchers, CPU kernels and
// CUDA launch sequences (ops/kernel_bodies/*.hpp) share, none of which depends on a kernel: the
// pointer types of weights and biases, the argument checks (with the messages every device
// gives), and conv3d's column-buffer chunking with the scratch bytes the memory planner
// counts for it. The kernels are in ops/cpu/{conv3d,pointwise_conv3d,depthwise_conv3d}.hpp.
#pragma once

#include <algorithm>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/precision.hpp"
#include "revox/core/shape.hpp"
#include "revox/ops/cpu/simd.hpp"

namespace revox::cpu {

namespace conv3d_detail {

// Raw parameter pointers take no part in deducing T, so that a plain nullptr bias works.
// Parameters have type param_t<T> (core/precision.hpp): float for bfloat16 activations.
template <class T>
using const_ptr = const nondeduced_t<param_t<T>>*;
template <class T>
using mut_ptr = nondeduced_t<param_t<T>>*;

// Input and output of a convolution with 'same' padding share batch and spatial extents.
inline void check_same_extents(const char* op, const char* in_name, const Shape5& in,
                               const char* out_name, const Shape5& out) {
  REVOX_CHECK(in.n == out.n && in.d == out.d && in.h == out.h && in.w == out.w, op, ": ",
              in_name, " ", in, " and ", out_name, " ", out,
              " must have the same batch and spatial extents");
}

inline void check_kernel_size(const char* op, int kernel_size) {
  REVOX_CHECK(kernel_size > 0 && kernel_size % 2 == 1, op,
              ": kernel_size must be odd and positive ('same' padding), got ", kernel_size);
}

}  // namespace conv3d_detail

// Default bound on the im2col column buffer of one conv3d call.
inline constexpr index_t kConv3dScratchBytes = index_t{16} << 20;

// How conv3d splits the D*H output rows of one batch item into chunks.
struct Conv3dChunking {
  index_t rows_per_chunk = 0;    // (d, h) rows of W voxels each; the last chunk may be shorter
  index_t chunks = 0;
  index_t scratch_elements = 0;  // column buffer: Cin * k^3 * rows_per_chunk * W
};

// The chunking conv3d uses for an input of extent `x` and elements of `element_bytes` bytes:
// as many rows as fit in `scratch_bytes` (at least one), balanced so that the chunks are
// about equally long.
inline Conv3dChunking conv3d_chunking(const Shape5& x, int kernel_size, index_t element_bytes,
                                      index_t scratch_bytes = kConv3dScratchBytes) {
  const index_t k = kernel_size;
  const index_t rows = x.d * x.h;
  const index_t row_bytes = x.c * k * k * k * x.w * element_bytes;
  Conv3dChunking chunking;
  if (rows <= 0) return chunking;
  const index_t fitting =
      row_bytes > 0 ? std::clamp<index_t>(scratch_bytes / row_bytes, 1, rows) : rows;
  chunking.chunks = (rows + fitting - 1) / fitting;
  chunking.rows_per_chunk = (rows + chunking.chunks - 1) / chunking.chunks;
  chunking.scratch_elements = x.c * k * k * k * chunking.rows_per_chunk * x.w;
  return chunking;
}

// The passes of conv3d, for conv3d_scratch_bytes.
enum class Conv3dPass { forward, backward_data, backward_weight };

namespace conv3d_detail {

// Whether the direct path runs for input extent x with vectors of `lanes` elements: whole
// vectors per row and margins within a vector.
inline bool direct_applies_lanes(const Shape5& x, index_t k, index_t lanes) {
  return lanes > 0 && x.w >= lanes && x.w % lanes == 0 && k / 2 <= lanes;
}

}  // namespace conv3d_detail

// Bytes of tracked scratch (the column buffer, a revox Tensor) one call of `pass` allocates for
// an input of extent x (Cin = x.c) and cout output channels, with elements of element_bytes
// bytes, as compiled for this translation unit's vector width: 0 where the direct path runs
// (or kernel_size is 1). What the memory planner counts for a Conv3d layer.
inline index_t conv3d_scratch_bytes(Conv3dPass pass, const Shape5& x, index_t cout,
                                    int kernel_size, index_t element_bytes,
                                    index_t scratch_bytes = kConv3dScratchBytes) {
  if (kernel_size == 1 || element_bytes <= 0) return 0;
  const index_t k = kernel_size;
  const index_t lanes = simd::kNativeBytes / element_bytes;
  const auto column = [&](const Shape5& in, index_t budget) {
    return conv3d_detail::direct_applies_lanes(in, k, lanes)
               ? index_t{0}
               : conv3d_chunking(in, kernel_size, element_bytes, budget).scratch_elements *
                     element_bytes;
  };
  if (pass == Conv3dPass::backward_data) {
    const index_t dx_column =
        conv3d_chunking(x, kernel_size, element_bytes, scratch_bytes).scratch_elements *
        element_bytes;
    // Cout <= Cin: the forward of dy within the Cin-sized budget; otherwise the col2im path.
    return cout <= x.c ? column(x.with_channels(cout), dx_column) : dx_column;
  }
  return column(x, scratch_bytes);
}

namespace detail {

inline void check_depthwise_shapes(const char* op, const char* in_name, const Shape5& in,
                                   const char* out_name, const Shape5& out, const void* weight) {
  REVOX_CHECK(in == out, op, ": ", out_name, " shape ", out, " must equal ", in_name, " shape ",
              in, " (stride 1, padding 1)");
  REVOX_CHECK(weight != nullptr, op, ": weight must not be null");
}

}  // namespace detail

}  // namespace revox::cpu
