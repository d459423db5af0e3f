// revox/ops/cuda/gemm.cuh — runs a kernels::Gemm<T> descriptor (kernels/gemm.hpp:
// column-major, cuBLAS's semantics) with cuBLAS on dev's stream; cuda::Executor
// (cuda/executor.cuh) runs the convolutions' GEMMs through it. Include from a .cu
// translation unit.
//
// float runs cublasSgemm, double cublasDgemm; batch > 1 runs the StridedBatched variant.
// With cuBLAS 12 or newer the 64-bit-index (_64) entry points are used, so extents and
// leading dimensions may pass 2^31; with older cuBLAS they must fit in int (checked).
// Requires a Cuda with a cuBLAS handle (CudaContext::device()).
#pragma once

#include <climits>
#include <type_traits>

#include "revox/core/cuda.hpp"
#include "revox/ops/kernel_bodies/gemm.hpp"

namespace revox::cuda {

namespace gemm_detail {

inline cublasOperation_t op(::revox::kernels::Op o) {
  return o == ::revox::kernels::Op::n ? CUBLAS_OP_N : CUBLAS_OP_T;
}

#if CUBLAS_VER_MAJOR >= 12
using blas_int = std::int64_t;
inline blas_int checked(index_t value, const char* /*what*/) { return value; }
#else
using blas_int = int;
inline blas_int checked(index_t value, const char* what) {
  REVOX_CHECK(value <= INT_MAX, "cuda::gemm: ", what, " = ", value,
              " does not fit cuBLAS's 32-bit index before cuBLAS 12");
  return static_cast<blas_int>(value);
}
#endif

}  // namespace gemm_detail

template <class T>
void gemm(const Cuda& dev, const ::revox::kernels::Gemm<T>& g) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "cuda::gemm: float or double only");
  ::revox::kernels::check_gemm(g, "cuda::gemm");
  REVOX_CHECK(dev.cublas != nullptr,
              "cuda::gemm: the Cuda device has no cuBLAS handle; create the device with "
              "revox::CudaContext and pass ctx.device()");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  using gemm_detail::checked;
  const auto m = checked(g.m, "m");
  const auto n = checked(g.n, "n");
  const auto k = checked(g.k, "k");
  const auto lda = checked(g.lda, "lda");
  const auto ldb = checked(g.ldb, "ldb");
  const auto ldc = checked(g.ldc, "ldc");
  const cublasOperation_t ta = gemm_detail::op(g.trans_a);
  const cublasOperation_t tb = gemm_detail::op(g.trans_b);
  const T alpha = g.alpha;
  const T beta = g.beta;
  const long long sa = g.stride_a;
  const long long sb = g.stride_b;
  const long long sc = g.stride_c;
#if CUBLAS_VER_MAJOR >= 12
  const auto batch = g.batch;
  if constexpr (std::is_same_v<T, float>) {
    if (g.batch == 1) {
      REVOX_CUBLAS_CHECK(cublasSgemm_64(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda, g.b, ldb,
                                        &beta, g.c, ldc));
    } else {
      REVOX_CUBLAS_CHECK(cublasSgemmStridedBatched_64(dev.cublas, ta, tb, m, n, k, &alpha, g.a,
                                                      lda, sa, g.b, ldb, sb, &beta, g.c, ldc, sc,
                                                      batch));
    }
  } else {
    if (g.batch == 1) {
      REVOX_CUBLAS_CHECK(cublasDgemm_64(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda, g.b, ldb,
                                        &beta, g.c, ldc));
    } else {
      REVOX_CUBLAS_CHECK(cublasDgemmStridedBatched_64(dev.cublas, ta, tb, m, n, k, &alpha, g.a,
                                                      lda, sa, g.b, ldb, sb, &beta, g.c, ldc, sc,
                                                      batch));
    }
  }
#else
  const int batch = checked(g.batch, "batch");
  if constexpr (std::is_same_v<T, float>) {
    if (g.batch == 1) {
      REVOX_CUBLAS_CHECK(cublasSgemm(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda, g.b, ldb,
                                     &beta, g.c, ldc));
    } else {
      REVOX_CUBLAS_CHECK(cublasSgemmStridedBatched(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda,
                                                   sa, g.b, ldb, sb, &beta, g.c, ldc, sc, batch));
    }
  } else {
    if (g.batch == 1) {
      REVOX_CUBLAS_CHECK(cublasDgemm(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda, g.b, ldb,
                                     &beta, g.c, ldc));
    } else {
      REVOX_CUBLAS_CHECK(cublasDgemmStridedBatched(dev.cublas, ta, tb, m, n, k, &alpha, g.a, lda,
                                                   sa, g.b, ldb, sb, &beta, g.c, ldc, sc, batch));
    }
  }
#endif
}

}  // namespace revox::cuda
