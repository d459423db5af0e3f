// The CUDA convolutions (depthwise 3x3x3, pointwise 1x1x1, dense Conv3d) run on the CPU: the
// same launch sequences the GPU runs (ops/kernels/{depthwise_conv3d,pointwise_conv3d,
// conv3d}.hpp), with their kernel bodies through emulate_for_each and their GEMM
// descriptors through emulate_gemm, the CPU emulation of cuBLAS's column-major GEMM. Each is
// compared with the plain CPU reference (ops/cpu) on odd shapes, outputs pre-filled with
// NaN, with the reductions and the im2col buffer forced into several chunks. The GEMM
// emulation itself is checked against products of explicitly transposed matrices.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/ops/kernels/conv3d.hpp"
#include "revox/ops/kernels/depthwise_conv3d.hpp"
#include "revox/ops/kernels/executor.hpp"
#include "revox/ops/kernels/pointwise_conv3d.hpp"

namespace {

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
namespace kernels = revox::kernels;

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
Tensor<T> random_tensor(Shape5 shape, revox::Rng& rng) {
  Tensor<T> t(shape);
  revox::fill_uniform(t.view(), rng, -1.0, 1.0);
  return t;
}

template <class T>
Tensor<T> nan_tensor(Shape5 shape) {
  return Tensor<T>::full(shape, std::numeric_limits<T>::quiet_NaN());
}

// max over elements of |actual - expected| / (1 + |expected|); infinity for a non-finite
// value (an element never written still holds its NaN).
template <class T>
double max_error(const Tensor<T>& actual, const Tensor<T>& expected) {
  REQUIRE(actual.shape() == expected.shape());
  double worst = 0.0;
  for (index_t i = 0; i < actual.numel(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (!std::isfinite(a) || !std::isfinite(e)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(a - e) / (1.0 + std::abs(e)));
  }
  return worst;
}

// The emulated executor, counting what the GPU would launch.
struct CountingExecutor {
  using device_type = revox::Cpu;
  mutable int bodies = 0;
  mutable int gemms = 0;
  mutable int zeros = 0;
  template <class Body>
  void for_each(index_t count, const Body& body) const {
    ++bodies;
    kernels::EmulatedExecutor{}.for_each(count, body);
  }
  template <class T>
  void gemm(const kernels::Gemm<T>& g) const {
    ++gemms;
    kernels::EmulatedExecutor{}.gemm(g);
  }
  template <class T>
  void zero(T* data, index_t count) const {
    ++zeros;
    kernels::EmulatedExecutor{}.zero(data, count);
  }
};

// ---- GEMM emulation ------------------------------------------------------------------------

// A dense column-major (rows, cols) matrix, read element by element from a descriptor's
// operand and transposed explicitly when the descriptor says so.
std::vector<double> operand(const double* data, index_t ld, kernels::Op op, index_t rows,
                            index_t cols) {
  std::vector<double> out(static_cast<std::size_t>(rows * cols));
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      // op(X)(i, j) is X(i, j) or X(j, i), X stored column-major with leading dimension ld.
      out[static_cast<std::size_t>(i + j * rows)] =
          op == kernels::Op::n ? data[i + j * ld] : data[j + i * ld];
    }
  }
  return out;
}

TEST_CASE("emulate_gemm follows cuBLAS's column-major GEMM", "[cuda][emulated][gemm]") {
  revox::Rng rng(3);
  const index_t m = 5, n = 3, k = 4, batch = 2;
  for (const auto ta : {kernels::Op::n, kernels::Op::t}) {
    for (const auto tb : {kernels::Op::n, kernels::Op::t}) {
      for (const double beta : {0.0, 0.5}) {
        CAPTURE(static_cast<int>(ta), static_cast<int>(tb), beta);
        // Leading dimensions larger than the stored rows, batch strides larger than a matrix.
        const index_t lda = (ta == kernels::Op::n ? m : k) + 2;
        const index_t ldb = (tb == kernels::Op::n ? k : n) + 1;
        const index_t ldc = m + 3;
        const index_t sa = lda * (ta == kernels::Op::n ? k : m) + 5;
        const index_t sb = ldb * (tb == kernels::Op::n ? n : k) + 1;
        const index_t sc = ldc * n + 4;
        const auto a = random_tensor<double>(revox::flat_shape(sa * batch), rng);
        const auto b = random_tensor<double>(revox::flat_shape(sb * batch), rng);
        const auto c0 = random_tensor<double>(revox::flat_shape(sc * batch), rng);
        auto c = c0.clone();
        if (beta == 0.0) {
          // cuBLAS does not read C when beta is 0: NaN there must not propagate.
          for (index_t i = 0; i < c.numel(); ++i) c[i] = std::numeric_limits<double>::quiet_NaN();
        }
        kernels::Gemm<double> g;
        g.trans_a = ta;
        g.trans_b = tb;
        g.m = m;
        g.n = n;
        g.k = k;
        g.alpha = 1.5;
        g.a = a.data();
        g.lda = lda;
        g.stride_a = sa;
        g.b = b.data();
        g.ldb = ldb;
        g.stride_b = sb;
        g.beta = beta;
        g.c = c.data();
        g.ldc = ldc;
        g.stride_c = sc;
        g.batch = batch;
        kernels::emulate_gemm(g);
        for (index_t item = 0; item < batch; ++item) {
          const auto opa = operand(a.data() + item * sa, lda, ta, m, k);
          const auto opb = operand(b.data() + item * sb, ldb, tb, k, n);
          for (index_t j = 0; j < n; ++j) {
            for (index_t i = 0; i < m; ++i) {
              double sum = 0.0;
              for (index_t l = 0; l < k; ++l) {
                sum += opa[static_cast<std::size_t>(i + l * m)] *
                       opb[static_cast<std::size_t>(l + j * k)];
              }
              const index_t at = item * sc + i + j * ldc;
              const double expected = 1.5 * sum + beta * c0[at];
              CHECK(c[at] == Approx(expected).epsilon(1e-14).margin(1e-14));
            }
          }
          // Outside the (m, n) block of each item, C is untouched.
          for (index_t at = item * sc; at < (item + 1) * sc; ++at) {
            const index_t local = at - item * sc;
            if (local % ldc < m && local / ldc < n) continue;
            if (beta == 0.0) {
              CHECK(std::isnan(c[at]));
            } else {
              CHECK(c[at] == c0[at]);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("GEMM descriptors are checked like cuBLAS checks them", "[cuda][emulated][gemm]") {
  std::vector<float> buffer(64, 0.0f);
  kernels::Gemm<float> g;
  g.m = 4;
  g.n = 3;
  g.k = 2;
  g.a = buffer.data();
  g.b = buffer.data();
  g.c = buffer.data();
  g.lda = 4;
  g.ldb = 2;
  g.ldc = 4;
  CHECK_NOTHROW(kernels::emulate_gemm(g));
  g.trans_a = kernels::Op::t;  // A is now stored (k, m): lda 4 >= 2 still holds
  CHECK_NOTHROW(kernels::emulate_gemm(g));
  g.trans_a = kernels::Op::n;
  g.lda = 3;
  CHECK_THROWS_WITH(kernels::emulate_gemm(g), Catch::Contains("lda=3") &&
                                                  Catch::Contains("4 stored rows of A"));
  g.lda = 4;
  g.trans_b = kernels::Op::t;  // B stored (n, k): needs ldb >= 3
  CHECK_THROWS_WITH(kernels::emulate_gemm(g), Catch::Contains("ldb=2"));
  g.trans_b = kernels::Op::n;
  g.ldc = 2;
  CHECK_THROWS_WITH(kernels::emulate_gemm(g), Catch::Contains("ldc=2"));
}

// ---- depthwise 3x3x3 ------------------------------------------------------------------------

template <class T>
void check_depthwise(const Shape5& s, bool with_bias, index_t chunk, revox::Rng& rng) {
  CAPTURE(s, with_bias, chunk);
  const auto x = random_tensor<T>(s, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(s.c * 27), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(s.c), rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;
  const kernels::EmulatedExecutor exec;

  auto y = nan_tensor<T>(s);
  auto y_ref = Tensor<T>::full(s, T(7));
  kernels::depthwise_conv3d_forward<kernels::EmulatedExecutor, T>(exec, x.cview(), weight.data(),
                                                                  bias_ptr, y.view());
  revox::cpu::reference::depthwise_conv3d_forward<T>(x.cview(), weight.data(), bias_ptr,
                                                     y_ref.view());
  CHECK(max_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(s, rng);
  auto dx = nan_tensor<T>(s);
  auto dx_ref = Tensor<T>::full(s, T(-3));
  kernels::depthwise_conv3d_backward_data<kernels::EmulatedExecutor, T>(
      exec, dy.cview(), weight.data(), dx.view());
  revox::cpu::reference::depthwise_conv3d_backward_data<T>(dy.cview(), weight.data(),
                                                           dx_ref.view());
  CHECK(max_error(dx, dx_ref) <= tolerance<T>());

  // Gradients accumulate onto a random prior.
  const auto dw_prior = random_tensor<T>(weight.shape(), rng);
  const auto db_prior = random_tensor<T>(bias.shape(), rng);
  auto dw = dw_prior.clone();
  auto db = db_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_ref = db_prior.clone();
  CountingExecutor counting;
  kernels::depthwise_conv3d_backward_weight<CountingExecutor, T>(
      counting, x.cview(), dy.cview(), dw.data(), with_bias ? db.data() : nullptr, chunk);
  revox::cpu::reference::depthwise_conv3d_backward_weight<T>(
      x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
  CHECK(counting.bodies == 2);  // two stages
  CHECK(max_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_error(db, db_prior) == 0.0);
}

TEMPLATE_TEST_CASE("CUDA depthwise_conv3d bodies match the CPU reference (emulated)",
                   "[cuda][emulated][depthwise]", float, double) {
  revox::Rng rng(11);
  const Shape5 shapes[] = {{2, 3, 5, 7, 9}, {1, 1, 1, 1, 1}, {1, 2, 3, 1, 4}, {3, 2, 1, 6, 1}};
  for (const Shape5& s : shapes) {
    for (const bool with_bias : {true, false}) {
      // Chunks of 16 voxels: 315 voxels of a 5x7x9 plane give 20 chunks, the last one short.
      for (const index_t chunk : {index_t{16}, kernels::kDepthwiseWeightChunk}) {
        check_depthwise<TestType>(s, with_bias, chunk, rng);
      }
    }
  }
}

// ---- pointwise 1x1x1 ------------------------------------------------------------------------

template <class T>
void check_pointwise(const Shape5& xs, index_t cout, bool with_bias, index_t chunk,
                     revox::Rng& rng) {
  CAPTURE(xs, cout, with_bias, chunk);
  const Shape5 ys = xs.with_channels(cout);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(cout * xs.c), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(cout), rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;
  CountingExecutor exec;

  auto y = nan_tensor<T>(ys);
  auto y_ref = Tensor<T>::full(ys, T(5));
  kernels::pointwise_conv3d_forward<CountingExecutor, T>(exec, x.cview(), weight.data(),
                                                         bias_ptr, y.view());
  CHECK(exec.gemms == 1);  // one strided-batched GEMM for the whole batch
  revox::cpu::reference::pointwise_conv3d_forward<T>(x.cview(), weight.data(), bias_ptr,
                                                     y_ref.view());
  CHECK(max_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(ys, rng);
  auto dx = nan_tensor<T>(xs);
  auto dx_ref = Tensor<T>::full(xs, T(-2));
  kernels::pointwise_conv3d_backward_data<CountingExecutor, T>(exec, dy.cview(), weight.data(),
                                                               dx.view());
  revox::cpu::reference::pointwise_conv3d_backward_data<T>(dy.cview(), weight.data(),
                                                           dx_ref.view());
  CHECK(max_error(dx, dx_ref) <= tolerance<T>());

  const auto dw_prior = random_tensor<T>(weight.shape(), rng);
  const auto db_prior = random_tensor<T>(bias.shape(), rng);
  auto dw = dw_prior.clone();
  auto db = db_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_ref = db_prior.clone();
  kernels::pointwise_conv3d_backward_weight<CountingExecutor, T>(
      exec, x.cview(), dy.cview(), dw.data(), with_bias ? db.data() : nullptr, chunk);
  revox::cpu::reference::pointwise_conv3d_backward_weight<T>(
      x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
  CHECK(max_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_error(db, db_prior) == 0.0);
}

TEMPLATE_TEST_CASE("CUDA pointwise_conv3d GEMMs and bodies match the CPU reference (emulated)",
                   "[cuda][emulated][pointwise]", float, double) {
  revox::Rng rng(12);
  for (const bool with_bias : {true, false}) {
    for (const index_t chunk : {index_t{32}, kernels::kChannelSumChunk}) {
      check_pointwise<TestType>(Shape5{2, 3, 5, 7, 9}, 5, with_bias, chunk, rng);
      check_pointwise<TestType>(Shape5{3, 6, 2, 1, 3}, 2, with_bias, chunk, rng);
      check_pointwise<TestType>(Shape5{1, 1, 1, 1, 1}, 1, with_bias, chunk, rng);
    }
  }
}

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
  CHECK(max_error(y, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(ys, rng);
  auto dx = nan_tensor<T>(xs);
  auto dx_ref = Tensor<T>::full(xs, T(-4));
  CountingExecutor bwd;
  kernels::conv3d_backward_data<CountingExecutor, T>(bwd, dy.cview(), weight.data(), dx.view(),
                                                     kernel_size, scratch_bytes);
  CHECK(bwd.gemms == gemms_fwd);
  revox::cpu::reference::conv3d_backward_data<T>(dy.cview(), weight.data(), dx_ref.view(),
                                                 kernel_size);
  CHECK(max_error(dx, dx_ref) <= tolerance<T>());

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
  CHECK(max_error(dw, dw_ref) <= tolerance<T>());
  CHECK(max_error(db, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_error(db, db_prior) == 0.0);

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
