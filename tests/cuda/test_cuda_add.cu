// GPU parity of add, add_inplace, sub_inplace and the reversible coupling: each runs through its
// dispatcher on Cuda and on Cpu from the same inputs and the results are compared
// (tests/cuda/parity.cuh). Exits 77 (skipped) without a GPU. The same kernel bodies run on the
// CPU in tests/test_kernel_bodies_add.cpp.
//
// Tolerance: exact; one IEEE operation per element.
#include <string>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/add.hpp"
#include "revox/ops/cuda/add.cuh"
#include "revox/ops/cuda/copy.cuh"

namespace {

template <class T>
void test_add(const Cuda& dev) {
  revox::Rng rng(202);
  const Shape5 shape = kOddShape;
  const Tensor<T> a = random_tensor<T>(shape, rng, -5.0, 5.0);
  const Tensor<T> b = random_tensor<T>(shape, rng, -5.0, 5.0);
  const auto a_dev = revox::to_device(a);
  const auto b_dev = revox::to_device(b);
  const std::string prefix = std::string("add<") + type_name<T>() + ">: ";

  Tensor<T> sum = nan_tensor<T>(shape);
  revox::ops::add(Cpu{}, a.cview(), b.cview(), sum.view());
  auto sum_dev = device_prefilled<T>(dev, shape);
  revox::ops::add(dev, a_dev.cview(), b_dev.cview(), sum_dev.view());
  check_close(prefix + "add", revox::to_host(sum_dev), sum, 0.0);

  // The reversible coupling y1 = x1 + F and its inverse x1 = y1 - F.
  Tensor<T> y_cpu = a.clone();
  auto y_dev = a_dev.clone();
  revox::ops::add_inplace(Cpu{}, y_cpu.view(), b.cview());
  revox::ops::add_inplace(dev, y_dev.view(), b_dev.cview());
  check_close(prefix + "add_inplace", revox::to_host(y_dev), y_cpu, 0.0);
  revox::ops::sub_inplace(Cpu{}, y_cpu.view(), b.cview());
  revox::ops::sub_inplace(dev, y_dev.view(), b_dev.cview());
  check_close(prefix + "sub_inplace", revox::to_host(y_dev), y_cpu, 0.0);
  // In place: y is the very view a.
  auto inplace = a_dev.clone();
  revox::ops::add(dev, inplace.cview(), b_dev.cview(), inplace.view());
  check_close(prefix + "add in place", revox::to_host(inplace), sum, 0.0);

  // The layer: forward, and backward's copies of dy.
  revox::Add<T> layer;
  auto y_layer = device_prefilled<T>(dev, shape);
  layer.forward(dev, a_dev.cview(), b_dev.cview(), y_layer.view());
  check_close(prefix + "Add layer y", revox::to_host(y_layer), sum, 0.0);
  auto da = device_prefilled<T>(dev, shape);
  auto db = device_prefilled<T>(dev, shape);
  layer.backward(dev, b_dev.cview(), da.view(), db.view());
  check_close(prefix + "Add layer da", revox::to_host(da), b, 0.0);
  check_close(prefix + "Add layer db", revox::to_host(db), b, 0.0);

  // ops::copy on the stream, ordered after the kernel that wrote its source.
  auto copied = device_prefilled<T>(dev, shape);
  auto source = device_prefilled<T>(dev, shape);
  revox::ops::add(dev, a_dev.cview(), b_dev.cview(), source.view());
  revox::ops::copy(dev, source.cview(), copied.view());
  check_close(prefix + "ops::copy", revox::to_host(dev, copied), sum, 0.0);
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_add", [](const Cuda& dev, auto t) {
    test_add<decltype(t)>(dev);
  });
}
