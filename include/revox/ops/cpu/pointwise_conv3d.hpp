// revox/ops/cpu/pointwise_conv3d.hpp — pointwise (1x1x1) 3D convolution on the CPU: a
// matrix product over channels at every voxel.
//
//   x      (N, Cin, D, H, W)          weight (Cout, Cin)  [PyTorch: (Cout, Cin, 1, 1, 1)]
//   y, dy  (N, Cout, D, H, W)         bias   (Cout), or nullptr for none
//
//   pointwise_conv3d_forward(x, weight, bias, y):          y_n = W x_n + b       y  ASSIGNED
//   pointwise_conv3d_backward_data(dy, weight, dx):        dx_n = W^T dy_n       dx ASSIGNED
//   pointwise_conv3d_backward_weight(x, dy, dw, db):       dW += sum_n dy_n x_n^T,
//                                                          db += sum_{n,voxel} dy_n  ACCUMULATED
// where x_n is batch item n viewed as the row-major matrix (Cin, D*H*W) over the NCDHW data.
// The fast path hands each batch item to Eigen's GEMM, which parallelises itself with OpenMP
// (call it from serial code, not from inside an omp parallel region). The bias gradient is
// summed in double. Outputs must not alias inputs. namespace reference has the plain loops
// the tests compare against.
#pragma once

#include <algorithm>

#include "revox/core/eigen.hpp"

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::cpu {

namespace conv3d_detail {

// Raw parameter pointers take no part in deducing T, so that a plain nullptr bias works.
template <class T>
using const_ptr = const nondeduced_t<T>*;
template <class T>
using mut_ptr = nondeduced_t<T>*;

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// A (rows, cols) row-major matrix whose rows start `stride` elements apart.
template <class T>
MatrixMap<T> matrix(T* data, index_t rows, index_t cols, index_t stride) {
  return MatrixMap<T>(data, rows, cols, Eigen::OuterStride<>(stride));
}
template <class T>
ConstMatrixMap<T> const_matrix(const T* data, index_t rows, index_t cols, index_t stride) {
  return ConstMatrixMap<T>(data, rows, cols, Eigen::OuterStride<>(stride));
}

// Input and output of a convolution with 'same' padding share batch and spatial extents.
inline void check_same_extents(const char* op, const char* in_name, const Shape5& in,
                               const char* out_name, const Shape5& out) {
  REVOX_CHECK(in.n == out.n && in.d == out.d && in.h == out.h && in.w == out.w, op, ": ",
              in_name, " ", in, " and ", out_name, " ", out,
              " must have the same batch and spatial extents");
}

// y[r, 0:cols] = bias[r] for every row r of a (rows, cols) row-major matrix whose rows start
// `stride` elements apart. Row by row, because Eigen's colwise() broadcast walks the rows of a
// strided row-major map in the slow direction.
template <class T>
void fill_rows(T* y, index_t rows, index_t cols, index_t stride, const T* bias) {
#pragma omp parallel for schedule(static) if (rows * cols > (index_t{1} << 16))
  for (index_t r = 0; r < rows; ++r) std::fill(y + r * stride, y + r * stride + cols, bias[r]);
}

// db[c] += sum over batch and voxels of dy[n, c], in double; parallel over channels, so the
// order of every sum is fixed.
template <class T>
void accumulate_channel_sums(TensorView<const T> dy, T* db) {
  const index_t batch = dy.shape.n;
  const index_t channels = dy.shape.c;
  const index_t spatial = dy.shape.spatial();
#pragma omp parallel for schedule(static) if (dy.numel() > (index_t{1} << 16))
  for (index_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (index_t n = 0; n < batch; ++n) {
      const T* row = dy.channel(n, c);
#pragma omp simd reduction(+ : sum)
      for (index_t i = 0; i < spatial; ++i) sum += static_cast<double>(row[i]);
    }
    db[c] = static_cast<T>(static_cast<double>(db[c]) + sum);
  }
}

}  // namespace conv3d_detail

template <class T>
void pointwise_conv3d_forward(TensorView<const T> x, conv3d_detail::const_ptr<T> weight,
                              conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
  conv3d_detail::check_same_extents("cpu::pointwise_conv3d_forward", "x", x.shape, "y", y.shape);
  const index_t cin = x.shape.c;
  const index_t cout = y.shape.c;
  const index_t spatial = x.shape.spatial();
  const auto w = conv3d_detail::const_matrix(weight, cout, cin, cin);  // (Cout, Cin)
  for (index_t n = 0; n < x.shape.n; ++n) {
    const auto xn = conv3d_detail::const_matrix(x.data + n * cin * spatial, cin, spatial, spatial);
    auto yn = conv3d_detail::matrix(y.data + n * cout * spatial, cout, spatial, spatial);
    if (bias != nullptr) {
      conv3d_detail::fill_rows(yn.data(), cout, spatial, spatial, bias);
      yn.noalias() += w * xn;
    } else {
      yn.noalias() = w * xn;
    }
  }
}

template <class T>
void pointwise_conv3d_backward_data(TensorView<const T> dy, conv3d_detail::const_ptr<T> weight,
                                    TensorView<T> dx) {
  conv3d_detail::check_same_extents("cpu::pointwise_conv3d_backward_data", "dy", dy.shape, "dx",
                                    dx.shape);
  const index_t cin = dx.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = dy.shape.spatial();
  const auto w = conv3d_detail::const_matrix(weight, cout, cin, cin);
  for (index_t n = 0; n < dy.shape.n; ++n) {
    const auto dyn =
        conv3d_detail::const_matrix(dy.data + n * cout * spatial, cout, spatial, spatial);
    auto dxn = conv3d_detail::matrix(dx.data + n * cin * spatial, cin, spatial, spatial);
    dxn.noalias() = w.transpose() * dyn;
  }
}

template <class T>
void pointwise_conv3d_backward_weight(TensorView<const T> x, TensorView<const T> dy,
                                      conv3d_detail::mut_ptr<T> dweight,
                                      conv3d_detail::mut_ptr<T> dbias) {
  conv3d_detail::check_same_extents("cpu::pointwise_conv3d_backward_weight", "x", x.shape, "dy",
                                    dy.shape);
  const index_t cin = x.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = x.shape.spatial();
  auto dw = conv3d_detail::matrix(dweight, cout, cin, cin);
  for (index_t n = 0; n < x.shape.n; ++n) {
    const auto xn = conv3d_detail::const_matrix(x.data + n * cin * spatial, cin, spatial, spatial);
    const auto dyn =
        conv3d_detail::const_matrix(dy.data + n * cout * spatial, cout, spatial, spatial);
    dw.noalias() += dyn * xn.transpose();
  }
  if (dbias != nullptr) conv3d_detail::accumulate_channel_sums(dy, dbias);
}

// Plain loops, accumulating in double: what the fast path is tested against.
namespace reference {

template <class T>
void pointwise_conv3d_forward(TensorView<const T> x, conv3d_detail::const_ptr<T> weight,
                              conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
  conv3d_detail::check_same_extents("cpu::reference::pointwise_conv3d_forward", "x", x.shape,
                                    "y", y.shape);
  const index_t cin = x.shape.c;
  const index_t cout = y.shape.c;
  const index_t spatial = x.shape.spatial();
  for (index_t n = 0; n < x.shape.n; ++n)
    for (index_t co = 0; co < cout; ++co)
      for (index_t s = 0; s < spatial; ++s) {
        double sum = bias != nullptr ? static_cast<double>(bias[co]) : 0.0;
        for (index_t ci = 0; ci < cin; ++ci) {
          sum += static_cast<double>(weight[co * cin + ci]) *
                 static_cast<double>(x.channel(n, ci)[s]);
        }
        y.channel(n, co)[s] = static_cast<T>(sum);
      }
}

template <class T>
void pointwise_conv3d_backward_data(TensorView<const T> dy, conv3d_detail::const_ptr<T> weight,
                                    TensorView<T> dx) {
  conv3d_detail::check_same_extents("cpu::reference::pointwise_conv3d_backward_data", "dy",
                                    dy.shape, "dx", dx.shape);
  const index_t cin = dx.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = dy.shape.spatial();
  for (index_t n = 0; n < dy.shape.n; ++n)
    for (index_t ci = 0; ci < cin; ++ci)
      for (index_t s = 0; s < spatial; ++s) {
        double sum = 0.0;
        for (index_t co = 0; co < cout; ++co) {
          sum += static_cast<double>(weight[co * cin + ci]) *
                 static_cast<double>(dy.channel(n, co)[s]);
        }
        dx.channel(n, ci)[s] = static_cast<T>(sum);
      }
}

template <class T>
void pointwise_conv3d_backward_weight(TensorView<const T> x, TensorView<const T> dy,
                                      conv3d_detail::mut_ptr<T> dweight,
                                      conv3d_detail::mut_ptr<T> dbias) {
  conv3d_detail::check_same_extents("cpu::reference::pointwise_conv3d_backward_weight", "x",
                                    x.shape, "dy", dy.shape);
  const index_t cin = x.shape.c;
  const index_t cout = dy.shape.c;
  const index_t spatial = x.shape.spatial();
  for (index_t co = 0; co < cout; ++co) {
    for (index_t ci = 0; ci < cin; ++ci) {
      double sum = 0.0;
      for (index_t n = 0; n < x.shape.n; ++n)
        for (index_t s = 0; s < spatial; ++s) {
          sum += static_cast<double>(dy.channel(n, co)[s]) *
                 static_cast<double>(x.channel(n, ci)[s]);
        }
      dweight[co * cin + ci] = static_cast<T>(static_cast<double>(dweight[co * cin + ci]) + sum);
    }
    if (dbias != nullptr) {
      double sum = 0.0;
      for (index_t n = 0; n < dy.shape.n; ++n)
        for (index_t s = 0; s < spatial; ++s) sum += static_cast<double>(dy.channel(n, co)[s]);
      dbias[co] = static_cast<T>(static_cast<double>(dbias[co]) + sum);
    }
  }
}

}  // namespace reference
}  // namespace revox::cpu
