// revox/ops/kernel_bodies/gemm.hpp — GEMM descriptors with cuBLAS's column-major semantics and
// their CPU emulation. Plain C++ (no CUDA headers).
//
// revox's NCDHW tensors are row-major matrices: batch item n of x is the (C, D*H*W) matrix
// with rows D*H*W apart. A row-major (R, C) matrix with leading dimension ld is the
// column-major (C, R) matrix with the same ld, i.e. its transpose, so the row-major product
// Y = A B is the column-major product Y^T = B^T A^T: the ops in kernels/pointwise_conv3d.hpp
// and kernels/conv3d.hpp describe each product as a Gemm<T> in those column-major terms.
//
//   Gemm<T>: for b in [0, batch):
//     C_b = alpha * op(A_b) * op(B_b) + beta * C_b        (C_b is m x n, op(A_b) m x k,
//     A_b = a + b * stride_a, B_b = b + b * stride_b, C_b = c + b * stride_c   op(B_b) k x n)
//   column-major: element (i, j) of a matrix with leading dimension ld is at [i + j * ld];
//   op(X) = X (Op::n) or X^T (Op::t). As in cuBLAS, beta == 0 means C is not read (NaN in C
//   does not propagate), and the leading dimensions must cover the stored rows.
//
// emulate_gemm(g) computes exactly that on the CPU (each element summed over k in double);
// on the GPU, revox/ops/cuda/gemm.cuh hands the same descriptor to cublas<S|D>gemm(
// StridedBatched). The executors that run these descriptors (and the kernel bodies) are in
// kernels/executor.hpp (the CPU's, for tests) and cuda/executor.cuh (the GPU's).
#pragma once

#include <algorithm>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"

namespace revox::kernels {

enum class Op { n, t };

template <class T>
struct Gemm {
  Op trans_a = Op::n;
  Op trans_b = Op::n;
  index_t m = 0;
  index_t n = 0;
  index_t k = 0;
  T alpha = T(1);
  const T* a = nullptr;
  index_t lda = 0;
  index_t stride_a = 0;
  const T* b = nullptr;
  index_t ldb = 0;
  index_t stride_b = 0;
  T beta = T(0);
  T* c = nullptr;
  index_t ldc = 0;
  index_t stride_c = 0;
  index_t batch = 1;
};

// The argument checks cuBLAS makes (it would fail with CUBLAS_STATUS_INVALID_VALUE), with
// the offending field named: a wrong descriptor fails the same way on both devices.
template <class T>
void check_gemm(const Gemm<T>& g, const char* op) {
  REVOX_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, op,
              ": GEMM extents must be non-negative, got m=", g.m, " n=", g.n, " k=", g.k,
              " batch=", g.batch);
  const index_t rows_a = g.trans_a == Op::n ? g.m : g.k;
  const index_t rows_b = g.trans_b == Op::n ? g.k : g.n;
  REVOX_CHECK(g.lda >= std::max<index_t>(1, rows_a), op, ": GEMM lda=", g.lda,
              " is smaller than the ", rows_a, " stored rows of A");
  REVOX_CHECK(g.ldb >= std::max<index_t>(1, rows_b), op, ": GEMM ldb=", g.ldb,
              " is smaller than the ", rows_b, " stored rows of B");
  REVOX_CHECK(g.ldc >= std::max<index_t>(1, g.m), op, ": GEMM ldc=", g.ldc,
              " is smaller than the ", g.m, " rows of C");
}

// The CPU emulation of cuBLAS's GEMM: C = alpha op(A) op(B) + beta C for every batch item,
// each element's dot product summed over k in order, in double.
template <class T>
void emulate_gemm(const Gemm<T>& g) {
  check_gemm(g, "emulate_gemm");
  for (index_t item = 0; item < g.batch; ++item) {
    const T* a = g.a + item * g.stride_a;
    const T* b = g.b + item * g.stride_b;
    T* c = g.c + item * g.stride_c;
    for (index_t j = 0; j < g.n; ++j) {
      for (index_t i = 0; i < g.m; ++i) {
        double sum = 0.0;
        for (index_t l = 0; l < g.k; ++l) {
          const T av = g.trans_a == Op::n ? a[i + l * g.lda] : a[l + i * g.lda];
          const T bv = g.trans_b == Op::n ? b[l + j * g.ldb] : b[j + l * g.ldb];
          sum += static_cast<double>(av) * static_cast<double>(bv);
        }
        T& out = c[i + j * g.ldc];
        const double scaled = static_cast<double>(g.alpha) * sum;
        out = g.beta == T(0) ? static_cast<T>(scaled)
                             : static_cast<T>(scaled + static_cast<double>(g.beta) *
                                                           static_cast<double>(out));
      }
    }
  }
}

}  // namespace revox::kernels
