// Add (skip connections) and the add / add_inplace / sub_inplace ops: fast path against the
// reference, in-place aliasing, gradcheck through a channel-splitting test layer, misuse.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_add (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "revox/layers/add.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/copy.hpp"
#include "revox/ops/cpu/add.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/test_layers.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::test::random_tensor;
using revox_test::AddHalves;

namespace {

// One IEEE operation per element: fast path and reference agree bit for bit.
template <class T>
void require_identical(const Tensor<T>& actual, const Tensor<T>& expected, const std::string& what) {
  REQUIRE(actual.shape() == expected.shape());
  index_t bad = 0;
  index_t first = -1;
  for (index_t i = 0; i < actual.numel(); ++i) {
    if (!(actual[i] == expected[i]) && bad++ == 0) first = i;
  }
  INFO(what << ": " << bad << " mismatches; first at " << first);
  REQUIRE(bad == 0);
}

std::string str(const Shape5& s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

const Shape5 kShapes[] = {{1, 1, 1, 1, 1}, {1, 3, 5, 6, 7}, {2, 2, 2, 3, 2},
                          {1, 4, 3, 3, 3}, {1, 2, 33, 34, 35}};

}  // namespace

TEMPLATE_TEST_CASE("add: fast path matches the reference", "[layer][add]", float, double) {
  using T = TestType;
  revox::Rng rng(17);
  const T poisons[] = {std::numeric_limits<T>::quiet_NaN(), T(-7.77e7)};
  for (const Shape5& shape : kShapes) {
    INFO("shape " << shape);
    const Tensor<T> a = random_tensor<T>(shape, rng, -2.0, 2.0);
    const Tensor<T> b = random_tensor<T>(shape, rng, -2.0, 2.0);
    Tensor<T> sum_ref = Tensor<T>::full(shape, T(123));
    revox::cpu::reference::add(a.cview(), b.cview(), sum_ref.view());
    Tensor<T> plus_ref = a.clone();
    revox::cpu::reference::add_inplace(plus_ref.view(), b.cview());
    Tensor<T> minus_ref = a.clone();
    revox::cpu::reference::sub_inplace(minus_ref.view(), b.cview());
    for (index_t i = 0; i < shape.numel(); i += 97) {
      REQUIRE(sum_ref[i] == a[i] + b[i]);
      REQUIRE(minus_ref[i] == a[i] - b[i]);
    }
    for (T poison : poisons) {
      Tensor<T> sum = Tensor<T>::full(shape, poison);
      revox::ops::AddKernels<revox::Cpu>::add(revox::Cpu{}, a.cview(), b.cview(), sum.view());
      require_identical(sum, sum_ref, "add");
    }
    Tensor<T> plus = a.clone();
    revox::ops::AddKernels<revox::Cpu>::add_inplace(revox::Cpu{}, plus.view(), b.cview());
    require_identical(plus, plus_ref, "add_inplace");
    Tensor<T> minus = a.clone();
    revox::ops::AddKernels<revox::Cpu>::sub_inplace(revox::Cpu{}, minus.view(), b.cview());
    require_identical(minus, minus_ref, "sub_inplace");
  }
}

TEMPLATE_TEST_CASE("add: in place, y may be a or b", "[layer][add]", float, double) {
  using T = TestType;
  const revox::Cpu cpu;
  revox::Rng rng(3);
  const revox::Add<T> add;
  for (const Shape5& shape : kShapes) {
    INFO("shape " << shape);
    const Tensor<T> a = random_tensor<T>(shape, rng, -2.0, 2.0);
    const Tensor<T> b = random_tensor<T>(shape, rng, -2.0, 2.0);
    Tensor<T> expected(shape);
    revox::cpu::reference::add(a.cview(), b.cview(), expected.view());

    Tensor<T> y_is_a = a.clone();
    add.forward(cpu, y_is_a.cview(), b.cview(), y_is_a.view());
    require_identical(y_is_a, expected, "y aliases a");

    Tensor<T> y_is_b = b.clone();
    add.forward(cpu, a.cview(), y_is_b.cview(), y_is_b.view());
    require_identical(y_is_b, expected, "y aliases b");

    Tensor<T> doubled = a.clone();
    revox::ops::add(cpu, doubled.cview(), doubled.cview(), doubled.view());
    Tensor<T> twice_a(shape);
    revox::cpu::reference::add(a.cview(), a.cview(), twice_a.view());
    require_identical(doubled, twice_a, "y, a and b are one view");

    Tensor<T> accumulated = a.clone();
    revox::ops::add_inplace(cpu, accumulated.view(), b.cview());
    require_identical(accumulated, expected, "ops::add_inplace");
    revox::ops::sub_inplace(cpu, accumulated.view(), b.cview());
    revox::cpu::reference::sub_inplace(expected.view(), b.cview());
    require_identical(accumulated, expected, "ops::sub_inplace");
  }
}

TEST_CASE("add: backward copies dy into da and db", "[layer][add]") {
  const revox::Cpu cpu;
  revox::Rng rng(4);
  const revox::Add<double> add;
  const Shape5 shape{1, 3, 5, 6, 7};
  const Tensor<double> dy = random_tensor<double>(shape, rng, -1.0, 1.0);
  Tensor<double> da = Tensor<double>::full(shape, std::nan(""));
  Tensor<double> db = Tensor<double>::full(shape, std::nan(""));
  add.backward(cpu, dy.cview(), da.view(), db.view());
  require_identical(da, dy, "da");
  require_identical(db, dy, "db");

  // Either gradient may be skipped.
  Tensor<double> only_b = Tensor<double>::full(shape, std::nan(""));
  add.backward(cpu, dy.cview(), revox::TensorView<double>{}, only_b.view());
  require_identical(only_b, dy, "db alone");
  Tensor<double> only_a = Tensor<double>::full(shape, std::nan(""));
  add.backward(cpu, dy.cview(), only_a.view(), revox::TensorView<double>{});
  require_identical(only_a, dy, "da alone");

  // da may be dy itself (the gradient passes straight through).
  Tensor<double> shared = dy.clone();
  Tensor<double> other = Tensor<double>::full(shape, std::nan(""));
  add.backward(cpu, shared.cview(), shared.view(), other.view());
  require_identical(shared, dy, "da is dy");
  require_identical(other, dy, "db beside an aliased da");
}

TEST_CASE("add: gradcheck through a channel-splitting layer", "[layer][add][gradcheck]") {
  AddHalves<double> layer;
  revox::Parameters<double> params(layer);
  CHECK(params.count() == 0);
  const Shape5 shapes[] = {{1, 2, 1, 1, 1}, {1, 4, 5, 6, 7}, {2, 6, 2, 3, 3}, {2, 2, 3, 2, 1}};
  for (const Shape5& shape : shapes) {
    const auto result = revox::testing::gradcheck(layer, params, shape);
    INFO("shape " << shape << "\n" << result.report);
    REQUIRE(result.passed);
    REQUIRE(result.checked == shape.numel());
  }
}

TEST_CASE("add: no parameters", "[layer][add]") {
  revox::Add<float> add;
  CHECK(revox::param_count(add) == 0);
  revox::Rng rng(1);
  add.reset_parameters(rng);
  CHECK(add.output_shape(Shape5{1, 2, 3, 4, 5}, Shape5{1, 2, 3, 4, 5}) == Shape5{1, 2, 3, 4, 5});
}

TEST_CASE("add: misuse throws readable errors", "[layer][add]") {
  using Catch::Contains;
  const revox::Cpu cpu;
  const revox::Add<float> add;
  const Shape5 shape{1, 2, 3, 4, 5};
  const Shape5 other{1, 3, 3, 4, 5};
  const Tensor<float> a = Tensor<float>::full(shape, 1.0f);
  const Tensor<float> b = Tensor<float>::full(other, 2.0f);
  Tensor<float> y(shape);
  CHECK_THROWS_WITH(add.forward(cpu, a.cview(), b.cview(), y.view()),
                    Contains("Add: shapes of a") && Contains(str(shape)) && Contains(str(other)));
  CHECK_THROWS_WITH(add.output_shape(Shape5{1, 0, 3, 4, 5}, Shape5{1, 0, 3, 4, 5}),
                    Contains("Add: input shape") && Contains("positive"));
  Tensor<float> wrong_y(other);
  CHECK_THROWS_WITH(add.forward(cpu, a.cview(), a.cview(), wrong_y.view()),
                    Contains("Add: output shape") && Contains(str(other)));

  // Partial overlap (a shifted view of the same memory) cannot be computed in place.
  Tensor<float> buffer = Tensor<float>::full(Shape5{1, 1, 1, 1, 10}, 1.0f);
  const revox::TensorView<float> head{buffer.data(), Shape5{1, 1, 1, 1, 8}};
  const revox::TensorView<float> shifted{buffer.data() + 1, Shape5{1, 1, 1, 1, 8}};
  CHECK_THROWS_WITH(revox::ops::add(cpu, revox::TensorView<const float>(head),
                                    revox::TensorView<const float>(head), shifted),
                    Contains("ops::add: y and a partially overlap"));
  CHECK_THROWS_WITH(revox::ops::add_inplace(cpu, shifted, revox::TensorView<const float>(head)),
                    Contains("ops::add_inplace: y and x partially overlap"));
  CHECK_THROWS_WITH(revox::ops::sub_inplace(cpu, y.view(), b.cview()),
                    Contains("ops::sub_inplace: shapes of y") && Contains(str(other)));
  CHECK_THROWS_WITH(revox::ops::add_inplace(cpu, y.view(), b.cview()),
                    Contains("ops::add_inplace: shapes of y"));

  Tensor<float> dy(shape);
  Tensor<float> wrong_da(other);
  Tensor<float> db(shape);
  CHECK_THROWS_WITH(add.backward(cpu, dy.cview(), wrong_da.view(), db.view()),
                    Contains("Add::backward: da shape") && Contains(str(other)));
  CHECK_THROWS_WITH(add.backward(cpu, dy.cview(), db.view(), wrong_da.view()),
                    Contains("Add::backward: db shape"));
  CHECK_THROWS_WITH(add.backward(cpu, revox::TensorView<const float>{}, db.view(), db.view()),
                    Contains("Add::backward: dy shape"));
}

TEST_CASE("ops::copy copies every element, in parallel chunks when large", "[ops][copy]") {
  const revox::Cpu cpu;
  revox::Rng rng(9);
  // Below the parallel threshold, exactly at a chunk multiple, and a ragged last chunk.
  const index_t one_chunk = revox::cpu::kCopyChunkBytes / static_cast<index_t>(sizeof(float));
  const index_t sizes[] = {1, 1000, 6 * one_chunk, 5 * one_chunk + 37};
  for (const index_t count : sizes) {
    INFO("elements " << count);
    const Shape5 shape{1, 1, 1, 1, count};
    const Tensor<float> src = random_tensor<float>(shape, rng, -1.0, 1.0);
    Tensor<float> dst = Tensor<float>::full(shape, std::nanf(""));
    revox::ops::copy(cpu, src.cview(), dst.view());
    require_identical(dst, src, "copy");
  }
  // Views of the same count but another shape are fine; different counts are refused.
  const Tensor<float> src = random_tensor<float>(Shape5{1, 2, 3, 4, 5}, rng, -1.0, 1.0);
  Tensor<float> flat = Tensor<float>::full(Shape5{1, 1, 1, 1, 120}, 0.0f);
  revox::ops::copy(cpu, src.cview(), flat.view());
  for (index_t i = 0; i < 120; ++i) REQUIRE(flat[i] == src[i]);
  Tensor<float> short_dst(Shape5{1, 1, 1, 1, 119});
  CHECK_THROWS_WITH(revox::ops::copy(cpu, src.cview(), short_dst.view()),
                    Catch::Contains("ops::copy") && Catch::Contains("different numbers"));
}

#else  // REVOX_GPU_TESTS

// GPU parity of add, add_inplace, sub_inplace and the reversible coupling: each runs through its
// dispatcher on Cuda and on Cpu from the same inputs and the results are compared
// (tests/cuda/parity.cuh). Exits 77 (skipped) without a GPU. The same kernel bodies run on the
// CPU in tests/test_kernel_bodies_add.cpp.
//
// Tolerance: exact; one IEEE operation per element.
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/parity.cuh"
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
  return run_parity_test("cuda.test_add", [](const Cuda& dev, auto t) {
    test_add<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
