// emulate_gemm, the CPU emulation of cuBLAS's column-major GEMM that the tests of the
// convolution bodies run the GEMM descriptors through (include/revox/ops/kernel_bodies/gemm.hpp),
// checked against products of explicitly transposed matrices.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/ops/kernel_bodies/executor.hpp"
#include "support/kernel_bodies.hpp"

namespace {

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

}  // namespace
