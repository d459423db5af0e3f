// GPU parity of InstanceNorm3d (layer and ops): forward and backward on Cuda and on Cpu from
// the same inputs and parameters, affine or not, batch 2 with odd extents, a case with several
// chunks per plane and one with a large offset; outputs pre-filled (device 12345, host NaN) so
// an element one side never writes shows as a mismatch. Exits 77 (skipped) without a GPU.
// Tolerances (worst |gpu - cpu| / max(1, |cpu|); dx relative to the largest |dx|): mean and
// rstd 1e-10 (double sums in another order, FMA); y, dx, dweight, dbias float 1e-5, double
// 1e-10.
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>

#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/instance_norm3d.hpp"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/cuda/instance_norm.cuh"
#include "../support/tensors.hpp"

using revox::Cpu;
using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::max_error;
using revox::test::random_tensor;

namespace {

template <class T>
Tensor<T, Cuda> device_prefilled(const Cuda& dev, Shape5 shape) {
  Tensor<T, Cuda> t(shape);
  revox::ops::fill(dev, t.view(), static_cast<T>(12345.0));
  return t;
}

void check_close(const std::string& what, double error, double tolerance) {
  CUDA_TEST_CHECK(error <= tolerance);
  if (!(error <= tolerance)) {
    std::printf("  %s: error %.3e above tolerance %.3e\n", what.c_str(), error, tolerance);
  }
}

// Worst |a - b| relative to the largest |b|.
template <class T>
double scaled_error(const Tensor<T>& a, const Tensor<T>& b) {
  double largest = 1e-300;
  for (index_t i = 0; i < b.numel(); ++i) largest = std::fmax(largest, std::abs(double(b[i])));
  if (a.numel() != b.numel()) return INFINITY;
  return max_error(a.data(), b.data(), a.numel(), largest);
}

template <class T>
void test_instance_norm(const Cuda& dev) {
  revox::Rng rng(207);
  const std::string prefix =
      std::string("instance_norm<") + (std::is_same_v<T, float> ? "float" : "double") + ">: ";
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  struct Case {
    Shape5 shape;
    double offset;
  };
  // The last case has 4 chunks per plane; the offset case checks the shifted statistics.
  for (const Case test : {Case{{2, 3, 5, 7, 9}, 0.0}, Case{{2, 3, 5, 7, 9}, 1000.0},
                          Case{{1, 2, 20, 24, 28}, 0.0}}) {
    for (const bool affine : {true, false}) {
      const Shape5 shape = test.shape;
      const std::string name = prefix + (affine ? "affine " : "") + (test.offset > 0 ? "offset " : "");
      const double spread = test.offset == 0.0 ? 1.0 : 0.01;
      const Tensor<T> x = random_tensor<T>(shape, rng, test.offset - spread, test.offset + spread);
      const Tensor<T> dy = random_tensor<T>(shape, rng);
      revox::InstanceNorm3d<T> layer_cpu(shape.c, affine);
      revox::InstanceNorm3d<T> layer_dev(shape.c, affine);
      revox::Parameters<T> params_cpu(layer_cpu);
      revox::Parameters<T, Cuda> params_dev(layer_dev);
      if (affine) {
        revox::fill_uniform(params_cpu.values(), rng, 0.5, 1.5);
        revox::fill_uniform(params_cpu.grads(), rng, -0.5, 0.5);  // ACCUMULATED onto
        revox::copy_to_device(dev, params_dev.values().data, params_cpu.values().data,
                              params_cpu.size());
        revox::copy_to_device(dev, params_dev.grads().data, params_cpu.grads().data,
                              params_cpu.size());
      }

      typename revox::InstanceNorm3d<T>::template Saved<Cpu> saved_cpu;
      Tensor<T> y = Tensor<T>::full(shape, NAN);
      Tensor<T> dx = Tensor<T>::full(shape, NAN);
      layer_cpu.forward(Cpu{}, x.cview(), y.view(), &saved_cpu);
      const Tensor<double> mean = saved_cpu.mean.clone();
      const Tensor<double> rstd = saved_cpu.rstd.clone();
      layer_cpu.backward(Cpu{}, saved_cpu, dy.cview(), dx.view());

      const auto x_dev = revox::to_device(dev, x);
      const auto dy_dev = revox::to_device(dev, dy);
      typename revox::InstanceNorm3d<T>::template Saved<Cuda> saved_dev;
      auto y_dev = device_prefilled<T>(dev, shape);
      auto dx_dev = device_prefilled<T>(dev, shape);
      layer_dev.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
      check_close(name + "mean", max_error(revox::to_host(dev, saved_dev.mean), mean), 1e-10);
      check_close(name + "rstd", scaled_error(revox::to_host(dev, saved_dev.rstd), rstd), 1e-10);
      layer_dev.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
      check_close(name + "y", max_error(revox::to_host(dev, y_dev), y), tol);
      check_close(name + "dx", scaled_error(revox::to_host(dev, dx_dev), dx), tol);
      if (affine) {
        Tensor<T> grads(revox::flat_shape(params_cpu.size()));
        revox::copy_to_host(dev, grads.data(), params_dev.grads().data, grads.numel());
        check_close(name + "dweight, dbias",
                    max_error(grads.data(), params_cpu.grads().data, grads.numel()), tol);
      }

      // Inference: no saved statistics (they go to scratch).
      auto y_infer = device_prefilled<T>(dev, shape);
      layer_dev.forward(dev, x_dev.cview(), y_infer.view(), nullptr);
      check_close(name + "y without saved", max_error(revox::to_host(dev, y_infer), y), tol);
    }
  }
}

}  // namespace

int main() {
  revox_cuda_test::require_gpu("test_cuda_instance_norm");
  try {
    revox::CudaContext ctx(0);
    const Cuda dev = ctx.device();
    test_instance_norm<float>(dev);
    test_instance_norm<double>(dev);
    REVOX_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return revox_cuda_test::finish("test_cuda_instance_norm");
}
