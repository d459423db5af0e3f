// GPU parity of MaxPool3d (op and layer): each runs through its dispatcher on Cuda and on Cpu
// from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77 (skipped)
// without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_max_pool3d.cpp.
//
// Tolerance: exact (y, argmax, dx); a comparison per element.
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/ops/cuda/max_pool3d.cuh"

namespace {

template <class T>
void test_max_pool3d(const Cuda& dev) {
  revox::Rng rng(203);
  const std::string prefix = std::string("max_pool3d<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 4, 6, 8}, Shape5{2, 4, 33, 34, 35}}) {
    Tensor<T> x = random_tensor<T>(in, rng);
    for (index_t i = 0; i < x.numel(); i += 3) x[i] = std::round(x[i] * T(2)) / T(2);  // ties
    for (index_t i = 5; i < x.numel(); i += 41) x[i] = nan<T>();
    const Shape5 out{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};
    const auto x_dev = revox::to_device(x);

    Tensor<T> y = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax = Tensor<std::uint8_t>::full(out, 255);
    revox::ops::max_pool3d(Cpu{}, x.cview(), y.view(), argmax.view());
    auto y_dev = device_prefilled<T>(dev, out);
    Tensor<std::uint8_t, Cuda> argmax_dev(out);
    revox::ops::fill(dev, argmax_dev.view(), std::uint8_t{77});
    revox::ops::max_pool3d(dev, x_dev.cview(), y_dev.view(), argmax_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, 0.0);
    check_close(prefix + "argmax", revox::to_host(argmax_dev), argmax, 0.0);
    auto y_only = device_prefilled<T>(dev, out);
    revox::ops::max_pool3d(dev, x_dev.cview(), y_only.view(), TensorView<std::uint8_t>{});
    check_close(prefix + "y without argmax", revox::to_host(y_only), y, 0.0);

    const Tensor<T> dy = random_tensor<T>(out, rng);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> dx = nan_tensor<T>(in);
    revox::ops::max_pool3d_backward(Cpu{}, dy.cview(), argmax.cview(), dx.view());
    auto dx_dev = device_prefilled<T>(dev, in);
    revox::ops::max_pool3d_backward(dev, dy_dev.cview(), argmax_dev.cview(), dx_dev.view());
    check_close(prefix + "dx", revox::to_host(dx_dev), dx, 0.0);

    // The layer keeps its argmax on the device.
    revox::MaxPool3d<T> layer;
    typename revox::MaxPool3d<T>::template Saved<Cuda> saved;
    auto y_layer = device_prefilled<T>(dev, out);
    auto dx_layer = device_prefilled<T>(dev, in);
    layer.forward(dev, x_dev.cview(), y_layer.view(), &saved);
    layer.backward(dev, saved, dy_dev.cview(), dx_layer.view());
    check_close(prefix + "MaxPool3d layer y", revox::to_host(y_layer), y, 0.0);
    check_close(prefix + "MaxPool3d layer dx", revox::to_host(dx_layer), dx, 0.0);
  }
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_max_pool3d", [](const Cuda& dev, auto t) {
    test_max_pool3d<decltype(t)>(dev);
  });
}
