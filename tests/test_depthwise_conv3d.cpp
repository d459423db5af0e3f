// DepthwiseConv3d: the fast CPU kernels against the plain references, PyTorch's
// cross-correlation convention on hand-computed cases, independence from the thread count,
// gradcheck of the layer, misuse errors and the parameter layout.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_depthwise_conv3d (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/ops/cpu/depthwise_conv3d.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::random_tensor;
using revox::test::max_error;
using revox::test::fast_path_tolerance;
using revox::test::nan;

namespace {

template <class T>
Tensor<T> filled(Shape5 shape, T value) {
  return Tensor<T>::full(shape, value);
}

const Shape5 kShapes[] = {
    {1, 1, 1, 1, 1}, {1, 3, 5, 6, 7}, {2, 2, 2, 3, 4}, {1, 4, 1, 1, 9}, {2, 5, 3, 2, 1},
    {1, 2, 9, 1, 2}, {1, 6, 4, 3, 37}, {3, 1, 2, 2, 2}, {1, 7, 2, 3, 3},
};

}  // namespace

TEMPLATE_TEST_CASE("depthwise_conv3d fast path matches the reference", "[ops][depthwise_conv3d]",
                   float, double) {
  using T = TestType;
  revox::Rng rng(2024);
  for (const Shape5& shape : kShapes) {
    for (const bool with_bias : {true, false}) {
      INFO("shape " << shape << ", bias " << with_bias);
      const Shape5 wshape{shape.c, 1, 3, 3, 3};
      const Tensor<T> x = random_tensor<T>(shape, rng);
      const Tensor<T> dy = random_tensor<T>(shape, rng);
      const Tensor<T> weight = random_tensor<T>(wshape, rng);
      const Tensor<T> bias = random_tensor<T>(revox::flat_shape(shape.c), rng);
      const T* bias_ptr = with_bias ? bias.data() : nullptr;

      Tensor<T> y_fast = filled(shape, nan<T>());
      Tensor<T> y_ref = filled(shape, T(-777));
      revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias_ptr, y_fast.view());
      revox::cpu::reference::depthwise_conv3d_forward(x.cview(), weight.data(), bias_ptr,
                                                      y_ref.view());
      CHECK(max_error(y_fast, y_ref) <= fast_path_tolerance<T>());

      Tensor<T> dx_fast = filled(shape, nan<T>());
      Tensor<T> dx_ref = filled(shape, T(-777));
      revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx_fast.view());
      revox::cpu::reference::depthwise_conv3d_backward_data(dy.cview(), weight.data(),
                                                            dx_ref.view());
      CHECK(max_error(dx_fast, dx_ref) <= fast_path_tolerance<T>());

      // Weight gradients accumulate onto the same random prior in both.
      const Tensor<T> prior_w = random_tensor<T>(wshape, rng);
      const Tensor<T> prior_b = random_tensor<T>(revox::flat_shape(shape.c), rng);
      Tensor<T> dw_fast = prior_w.clone();
      Tensor<T> dw_ref = prior_w.clone();
      Tensor<T> db_fast = prior_b.clone();
      Tensor<T> db_ref = prior_b.clone();
      revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw_fast.data(),
                                                   with_bias ? db_fast.data() : nullptr);
      revox::cpu::reference::depthwise_conv3d_backward_weight(
          x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
      CHECK(max_error(dw_fast, dw_ref) <= fast_path_tolerance<T>());
      CHECK(max_error(db_fast, db_ref) <= fast_path_tolerance<T>());
      if (!with_bias) CHECK(std::memcmp(db_fast.data(), prior_b.data(), prior_b.bytes()) == 0);
    }
  }
}

TEST_CASE("depthwise_conv3d is PyTorch's cross-correlation with zero padding",
          "[ops][depthwise_conv3d]") {
  const Shape5 shape{1, 2, 3, 4, 5};
  revox::Rng rng(7);
  const Tensor<double> x = random_tensor<double>(shape, rng);
  // Channel 0 has one tap (i, j, k) = (0, 1, 2): y[d,h,w] = x[d-1, h, w+1].
  // Channel 1 has one tap (2, 0, 1) with weight 2, and bias 0.5: y = 2 x[d+1, h-1, w] + 0.5.
  Tensor<double> weight = Tensor<double>::zeros(Shape5{2, 1, 3, 3, 3});
  weight[0 * 27 + 0 * 9 + 1 * 3 + 2] = 1.0;
  weight[1 * 27 + 2 * 9 + 0 * 3 + 1] = 2.0;
  const double bias[2] = {0.0, 0.5};
  auto x_at = [&](index_t c, index_t d, index_t h, index_t w) {
    const bool inside = d >= 0 && d < shape.d && h >= 0 && h < shape.h && w >= 0 && w < shape.w;
    return inside ? x.cview().at(0, c, d, h, w) : 0.0;
  };
  for (const bool fast : {true, false}) {
    INFO((fast ? "fast path" : "reference"));
    Tensor<double> y = filled(shape, nan<double>());
    if (fast) {
      revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias, y.view());
    } else {
      revox::cpu::reference::depthwise_conv3d_forward(x.cview(), weight.data(), bias, y.view());
    }
    for (index_t d = 0; d < shape.d; ++d)
      for (index_t h = 0; h < shape.h; ++h)
        for (index_t w = 0; w < shape.w; ++w) {
          REQUIRE(y.cview().at(0, 0, d, h, w) == x_at(0, d - 1, h, w + 1));
          REQUIRE(y.cview().at(0, 1, d, h, w) == 2.0 * x_at(1, d + 1, h - 1, w) + 0.5);
        }
  }
}

TEST_CASE("depthwise_conv3d of ones counts the in-volume neighbours", "[ops][depthwise_conv3d]") {
  // A 3x3x3 kernel of ones over a 3x3x3 volume of ones: 27 at the centre, 18 at a face
  // centre, 12 at an edge centre, 8 at a corner. Backward-data of ones is the same.
  const Shape5 shape{1, 1, 3, 3, 3};
  const Tensor<float> ones = filled(shape, 1.0f);
  const Tensor<float> weight = filled(Shape5{1, 1, 3, 3, 3}, 1.0f);
  Tensor<float> y = filled(shape, nan<float>());
  Tensor<float> dx = filled(shape, nan<float>());
  revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, ones.cview(), weight.data(), nullptr, y.view());
  revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_data(revox::Cpu{}, ones.cview(), weight.data(), dx.view());
  for (const auto* out : {&y, &dx}) {
    const auto v = out->cview();
    CHECK(v.at(0, 0, 1, 1, 1) == 27.0f);
    CHECK(v.at(0, 0, 0, 1, 1) == 18.0f);
    CHECK(v.at(0, 0, 1, 1, 2) == 18.0f);
    CHECK(v.at(0, 0, 0, 0, 1) == 12.0f);
    CHECK(v.at(0, 0, 2, 2, 2) == 8.0f);
    CHECK(v.at(0, 0, 0, 0, 0) == 8.0f);
  }
  // dweight[i,j,k] = sum of x over the positions that tap (i,j,k) reads: 3 - |i-1| in each axis.
  Tensor<float> dweight = Tensor<float>::zeros(Shape5{1, 1, 3, 3, 3});
  float dbias = 1.0f;
  revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_weight(revox::Cpu{}, ones.cview(), ones.cview(), dweight.data(), &dbias);
  CHECK(dweight[1 * 9 + 1 * 3 + 1] == 27.0f);
  CHECK(dweight[0] == 8.0f);
  CHECK(dweight[0 * 9 + 1 * 3 + 1] == 18.0f);
  CHECK(dbias == 28.0f);
}

TEMPLATE_TEST_CASE("depthwise_conv3d results do not depend on the number of threads",
                   "[ops][depthwise_conv3d]", float, double) {
  using T = TestType;
  // Large enough for the kernels to start a parallel team.
  const Shape5 shape{2, 6, 9, 17, 33};
  REQUIRE(shape.numel() >= revox::cpu::detail::kDepthwiseParallelMin);
  revox::Rng rng(99);
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const Tensor<T> weight = random_tensor<T>(Shape5{6, 1, 3, 3, 3}, rng);
  const Tensor<T> bias = random_tensor<T>(revox::flat_shape(6), rng);
  struct Outputs {
    Tensor<T> y, dx, dweight, dbias;
  };
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Outputs out{Tensor<T>(shape), Tensor<T>(shape),
                Tensor<T>::zeros(Shape5{6, 1, 3, 3, 3}), Tensor<T>::zeros(revox::flat_shape(6))};
    revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), out.y.view());
    revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), out.dx.view());
    revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), out.dweight.data(),
                                                 out.dbias.data());
    // The fused backward adds the same gradients again, and must assign the same dx.
    Tensor<T> dx_fused(shape);
    revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward(revox::Cpu{}, x.cview(), dy.cview(), weight.data(), dx_fused.view(),
                                          out.dweight.data(), out.dbias.data());
    REQUIRE(std::memcmp(dx_fused.data(), out.dx.data(), out.dx.bytes()) == 0);
    omp_set_num_threads(before);
    return out;
  };
  const Outputs one = run(1);
  for (const int threads : {2, 3}) {
    INFO(threads << " threads");
    const Outputs many = run(threads);
    CHECK(std::memcmp(one.y.data(), many.y.data(), one.y.bytes()) == 0);
    CHECK(std::memcmp(one.dx.data(), many.dx.data(), one.dx.bytes()) == 0);
    CHECK(std::memcmp(one.dweight.data(), many.dweight.data(), one.dweight.bytes()) == 0);
    CHECK(std::memcmp(one.dbias.data(), many.dbias.data(), one.dbias.bytes()) == 0);
  }
}

TEST_CASE("DepthwiseConv3d with bias passes gradcheck", "[layer][depthwise_conv3d][gradcheck]") {
  for (const index_t channels : {1, 3, 4}) {
    for (const index_t batch : {1, 2}) {
      for (const Shape5 spatial : {Shape5{0, 0, 3, 4, 5}, Shape5{0, 0, 2, 1, 3}, Shape5{0, 0, 1, 1, 1}}) {
        const Shape5 shape{batch, channels, spatial.d, spatial.h, spatial.w};
        INFO("shape " << shape);
        revox::DepthwiseConv3d<double> layer(channels);
        revox::Parameters<double> params(layer);
        const auto result = revox::testing::gradcheck(layer, params, shape);
        INFO(result.report);
        REQUIRE(result.passed);
      }
    }
  }
}

TEST_CASE("DepthwiseConv3d without bias passes gradcheck", "[layer][depthwise_conv3d][gradcheck]") {
  for (const index_t channels : {2, 5}) {
    for (const index_t batch : {1, 2}) {
      const Shape5 shape{batch, channels, 3, 2, 4};
      INFO("shape " << shape);
      revox::DepthwiseConv3d<double> layer(channels, /*bias=*/false);
      revox::Parameters<double> params(layer);
      const auto result = revox::testing::gradcheck(layer, params, shape);
      INFO(result.report);
      REQUIRE(result.passed);
    }
  }
}

TEST_CASE("DepthwiseConv3d rejects misuse with readable errors", "[layer][depthwise_conv3d]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(revox::DepthwiseConv3d<float>(0),
                    "DepthwiseConv3d: channels must be positive, got 0");
  CHECK_THROWS_AS(revox::DepthwiseConv3d<float>(-3), revox::Error);

  revox::DepthwiseConv3d<float> layer(4);
  const Shape5 shape{1, 4, 3, 3, 3};
  Tensor<float> x = Tensor<float>::zeros(shape);
  Tensor<float> y(shape);
  CHECK_THROWS_WITH(layer.forward(revox::Cpu{}, x.cview(), y.view(), nullptr),
                    Contains("parameters are not bound"));

  revox::Parameters<float> params(layer);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 3, 3, 3, 3}),
                    "DepthwiseConv3d: input channels: expected 4, got 3");
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 0, 3, 3}),
                    Contains("DepthwiseConv3d: input extents must be positive"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{0, 4, 3, 3, 3}),
                    Contains("input extents must be positive"));

  Tensor<float> y_wrong(Shape5{1, 4, 3, 3, 2});
  CHECK_THROWS_WITH(layer.forward(revox::Cpu{}, x.cview(), y_wrong.view(), nullptr),
                    Contains("DepthwiseConv3d: output shape"));
  Tensor<float> x_wrong = Tensor<float>::zeros(Shape5{1, 2, 3, 3, 3});
  Tensor<float> y2(Shape5{1, 2, 3, 3, 3});
  CHECK_THROWS_WITH(layer.forward(revox::Cpu{}, x_wrong.cview(), y2.view(), nullptr),
                    Contains("input channels: expected 4, got 2"));

  revox::DepthwiseConv3d<float>::Saved<revox::Cpu> saved;
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y.cview(), x.view()),
                    Contains("nothing saved"));
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  Tensor<float> dx_wrong(Shape5{1, 4, 3, 2, 3});
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y.cview(), dx_wrong.view()),
                    Contains("DepthwiseConv3d::backward (dx): output shape"));
  CHECK_THROWS_WITH(layer.backward(revox::Cpu{}, saved, y_wrong.cview(), x.view()),
                    Contains("DepthwiseConv3d::backward: dy shape"));

  // The kernels check their own arguments too.
  CHECK_THROWS_WITH(revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), layer.weight().value,
                                                         nullptr, y_wrong.view()),
                    Contains("depthwise_conv3d_forward: y shape"));
  CHECK_THROWS_WITH(revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), nullptr, nullptr, y.view()),
                    Contains("weight must not be null"));
}

TEST_CASE("DepthwiseConv3d parameters follow PyTorch", "[layer][depthwise_conv3d]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::DepthwiseConv3d<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::DepthwiseConv3d<double>>);
  for (const bool with_bias : {true, false}) {
    revox::DepthwiseConv3d<float> layer(6, with_bias);
    std::vector<std::string> names;
    std::vector<revox::ParamShape> shapes;
    layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
      names.push_back(name);
      shapes.push_back(p.shape);
    });
    if (with_bias) {
      REQUIRE(names == std::vector<std::string>{"weight", "bias"});
      CHECK(shapes[1] == revox::ParamShape{6});
    } else {
      REQUIRE(names == std::vector<std::string>{"weight"});
    }
    CHECK(shapes[0] == revox::ParamShape{6, 1, 3, 3, 3});
    CHECK(revox::param_count(layer) == 6 * 27 + (with_bias ? 6 : 0));
    CHECK(layer.output_shape(Shape5{2, 6, 5, 6, 7}) == Shape5{2, 6, 5, 6, 7});
  }

  // reset_parameters: U(-1/sqrt(27), 1/sqrt(27)) for weight and bias (fan_in = 1 * 27).
  revox::DepthwiseConv3d<double> layer(40);
  revox::Parameters<double> params(layer);
  revox::Rng rng(3);
  layer.reset_parameters(rng);
  const double bound = 1.0 / std::sqrt(27.0);
  for (const auto* p : {&layer.weight(), &layer.bias()}) {
    double low = 1.0, high = -1.0;
    for (index_t i = 0; i < p->numel(); ++i) {
      low = std::min(low, p->value[i]);
      high = std::max(high, p->value[i]);
    }
    CHECK(low >= -bound);
    CHECK(high <= bound);
    CHECK(low < -0.5 * bound);  // spread over the range, not a constant
    CHECK(high > 0.5 * bound);
  }
}

namespace {

// Every public and fused fast path at an explicit vector width N and row block R, against
// the references; the fused backward must also equal the two separate fast passes bit for bit.
template <class T, int N, int R>
void check_depthwise_width(const Shape5& shape, revox::Rng& rng) {
  namespace detail = revox::cpu::detail;
  namespace ref = revox::cpu::reference;
  INFO("N = " << N << ", R = " << R << ", shape " << shape);
  const Shape5 wshape{shape.c, 1, 3, 3, 3};
  const Tensor<T> x = random_tensor<T>(shape, rng);
  const Tensor<T> dy = random_tensor<T>(shape, rng);
  const Tensor<T> weight = random_tensor<T>(wshape, rng);
  const Tensor<T> bias = random_tensor<T>(revox::flat_shape(shape.c), rng);
  const Tensor<T> prior_w = random_tensor<T>(wshape, rng);
  const Tensor<T> prior_b = random_tensor<T>(revox::flat_shape(shape.c), rng);

  Tensor<T> y_fast = filled(shape, nan<T>());
  Tensor<T> y_ref = filled(shape, T(-777));
  detail::depthwise_conv3d_forward_impl<T, N, R>(x.cview(), weight.data(), bias.data(),
                                                 y_fast.view());
  ref::depthwise_conv3d_forward<T>(x.cview(), weight.data(), bias.data(), y_ref.view());
  CHECK(max_error(y_fast, y_ref) <= fast_path_tolerance<T>());

  Tensor<T> dx_fast = filled(shape, nan<T>());
  Tensor<T> dx_ref = filled(shape, T(-777));
  detail::depthwise_conv3d_backward_data_impl<T, N, R>(dy.cview(), weight.data(), dx_fast.view());
  ref::depthwise_conv3d_backward_data<T>(dy.cview(), weight.data(), dx_ref.view());
  CHECK(max_error(dx_fast, dx_ref) <= fast_path_tolerance<T>());

  Tensor<T> dw_fast = prior_w.clone();
  Tensor<T> db_fast = prior_b.clone();
  Tensor<T> dw_ref = prior_w.clone();
  Tensor<T> db_ref = prior_b.clone();
  detail::depthwise_conv3d_backward_weight_impl<T, N, R>(x.cview(), dy.cview(), dw_fast.data(),
                                                         db_fast.data());
  ref::depthwise_conv3d_backward_weight<T>(x.cview(), dy.cview(), dw_ref.data(), db_ref.data());
  CHECK(max_error(dw_fast, dw_ref) <= fast_path_tolerance<T>());
  CHECK(max_error(db_fast, db_ref) <= fast_path_tolerance<T>());

  Tensor<T> dx_fused = filled(shape, nan<T>());
  Tensor<T> dw_fused = prior_w.clone();
  Tensor<T> db_fused = prior_b.clone();
  detail::depthwise_conv3d_backward_impl<T, N, R>(x.cview(), dy.cview(), weight.data(),
                                                  dx_fused.view(), dw_fused.data(),
                                                  db_fused.data());
  CHECK(std::memcmp(dx_fused.data(), dx_fast.data(), dx_fast.bytes()) == 0);
  CHECK(std::memcmp(dw_fused.data(), dw_fast.data(), dw_fast.bytes()) == 0);
  CHECK(std::memcmp(db_fused.data(), db_fast.data(), db_fast.bytes()) == 0);
}

// Odd extents, a single voxel, W below and above the vector width, H not a multiple of the
// row block, D spanning several 32-slice slabs (D = 70: slabs of 24), and W a multiple of
// every width with H a multiple of every row block (no partial vector or row block at all),
// or with one row past a block.
const Shape5 kWidthShapes[] = {
    {1, 3, 5, 7, 9},   {1, 1, 1, 1, 1},   {2, 2, 3, 5, 17},
    {1, 2, 70, 3, 4},  {1, 2, 4, 9, 33},  {1, 2, 3, 16, 32}, {1, 1, 2, 17, 16},
};

}  // namespace

TEMPLATE_TEST_CASE("depthwise_conv3d fast paths match the reference at every vector width",
                   "[ops][depthwise_conv3d]", float, double) {
  using T = TestType;
  revox::Rng rng(4242);
  for (const Shape5& shape : kWidthShapes) {
    check_depthwise_width<T, 2, 1>(shape, rng);
    check_depthwise_width<T, 4, 4>(shape, rng);
    check_depthwise_width<T, 8, 4>(shape, rng);
    check_depthwise_width<T, 16, 8>(shape, rng);
    check_depthwise_width<T, revox::cpu::simd::native_lanes<T>,
                          revox::cpu::detail::kDepthwiseRows>(shape, rng);
  }
}

TEST_CASE("depthwise_conv3d fused backward matches the reference with and without dbias",
          "[ops][depthwise_conv3d]") {
  revox::Rng rng(77);
  for (const Shape5& shape : kShapes) {
    for (const bool with_bias : {true, false}) {
      INFO("shape " << shape << ", bias " << with_bias);
      const Shape5 wshape{shape.c, 1, 3, 3, 3};
      const Tensor<double> x = random_tensor<double>(shape, rng);
      const Tensor<double> dy = random_tensor<double>(shape, rng);
      const Tensor<double> weight = random_tensor<double>(wshape, rng);
      const Tensor<double> prior_w = random_tensor<double>(wshape, rng);
      const Tensor<double> prior_b = random_tensor<double>(revox::flat_shape(shape.c), rng);
      Tensor<double> dx = filled(shape, nan<double>());
      Tensor<double> dx_ref = filled(shape, -777.0);
      Tensor<double> dw = prior_w.clone(), dw_ref = prior_w.clone();
      Tensor<double> db = prior_b.clone(), db_ref = prior_b.clone();
      revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward(revox::Cpu{}, x.cview(), dy.cview(), weight.data(), dx.view(),
                                            dw.data(), with_bias ? db.data() : nullptr);
      revox::cpu::reference::depthwise_conv3d_backward(x.cview(), dy.cview(), weight.data(),
                                                       dx_ref.view(), dw_ref.data(),
                                                       with_bias ? db_ref.data() : nullptr);
      CHECK(max_error(dx, dx_ref) <= fast_path_tolerance<double>());
      CHECK(max_error(dw, dw_ref) <= fast_path_tolerance<double>());
      CHECK(max_error(db, db_ref) <= fast_path_tolerance<double>());
      if (!with_bias) CHECK(std::memcmp(db.data(), prior_b.data(), prior_b.bytes()) == 0);
    }
  }
  const Shape5 shape{1, 2, 3, 3, 3};
  const Tensor<float> x = filled(shape, 1.0f);
  Tensor<float> dx(shape);
  const Tensor<float> weight = filled(Shape5{2, 1, 3, 3, 3}, 1.0f);
  Tensor<float> dweight = Tensor<float>::zeros(Shape5{2, 1, 3, 3, 3});
  CHECK_THROWS_WITH(revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward<float>(revox::Cpu{}, x.cview(), x.cview(),
                                                                 weight.data(), dx.view(),
                                                                 nullptr, nullptr),
                    Catch::Contains("dweight must not be null"));
  Tensor<float> wrong(Shape5{1, 2, 3, 3, 4});
  CHECK_THROWS_WITH(revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward<float>(revox::Cpu{}, x.cview(), x.cview(),
                                                                 weight.data(), wrong.view(),
                                                                 dweight.data(), nullptr),
                    Catch::Contains("dx shape"));
}

TEST_CASE("depthwise_conv3d fast paths match the reference on a benchmark shape",
          "[ops][depthwise_conv3d][slow]") {
  // revox_bench's (C, D) = (32, 64): every kernel on full-width vectors, two slabs per plane.
  const Shape5 shape{1, 32, 64, 64, 64};
  revox::Rng rng(5);
  const Tensor<float> x = random_tensor<float>(shape, rng);
  const Tensor<float> dy = random_tensor<float>(shape, rng);
  const Tensor<float> weight = random_tensor<float>(Shape5{32, 1, 3, 3, 3}, rng, -0.2, 0.2);
  const Tensor<float> bias = random_tensor<float>(revox::flat_shape(32), rng);
  Tensor<float> y(shape), y_ref(shape);
  revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), y.view());
  revox::cpu::reference::depthwise_conv3d_forward(x.cview(), weight.data(), bias.data(),
                                                  y_ref.view());
  CHECK(max_error(y, y_ref) <= 1e-5);
  Tensor<float> dx(shape), dx_ref(shape);
  Tensor<float> dw = Tensor<float>::zeros(Shape5{32, 1, 3, 3, 3}), dw_ref = dw.clone();
  Tensor<float> db = Tensor<float>::zeros(revox::flat_shape(32)), db_ref = db.clone();
  revox::ops::DepthwiseConv3dKernels<revox::Cpu>::depthwise_conv3d_backward(revox::Cpu{}, x.cview(), dy.cview(), weight.data(), dx.view(),
                                        dw.data(), db.data());
  revox::cpu::reference::depthwise_conv3d_backward(x.cview(), dy.cview(), weight.data(),
                                                   dx_ref.view(), dw_ref.data(), db_ref.data());
  CHECK(max_error(dx, dx_ref) <= 1e-5);
  // Sums of 262144 products of magnitude <= 1 (a few hundred in size): relative to 1, float
  // rounding of the per-slice vector partials stays far below 1e-3.
  CHECK(max_error(dw, dw_ref) <= 1e-3);
  CHECK(max_error(db, db_ref) <= 1e-3);
}

#else  // REVOX_GPU_TESTS

// GPU parity of the depthwise 3x3x3 convolution through the ops:: dispatchers against the plain
// CPU reference, float and double (tests/cuda/conv_parity.cuh: shared checks, tolerances). Exits
// 77 (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_depthwise_conv3d.cpp.
#include "cuda/conv_parity.cuh"
#include "cuda/cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_depthwise_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    depthwise_parity<T>(dev, odd, with_bias, rng);
    depthwise_parity<T>(dev, Shape5{1, 2, 1, 1, 1}, with_bias, rng);
  }
  depthwise_parity<T>(dev, larger, true, rng);
}

}  // namespace

int main() {
  return run_with_context("cuda.test_depthwise_conv3d", [](const revox::Cuda& dev, auto t) {
    all_depthwise_parity<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
