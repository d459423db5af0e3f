// revox/ops/cpu/pointwise_conv3d.hpp — PointwiseConv3dKernels<Cpu>: pointwise (1x1x1) 3D
// convolution on the CPU, a matrix product over channels at every voxel.
//
//   x      (N, Cin, D, H, W)          weight (Cout, Cin)  [PyTorch: (Cout, Cin, 1, 1, 1)]
//   y, dy  (N, Cout, D, H, W)         bias   (Cout), or nullptr for none
//
//   pointwise_conv3d_forward(dev, x, weight, bias, y):     y_n = W x_n + b       y  ASSIGNED
//   pointwise_conv3d_backward_data(dev, dy, weight, dx):   dx_n = W^T dy_n       dx ASSIGNED
//   pointwise_conv3d_backward_weight(dev, x, dy, dw, db):  dW += sum_n dy_n x_n^T,
//                                                          db += sum_{n,voxel} dy_n  ACCUMULATED
// where x_n is batch item n viewed as the row-major matrix (Cin, D*H*W) over the NCDHW data.
// The fast path hands each batch item to ops/cpu/gemm.hpp (gemm_ax for forward and
// backward-data, with the weight transposed for the latter; gemm_abt for backward-weight,
// summed in double per batch item), which parallelise themselves with OpenMP: call them from
// serial code, not from inside an omp parallel region. Results do not depend on the number
// of threads. The bias gradient is summed in double. Outputs must not alias inputs.
//
// Mixed precision: with T = bfloat16, x, y, dy and dx are bfloat16 and weight, bias and
// their gradients float (param_t<T>); the products run in ops/cpu/gemm_bf16.hpp on
// cpu_path() (the weight rounded to bfloat16, float32 accumulation, y and dx rounded to
// bfloat16 once at the end; dW and db summed in float32 per chunk, then double).
// namespace reference has the plain loops the tests compare against.
#pragma once

#include <algorithm>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/ops/cpu/conv_shapes.hpp"
#include "revox/ops/cpu/gemm.hpp"
#include "revox/ops/cpu/gemm_bf16.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox::cpu {

namespace conv3d_detail {

// The (cols, rows) row-major transpose of a (rows, cols) row-major matrix.
template <class T>
std::vector<T> transpose(const T* a, index_t rows, index_t cols) {
  std::vector<T> t(static_cast<std::size_t>(rows * cols));
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c = 0; c < cols; ++c) t[static_cast<std::size_t>(c * rows + r)] = a[r * cols + c];
  }
  return t;
}

// db[c] += sum over batch and voxels of dy[n, c], in double; parallel over channels, so the
// order of every sum is fixed.
template <class T>
void accumulate_channel_sums(TensorView<const T> dy, param_t<T>* db) {
  const index_t batch = dy.shape.n;
  const index_t channels = dy.shape.c;
  const index_t spatial = dy.shape.spatial();
#pragma omp parallel for schedule(static) if (dy.numel() > (index_t{1} << 16))
  for (index_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (index_t n = 0; n < batch; ++n) {
      const T* row = dy.channel(n, c);
#pragma omp simd reduction(+ : sum)
      for (index_t i = 0; i < spatial; ++i) {
        sum += static_cast<double>(static_cast<param_t<T>>(row[i]));
      }
    }
    db[c] = static_cast<param_t<T>>(static_cast<double>(db[c]) + sum);
  }
}

}  // namespace conv3d_detail
}  // namespace revox::cpu

namespace revox::ops {

template <>
struct PointwiseConv3dKernels<Cpu> {
  template <class T>
  static void pointwise_conv3d_forward(const Cpu& /*dev*/, TensorView<const T> x,
                                       cpu::conv3d_detail::const_ptr<T> weight,
                                       cpu::conv3d_detail::const_ptr<T> bias, TensorView<T> y) {
    cpu::conv3d_detail::check_same_extents("cpu::pointwise_conv3d_forward", "x", x.shape, "y",
                                           y.shape);
    const index_t cin = x.shape.c;
    const index_t cout = y.shape.c;
    const index_t spatial = x.shape.spatial();
    for (index_t n = 0; n < x.shape.n; ++n) {
      cpu::activation_gemm_ax<T>(cout, cin, spatial, weight, cin, x.data + n * cin * spatial,
                                 spatial, y.data + n * cout * spatial, spatial, bias);
    }
  }

  template <class T>
  static void pointwise_conv3d_backward_data(const Cpu& /*dev*/, TensorView<const T> dy,
                                             cpu::conv3d_detail::const_ptr<T> weight,
                                             TensorView<T> dx) {
    cpu::conv3d_detail::check_same_extents("cpu::pointwise_conv3d_backward_data", "dy",
                                           dy.shape, "dx", dx.shape);
    const index_t cin = dx.shape.c;
    const index_t cout = dy.shape.c;
    const index_t spatial = dy.shape.spatial();
    const std::vector<param_t<T>> weight_t =
        cpu::conv3d_detail::transpose(weight, cout, cin);  // (Cin, Cout)
    for (index_t n = 0; n < dy.shape.n; ++n) {
      cpu::activation_gemm_ax<T>(cin, cout, spatial, weight_t.data(), cout,
                                 dy.data + n * cout * spatial, spatial,
                                 dx.data + n * cin * spatial, spatial, nullptr);
    }
  }

  template <class T>
  static void pointwise_conv3d_backward_weight(const Cpu& /*dev*/, TensorView<const T> x,
                                               TensorView<const T> dy,
                                               cpu::conv3d_detail::mut_ptr<T> dweight,
                                               cpu::conv3d_detail::mut_ptr<T> dbias) {
    cpu::conv3d_detail::check_same_extents("cpu::pointwise_conv3d_backward_weight", "x",
                                           x.shape, "dy", dy.shape);
    const index_t cin = x.shape.c;
    const index_t cout = dy.shape.c;
    const index_t spatial = x.shape.spatial();
    for (index_t n = 0; n < x.shape.n; ++n) {
      cpu::activation_gemm_abt<T>(cout, cin, spatial, dy.data + n * cout * spatial, spatial,
                                  x.data + n * cin * spatial, spatial, dweight, cin);
    }
    if (dbias != nullptr) cpu::conv3d_detail::accumulate_channel_sums(dy, dbias);
  }
};

}  // namespace revox::ops

namespace revox::cpu {

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
