// GPU parity of UpsampleTrilinear (op and layer): each runs through its dispatcher on Cuda and
// on Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_upsample_trilinear.cpp.
//
// Tolerance (worst |gpu - cpu| / max(1, |cpu|)): float 1e-5, double 1e-12; nvcc contracts
// a * b + c into FMA, the CPU build does not, so sums of weighted taps differ in the last
// bits.
#include <string>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/ops/cuda/upsample_trilinear.cuh"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
void test_upsample_trilinear(const Cuda& dev) {
  revox::Rng rng(204);
  const std::string prefix = std::string("upsample_trilinear<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 1, 1, 1}, Shape5{2, 4, 17, 18, 19}}) {
    const Shape5 out{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
    const Tensor<T> x = random_tensor<T>(in, rng);
    const Tensor<T> dy = random_tensor<T>(out, rng);
    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> y = nan_tensor<T>(out);
    Tensor<T> dx = nan_tensor<T>(in);
    revox::ops::upsample_trilinear(Cpu{}, x.cview(), y.view());
    revox::ops::upsample_trilinear_backward(Cpu{}, dy.cview(), dx.view());

    revox::UpsampleTrilinear<T> layer;
    typename revox::UpsampleTrilinear<T>::template Saved<Cuda> saved;
    auto y_dev = device_prefilled<T>(dev, out);
    auto dx_dev = device_prefilled<T>(dev, in);
    layer.forward(dev, x_dev.cview(), y_dev.view(), &saved);
    layer.backward(dev, saved, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tolerance<T>());
    check_close(prefix + "dx", revox::to_host(dx_dev), dx, tolerance<T>());
  }
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_upsample_trilinear", [](const Cuda& dev, auto t) {
    test_upsample_trilinear<decltype(t)>(dev);
  });
}
