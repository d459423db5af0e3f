// The CUDA dense Conv3d run on the CPU: the same launch sequence the GPU runs
// (include/revox/ops/kernel_bodies/conv3d.hpp), with its kernel bodies through emulate_for_each and
// its GEMM descriptors through emulate_gemm, the CPU emulation of cuBLAS's column-major GEMM. It
// is compared with the plain CPU reference (ops/cpu) on odd shapes, outputs pre-filled with NaN,
// with the reductions and the im2col buffer forced into several chunks.
#include <catch2/catch.hpp>

#include <algorithm>

#include "revox/core/memory.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/ops/kernel_bodies/conv3d.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::convolution::tolerance;

namespace {

// ---- dense Conv3d -------------------------------------------------------------------------

template <class T>
void check_conv3d(const Shape5& xs, index_t cout, int kernel_size, bool with_bias,
                  index_t scratch_bytes, revox::Rng& rng) {
  CAPTURE(xs, cout, kernel_size, with_bias, scratch_bytes);
  const index_t k = kernel_size;
  const Shape5 ys = xs.with_channels(cout);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(cout * xs.c * k * k * k), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(cout), rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;
  const auto chunking =
      revox::cpu::conv3d_chunking(xs, kernel_size, static_cast<index_t>(sizeof(T)), scratch_bytes);
  // GEMMs per call: one per batch item and chunk (kernel_size 1: one batched, or one per item
  // for the weight gradient).
  const int gemms_fwd = kernel_size == 1 ? 1 : static_cast<int>(xs.n * chunking.chunks);
  const int gemms_wgrad = kernel_size == 1 ? static_cast<int>(xs.n) : gemms_fwd;
  auto& allocator = revox::cpu_allocator();
  const auto before = allocator.stats();

  auto y = nan_tensor<T>(ys);
  auto y_ref = Tensor<T>::full(ys, T(9));
  CountingExecutor fwd;
  kernels::conv3d_forward<CountingExecutor, T>(fwd, x.cview(), weight.data(), bias_ptr, y.view(),
                                               kernel_size, scratch_bytes);
  CHECK(fwd.gemms == gemms_fwd);
  revox::cpu::reference::conv3d_forward<T>(x.cview(), weight.data(), bias_ptr, y_ref.view(),
                                           kernel_size);
  CHECK(max_mixed_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(ys, rng);
  auto dx = nan_tensor<T>(xs);
  auto dx_ref = Tensor<T>::full(xs, T(-4));
  CountingExecutor bwd;
  kernels::conv3d_backward_data<CountingExecutor, T>(bwd, dy.cview(), weight.data(), dx.view(),
                                                     kernel_size, scratch_bytes);
  CHECK(bwd.gemms == gemms_fwd);
  revox::cpu::reference::conv3d_backward_data<T>(dy.cview(), weight.data(), dx_ref.view(),
                                                 kernel_size);
  CHECK(max_mixed_error(dx, dx_ref) <= tolerance<T>());

  const auto dw_prior = random_tensor<T>(weight.shape(), rng);
  const auto db_prior = random_tensor<T>(bias.shape(), rng);
  auto dw = dw_prior.clone();
  auto db = db_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_ref = db_prior.clone();
  CountingExecutor wgrad;
  kernels::conv3d_backward_weight<CountingExecutor, T>(wgrad, x.cview(), dy.cview(), dw.data(),
                                                       with_bias ? db.data() : nullptr,
                                                       kernel_size, scratch_bytes, 8);
  CHECK(wgrad.gemms == gemms_wgrad);
  revox::cpu::reference::conv3d_backward_weight<T>(
      x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr, kernel_size);
  CHECK(max_mixed_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_mixed_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_mixed_error(db, db_prior) == 0.0);

  // The column buffer and the partial sums came from the tracking allocator and are gone
  // again: what is left are the 11 tensors this function made since `before`.
  CHECK(allocator.live_allocations() == before.live_allocations + 11);
  CHECK(allocator.stats().total_allocations > before.total_allocations + 11);
}

TEMPLATE_TEST_CASE("CUDA conv3d im2col/col2im bodies and GEMMs match the CPU reference "
                   "(emulated)",
                   "[cuda][emulated][conv3d]", float, double) {
  using T = TestType;
  revox::Rng rng(13);
  const Shape5 xs{2, 3, 5, 7, 9};
  const index_t row_bytes = xs.c * 27 * xs.w * static_cast<index_t>(sizeof(T));
  // 35 output rows per item: one row per chunk, 4 rows (9 chunks), and all in one chunk.
  for (const index_t scratch : {row_bytes, 4 * row_bytes, revox::cpu::kConv3dScratchBytes}) {
    for (const bool with_bias : {true, false}) {
      check_conv3d<T>(xs, 4, 3, with_bias, scratch, rng);
    }
  }
  // kernel_size 1 runs the pointwise path; kernel_size 5 reaches two rows and planes away.
  check_conv3d<T>(xs, 4, 1, true, revox::cpu::kConv3dScratchBytes, rng);
  check_conv3d<T>(Shape5{1, 2, 3, 5, 6}, 3, 5, true,
                  2 * 2 * 125 * 6 * static_cast<index_t>(sizeof(T)), rng);
  check_conv3d<T>(Shape5{1, 1, 1, 1, 1}, 1, 3, true, revox::cpu::kConv3dScratchBytes, rng);
  check_conv3d<T>(Shape5{2, 4, 1, 3, 1}, 2, 3, false, row_bytes, rng);
}

TEST_CASE("CUDA conv3d's col2im gather covers every input row a chunk reaches",
          "[cuda][emulated][conv3d]") {
  const Shape5 s{1, 1, 5, 7, 9};
  const index_t rows = s.d * s.h;
  for (const index_t k : {index_t{1}, index_t{3}, index_t{5}}) {
    for (index_t begin = 0; begin < rows; begin += 3) {
      for (const index_t length : {index_t{1}, index_t{4}, index_t{9}}) {
        const index_t end = std::min(begin + length, rows);
        const auto in = kernels::conv3d_input_rows(s, k, begin, end);
        CAPTURE(k, begin, end, in.begin, in.end);
        CHECK(in.begin >= 0);
        CHECK(in.end <= rows);
        const index_t pad = k / 2;
        for (index_t row = begin; row < end; ++row) {
          for (index_t kd = 0; kd < k; ++kd) {
            for (index_t kh = 0; kh < k; ++kh) {
              const index_t id = row / s.h + kd - pad;
              const index_t ih = row % s.h + kh - pad;
              if (id < 0 || id >= s.d || ih < 0 || ih >= s.h) continue;
              const index_t in_row = id * s.h + ih;
              CHECK((in_row >= in.begin && in_row < in.end));
            }
          }
        }
      }
    }
  }
}

}  // namespace
