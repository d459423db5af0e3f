// The CUDA kernel bodies of add, add_inplace and sub_inplace (include/revox/ops/kernel_bodies/),
// run on the CPU with kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/ops/cpu/add.hpp). Outputs are pre-filled with NaN so an element a body never
// writes fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU runs
// the same bodies through cuda::for_each (the GPU part of tests/test_add.cpp checks it on a GPU).
#include <catch2/catch.hpp>

#include "revox/ops/cpu/add.hpp"
#include "revox/ops/kernel_bodies/add.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::elementwise::tolerance;

TEMPLATE_TEST_CASE("emulated kernels: add, add_inplace and sub_inplace match the CPU exactly",
                   "[cuda][emulated][add]", float, double) {
  using T = TestType;
  revox::Rng rng(102);
  const Shape5 shape = kOddShape;
  const Tensor<T> a = random_tensor<T>(shape, rng, -5.0, 5.0);
  const Tensor<T> b = random_tensor<T>(shape, rng, -5.0, 5.0);
  const index_t count = shape.numel();

  Tensor<T> expected = nan_tensor<T>(shape);
  revox::ops::AddKernels<revox::Cpu>::add(revox::Cpu{}, a.cview(), b.cview(), expected.view());
  Tensor<T> got = nan_tensor<T>(shape);
  kernels::emulate_for_each(count, kernels::Add<T>{a.data(), b.data(), got.data()});
  CHECK(mismatches(got, expected) == 0);
  Tensor<T> inplace = a.clone();  // y is the very array a
  kernels::emulate_for_each(count, kernels::Add<T>{inplace.data(), b.data(), inplace.data()});
  CHECK(mismatches(inplace, expected) == 0);

  Tensor<T> y_cpu = a.clone();
  Tensor<T> y_emulated = a.clone();
  revox::ops::AddKernels<revox::Cpu>::add_inplace(revox::Cpu{}, y_cpu.view(), b.cview());
  kernels::emulate_for_each(count, kernels::AddInplace<T>{y_emulated.data(), b.data()});
  CHECK(mismatches(y_emulated, y_cpu) == 0);
  revox::ops::AddKernels<revox::Cpu>::sub_inplace(revox::Cpu{}, y_cpu.view(), b.cview());
  kernels::emulate_for_each(count, kernels::SubInplace<T>{y_emulated.data(), b.data()});
  CHECK(mismatches(y_emulated, y_cpu) == 0);
  // The coupling and its inverse: (a + b) - b differs from a only by rounding.
  CHECK(max_error_same_nonfinite(y_emulated, a) <= 4 * tolerance<T>() * 5);
}
