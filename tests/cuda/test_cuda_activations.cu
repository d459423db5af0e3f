// GPU parity of the activations (ops and the LeakyReLU layer): each runs through its dispatcher
// on Cuda and on Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh).
// Exits 77 (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_activations.cpp.
//
// Tolerance: exact; one IEEE operation or a comparison per element.
#include <limits>
#include <string>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/activations.hpp"
#include "revox/ops/cuda/activations.cuh"

namespace {

template <class T>
void test_activations(const Cuda& dev) {
  revox::Rng rng(201);
  const Shape5 shape = kOddShape;
  Tensor<T> x = random_tensor<T>(shape, rng, -8.0, 8.0);
  x[0] = T(0);
  x[1] = T(6);
  x[2] = nan<T>();
  x[3] = std::numeric_limits<T>::infinity();
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const auto x_dev = revox::to_device(x);
  const auto dy_dev = revox::to_device(dy);
  const std::string prefix = std::string("activations<") + type_name<T>() + ">: ";
  const double slope = 0.02;

  auto forward = [&](const char* name, auto op) {
    Tensor<T> expected = nan_tensor<T>(shape);
    op(Cpu{}, x.cview(), expected.view());
    auto got = device_prefilled<T>(dev, shape);
    op(dev, x_dev.cview(), got.view());
    check_close(prefix + name, revox::to_host(got), expected, 0.0);
    auto inplace = x_dev.clone();  // y is the very view x
    op(dev, inplace.cview(), inplace.view());
    check_close(prefix + name + " in place", revox::to_host(inplace), expected, 0.0);
  };
  forward("relu", [](const auto& d, auto in, auto out) { revox::ops::relu(d, in, out); });
  forward("relu6", [](const auto& d, auto in, auto out) { revox::ops::relu6(d, in, out); });
  forward("leaky_relu", [&](const auto& d, auto in, auto out) {
    revox::ops::leaky_relu(d, in, out, slope);
  });

  auto backward = [&](const char* name, auto op) {
    Tensor<T> expected = nan_tensor<T>(shape);
    op(Cpu{}, x.cview(), dy.cview(), expected.view());
    auto got = device_prefilled<T>(dev, shape);
    op(dev, x_dev.cview(), dy_dev.cview(), got.view());
    check_close(prefix + name, revox::to_host(got), expected, 0.0);
  };
  backward("relu_backward", [](const auto& d, auto in, auto g, auto out) {
    revox::ops::relu_backward(d, in, g, out);
  });
  backward("relu6_backward", [](const auto& d, auto in, auto g, auto out) {
    revox::ops::relu6_backward(d, in, g, out);
  });
  backward("leaky_relu_backward", [&](const auto& d, auto in, auto g, auto out) {
    revox::ops::leaky_relu_backward(d, in, g, out, slope);
  });

  // The layers, saved input on the device.
  revox::LeakyReLU<T> layer(slope);
  typename revox::LeakyReLU<T>::template Saved<Cuda> saved_dev;
  typename revox::LeakyReLU<T>::template Saved<Cpu> saved_cpu;
  Tensor<T> y_cpu = nan_tensor<T>(shape);
  Tensor<T> dx_cpu = nan_tensor<T>(shape);
  layer.forward(Cpu{}, x.cview(), y_cpu.view(), &saved_cpu);
  layer.backward(Cpu{}, saved_cpu, dy.cview(), dx_cpu.view());
  auto y_dev = device_prefilled<T>(dev, shape);
  auto dx_dev = device_prefilled<T>(dev, shape);
  layer.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
  layer.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
  check_close(prefix + "LeakyReLU layer y", revox::to_host(y_dev), y_cpu, 0.0);
  check_close(prefix + "LeakyReLU layer dx", revox::to_host(dx_dev), dx_cpu, 0.0);
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_activations", [](const Cuda& dev, auto t) {
    test_activations<decltype(t)>(dev);
  });
}
