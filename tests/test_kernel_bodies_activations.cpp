// The CUDA kernel bodies of the activations (include/revox/ops/kernel_bodies/), run on the CPU with
// kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/ops/cpu/activations.hpp). Outputs are pre-filled with NaN so an element a body
// never writes fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU
// runs the same bodies through cuda::for_each (the GPU part of tests/test_activations.cpp checks it
// on a GPU).
#include <catch2/catch.hpp>

#include <limits>

#include "revox/ops/cpu/activations.hpp"
#include "revox/ops/kernel_bodies/activations.hpp"
#include "support/kernel_bodies.hpp"

namespace {

// Random values with the special ones every element-wise op must treat as the CPU does.
template <class T>
Tensor<T> activation_input(Shape5 shape, revox::Rng& rng) {
  Tensor<T> x = random_tensor<T>(shape, rng, -8.0, 8.0);
  const T specials[] = {T(0), -T(0), T(6), T(-6), nan<T>(), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(), T(5.999f), T(1e-30f)};
  index_t at = 0;
  for (const T v : specials) {
    x[at] = v;
    at += 13;
  }
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("emulated kernels: activations match the CPU kernels exactly",
                   "[cuda][emulated][activations]", float, double) {
  using T = TestType;
  revox::Rng rng(101);
  const Shape5 shape = kOddShape;
  const Tensor<T> x = activation_input<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const index_t count = shape.numel();
  const T slope = T(0.01);

  auto check_forward = [&](const char* name, auto body_for, auto cpu_op) {
    INFO(name);
    Tensor<T> expected = nan_tensor<T>(shape);
    cpu_op(x.cview(), expected.view());
    Tensor<T> got = nan_tensor<T>(shape);
    kernels::emulate_for_each(count, body_for(x.data(), got.data()));
    CHECK(mismatches(got, expected) == 0);
    // In place: y is the very array x.
    Tensor<T> inplace = x.clone();
    kernels::emulate_for_each(count, body_for(inplace.data(), inplace.data()));
    CHECK(mismatches(inplace, expected) == 0);
  };
  check_forward(
      "relu", [](const T* in, T* out) { return kernels::Relu<T>{in, out}; },
      [](TensorView<const T> a, TensorView<T> b) { revox::ops::ActivationKernels<revox::Cpu>::relu(revox::Cpu{}, a, b); });
  check_forward(
      "relu6", [](const T* in, T* out) { return kernels::Relu6<T>{in, out}; },
      [](TensorView<const T> a, TensorView<T> b) { revox::ops::ActivationKernels<revox::Cpu>::relu6(revox::Cpu{}, a, b); });
  check_forward(
      "leaky_relu", [&](const T* in, T* out) { return kernels::LeakyRelu<T>{in, out, slope}; },
      [&](TensorView<const T> a, TensorView<T> b) { revox::ops::ActivationKernels<revox::Cpu>::leaky_relu(revox::Cpu{}, a, b, slope); });

  auto check_backward = [&](const char* name, auto body_for, auto cpu_op) {
    INFO(name);
    Tensor<T> expected = nan_tensor<T>(shape);
    cpu_op(x.cview(), dy.cview(), expected.view());
    Tensor<T> got = nan_tensor<T>(shape);
    kernels::emulate_for_each(count, body_for(x.data(), dy.data(), got.data()));
    CHECK(mismatches(got, expected) == 0);
  };
  check_backward(
      "relu_backward",
      [](const T* a, const T* g, T* out) { return kernels::ReluBackward<T>{a, g, out}; },
      [](TensorView<const T> a, TensorView<const T> g, TensorView<T> out) {
        revox::ops::ActivationKernels<revox::Cpu>::relu_backward(revox::Cpu{}, a, g, out);
      });
  check_backward(
      "relu6_backward",
      [](const T* a, const T* g, T* out) { return kernels::Relu6Backward<T>{a, g, out}; },
      [](TensorView<const T> a, TensorView<const T> g, TensorView<T> out) {
        revox::ops::ActivationKernels<revox::Cpu>::relu6_backward(revox::Cpu{}, a, g, out);
      });
  check_backward(
      "leaky_relu_backward",
      [&](const T* a, const T* g, T* out) {
        return kernels::LeakyReluBackward<T>{a, g, out, slope};
      },
      [&](TensorView<const T> a, TensorView<const T> g, TensorView<T> out) {
        revox::ops::ActivationKernels<revox::Cpu>::leaky_relu_backward(revox::Cpu{}, a, g, out, slope);
      });
}
