// PointwiseConv3d and its CPU kernels: the fast path (and the GEMMs of ops/cpu/gemm.hpp at
// every vector width) against the plain references, gradients against finite differences,
// misuse errors, parameters, and memory.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_pointwise_conv3d (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/bfloat16.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/ops/cpu/gemm.hpp"
#include "revox/ops/cpu/pointwise_conv3d.hpp"
#include "revox/testing/gradcheck.hpp"
#include "support/tensors.hpp"

namespace {

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::test::random_tensor;
using revox::test::max_mixed_error;

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// The weight gradient sums over the voxels of a range in T (gemm_abt), so its
// rounding error relative to the result grows like sqrt(voxels).
template <class T>
double weight_grad_tolerance(index_t voxels) {
  return tolerance<T>() * std::max(1.0, std::sqrt(static_cast<double>(voxels) / 64.0));
}

template <class T>
Tensor<T> filled(Shape5 shape, T value) {
  return Tensor<T>::full(shape, value);
}

struct Case {
  index_t n, cin, cout, d, h, w;
};

// Sizes 1 to 7 per axis (odd ones included), channel counts 1 to 7, and one wider case.
const Case kCases[] = {
    {1, 1, 1, 1, 1, 1}, {2, 3, 5, 5, 6, 7}, {1, 7, 4, 2, 3, 4}, {2, 2, 7, 3, 2, 3},
    {1, 4, 6, 1, 1, 1}, {2, 5, 1, 2, 3, 2}, {1, 20, 19, 3, 4, 5},
};

}  // namespace

TEMPLATE_TEST_CASE("cpu::pointwise_conv3d fast path matches the reference",
                   "[op][pointwise_conv3d]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  revox::Rng rng(42);
  for (const Case& c : kCases) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(c.n, c.cin, c.cout, c.d, c.h, c.w, with_bias);
      const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
      const Shape5 ys = xs.with_channels(c.cout);
      const Shape5 ws = revox::flat_shape(c.cout * c.cin);
      const Shape5 bs = revox::flat_shape(c.cout);
      const auto x = random_tensor<T>(xs, rng);
      const auto weight = random_tensor<T>(ws, rng);
      const auto bias = random_tensor<T>(bs, rng);
      const T* bias_ptr = with_bias ? bias.data() : nullptr;

      auto y_fast = filled<T>(ys, nan);
      auto y_ref = filled<T>(ys, T(12345));
      revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias_ptr, y_fast.view());
      revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight.data(), bias_ptr,
                                                      y_ref.view());
      CHECK(max_mixed_error(y_fast, y_ref) <= tolerance<T>());

      const auto dy = random_tensor<T>(ys, rng);
      auto dx_fast = filled<T>(xs, nan);
      auto dx_ref = filled<T>(xs, T(-777));
      revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx_fast.view());
      revox::cpu::reference::pointwise_conv3d_backward_data(dy.cview(), weight.data(),
                                                            dx_ref.view());
      CHECK(max_mixed_error(dx_fast, dx_ref) <= tolerance<T>());

      // Parameter gradients accumulate: both start from the same random prior.
      const auto dw_prior = random_tensor<T>(ws, rng);
      const auto db_prior = random_tensor<T>(bs, rng);
      auto dw_fast = dw_prior.clone();
      auto dw_ref = dw_prior.clone();
      auto db_fast = db_prior.clone();
      auto db_ref = db_prior.clone();
      revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw_fast.data(),
                                                   with_bias ? db_fast.data() : nullptr);
      revox::cpu::reference::pointwise_conv3d_backward_weight(
          x.cview(), dy.cview(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
      CHECK(max_mixed_error(dw_fast, dw_ref) <= weight_grad_tolerance<T>(c.n * c.d * c.h * c.w));
      CHECK(max_mixed_error(db_fast, db_ref) <= tolerance<T>());
      if (!with_bias) CHECK(max_mixed_error(db_fast, db_prior) == 0.0);
      // The prior is really added to (guards against an accidental assign in both paths).
      CHECK(max_mixed_error(dw_ref, dw_prior) > 0.0);
    }
  }
}

TEMPLATE_TEST_CASE("cpu::pointwise_conv3d matches the reference where its OpenMP loops run in "
                   "parallel", "[op][pointwise_conv3d]", float, double) {
  // Large enough to pass the size thresholds of the bias fill and the bias gradient sums.
  using T = TestType;
  revox::Rng rng(17);
  const Shape5 xs{2, 3, 16, 16, 32};
  const Shape5 ys = xs.with_channels(9);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(revox::flat_shape(27), rng);
  const auto bias = random_tensor<T>(revox::flat_shape(9), rng);
  auto y_fast = filled<T>(ys, std::numeric_limits<T>::quiet_NaN());
  auto y_ref = filled<T>(ys, T(12345));
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), y_fast.view());
  revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight.data(), bias.data(),
                                                  y_ref.view());
  CHECK(max_mixed_error(y_fast, y_ref) <= tolerance<T>());
  const auto dy = random_tensor<T>(ys, rng);
  auto dw_fast = Tensor<T>::zeros(revox::flat_shape(27));
  auto dw_ref = Tensor<T>::zeros(revox::flat_shape(27));
  auto db_fast = Tensor<T>::zeros(revox::flat_shape(9));
  auto db_ref = Tensor<T>::zeros(revox::flat_shape(9));
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw_fast.data(),
                                               db_fast.data());
  revox::cpu::reference::pointwise_conv3d_backward_weight(x.cview(), dy.cview(), dw_ref.data(),
                                                          db_ref.data());
  CHECK(max_mixed_error(dw_fast, dw_ref) <= weight_grad_tolerance<T>(xs.n * xs.spatial()));
  CHECK(max_mixed_error(db_fast, db_ref) <= tolerance<T>());
}

TEST_CASE("cpu::pointwise_conv3d reference computes W x + b on a hand-checked example",
          "[op][pointwise_conv3d]") {
  // x: 2 channels, 2 voxels; W = [[1, 2], [3, 4], [5, 6]]; b = [10, 20, 30].
  Tensor<double> x(Shape5{1, 2, 1, 1, 2});
  x[0] = 1;
  x[1] = -1;  // channel 0
  x[2] = 2;
  x[3] = 0.5;  // channel 1
  const double weight[] = {1, 2, 3, 4, 5, 6};
  const double bias[] = {10, 20, 30};
  const double expected[] = {15, 10, 31, 19, 47, 28};
  Tensor<double> y_fast(Shape5{1, 3, 1, 1, 2});
  Tensor<double> y_ref(Shape5{1, 3, 1, 1, 2});
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), weight, bias, y_fast.view());
  revox::cpu::reference::pointwise_conv3d_forward(x.cview(), weight, bias, y_ref.view());
  for (index_t i = 0; i < 6; ++i) {
    CHECK(y_fast[i] == expected[i]);
    CHECK(y_ref[i] == expected[i]);
  }
}

TEST_CASE("PointwiseConv3d passes gradcheck", "[layer][pointwise_conv3d][gradcheck]") {
  struct GradCase {
    index_t cin, cout;
    Shape5 input;
  };
  const GradCase cases[] = {
      {1, 1, Shape5{1, 1, 2, 3, 4}},
      {3, 5, Shape5{2, 3, 3, 2, 3}},
      {4, 2, Shape5{1, 4, 5, 6, 7}},
      {2, 3, Shape5{2, 2, 1, 1, 1}},
  };
  for (const auto& c : cases) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(c.cin, c.cout, c.input, with_bias);
      revox::PointwiseConv3d<double> layer(c.cin, c.cout, with_bias);
      revox::Parameters<double> params(layer);
      const auto result = revox::testing::gradcheck(layer, params, c.input);
      INFO(result.report);
      REQUIRE(result.passed);
      CHECK(result.checked == c.input.numel() + revox::param_count(layer));
    }
  }
}

TEST_CASE("PointwiseConv3d rejects misuse with readable errors",
          "[layer][pointwise_conv3d][errors]") {
  using Catch::Contains;
  using Layer = revox::PointwiseConv3d<float>;
  CHECK_THROWS_AS(Layer(0, 4), revox::Error);
  CHECK_THROWS_WITH(Layer(0, 4), Contains("PointwiseConv3d: in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(4, 0),
                    Contains("PointwiseConv3d: out_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(-3, 2), Contains("in_channels must be positive, got -3"));

  Layer layer(4, 6);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 3, 2, 2, 2}),
                    Contains("PointwiseConv3d: input channels: expected 4, got 3"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 0, 2, 2}),
                    Contains("PointwiseConv3d: input extents must be positive"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{0, 4, 2, 2, 2}),
                    Contains("PointwiseConv3d: input extents must be positive"));
  CHECK(layer.output_shape(Shape5{2, 4, 3, 5, 7}) == Shape5{2, 6, 3, 5, 7});

  const revox::Cpu dev;
  auto x = Tensor<float>::zeros(Shape5{1, 4, 2, 3, 4});
  auto y = Tensor<float>::zeros(Shape5{1, 6, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y.view(), nullptr),
                    Contains("PointwiseConv3d::forward: parameters are not bound"));

  revox::Parameters<float> params(layer);
  auto y_wrong = Tensor<float>::zeros(Shape5{1, 5, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y_wrong.view(), nullptr),
                    Contains("PointwiseConv3d: output shape (N=1, C=5, D=2, H=3, W=4) does not "
                             "match the expected (N=1, C=6, D=2, H=3, W=4)"));
  auto x_wrong = Tensor<float>::zeros(Shape5{1, 3, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x_wrong.cview(), y.view(), nullptr),
                    Contains("PointwiseConv3d: input channels: expected 4, got 3"));

  revox::PointwiseConv3d<float>::Saved<revox::Cpu> empty_saved;
  auto dx = Tensor<float>::zeros(x.shape());
  CHECK_THROWS_WITH(layer.backward(dev, empty_saved, y.cview(), dx.view()),
                    Contains("PointwiseConv3d::backward: nothing saved"));

  revox::PointwiseConv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(dev, x.cview(), y.view(), &saved);
  auto dx_wrong = Tensor<float>::zeros(Shape5{1, 4, 2, 3, 5});
  CHECK_THROWS_WITH(layer.backward(dev, saved, y.cview(), dx_wrong.view()),
                    Contains("PointwiseConv3d::backward: dx shape (N=1, C=4, D=2, H=3, W=5) does "
                             "not match the input shape (N=1, C=4, D=2, H=3, W=4)"));
  CHECK_THROWS_WITH(layer.backward(dev, saved, y_wrong.cview(), dx.view()),
                    Contains("PointwiseConv3d::backward: dy shape (N=1, C=5, D=2, H=3, W=4) does "
                             "not match the output shape (N=1, C=6, D=2, H=3, W=4)"));

  // The kernels themselves refuse mismatched batch or spatial extents.
  auto y_other_size = Tensor<float>::zeros(Shape5{1, 6, 2, 3, 5});
  CHECK_THROWS_WITH(revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), params.values().data,
                                                          nullptr, y_other_size.view()),
                    Contains("must have the same batch and spatial extents"));
}

TEST_CASE("PointwiseConv3d parameters have PyTorch's names, shapes and initialisation",
          "[layer][pointwise_conv3d][params]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::PointwiseConv3d<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::PointwiseConv3d<double>>);

  for (const bool with_bias : {true, false}) {
    revox::PointwiseConv3d<float> layer(12, 5, with_bias);
    std::vector<std::string> names;
    std::vector<revox::ParamShape> shapes;
    layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
      names.push_back(name);
      shapes.push_back(p.shape);
    });
    if (with_bias) {
      REQUIRE(names == std::vector<std::string>{"weight", "bias"});
      CHECK(shapes[1] == revox::ParamShape{5});
    } else {
      REQUIRE(names == std::vector<std::string>{"weight"});
    }
    CHECK(shapes[0] == revox::ParamShape{5, 12, 1, 1, 1});
    CHECK(revox::param_count(layer) == 60 + (with_bias ? 5 : 0));
  }

  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = Cin for weight and bias.
  revox::PointwiseConv3d<double> layer(16, 64);
  revox::Parameters<double> params(layer);
  revox::Rng rng(7);
  layer.reset_parameters(rng);
  const double bound = 1.0 / std::sqrt(16.0);
  const auto& w = layer.weight();
  const auto [w_min, w_max] = std::minmax_element(w.value, w.value + w.numel());
  CHECK(*w_max <= bound);
  CHECK(*w_min >= -bound);
  CHECK(*w_max > 0.9 * bound);
  CHECK(*w_min < -0.9 * bound);
  const auto& b = layer.bias();
  const auto [b_min, b_max] = std::minmax_element(b.value, b.value + b.numel());
  CHECK(*b_max <= bound);
  CHECK(*b_min >= -bound);
  CHECK(*b_max > 0.5 * bound);
  CHECK(*b_min < -0.5 * bound);
}

TEST_CASE("PointwiseConv3d allocates no tracked memory in forward and backward",
          "[layer][pointwise_conv3d][memory]") {
  revox::PointwiseConv3d<float> layer(5, 3);
  revox::Parameters<float> params(layer);
  revox::Rng rng(3);
  layer.reset_parameters(rng);
  const auto x = random_tensor<float>(Shape5{2, 5, 3, 4, 5}, rng);
  const auto dy = random_tensor<float>(Shape5{2, 3, 3, 4, 5}, rng);
  Tensor<float> y(dy.shape());
  Tensor<float> dx(x.shape());
  auto& allocator = revox::cpu_allocator();
  const auto before = allocator.stats();
  revox::PointwiseConv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  layer.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  const auto after = allocator.stats();
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.total_allocations == before.total_allocations);
}

TEST_CASE("PointwiseConv3d backward skips dx when it is empty",
          "[layer][pointwise_conv3d]") {
  revox::PointwiseConv3d<double> layer(3, 2);
  revox::Parameters<double> params(layer);
  revox::Rng rng(11);
  layer.reset_parameters(rng);
  const auto x = random_tensor<double>(Shape5{1, 3, 2, 2, 3}, rng);
  const auto dy = random_tensor<double>(Shape5{1, 2, 2, 2, 3}, rng);
  Tensor<double> y(dy.shape());
  revox::PointwiseConv3d<double>::Saved<revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  layer.backward(revox::Cpu{}, saved, dy.cview(), revox::TensorView<double>{});

  // The parameter gradients are the same as with dx requested.
  revox::PointwiseConv3d<double> twin(3, 2);
  revox::Parameters<double> twin_params(twin);
  std::copy(params.values().data, params.values().data + params.size(),
            twin_params.values().data);
  Tensor<double> dx(x.shape());
  revox::PointwiseConv3d<double>::Saved<revox::Cpu> twin_saved;
  twin.forward(revox::Cpu{}, x.cview(), y.view(), &twin_saved);
  twin.backward(revox::Cpu{}, twin_saved, dy.cview(), dx.view());
  for (index_t i = 0; i < params.size(); ++i) {
    CHECK(params.grads()[i] == twin_params.grads()[i]);
  }
}

namespace {

template <class T>
std::vector<T> random_vector(index_t count, revox::Rng& rng) {
  std::vector<T> v(static_cast<std::size_t>(count));
  for (T& value : v) value = static_cast<T>(rng.uniform(-1.0, 1.0));
  return v;
}

// max |a - b| / (1 + |b|) over two equally long arrays.
template <class T>
double max_vector_error(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(b[i]);
    const double d = std::abs(static_cast<double>(a[i]) - e) / (1.0 + std::abs(e));
    if (!(d <= worst)) worst = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  }
  return worst;
}

// gemm_ax (assigned with and without bias, accumulated) and gemm_abt at vector width N and
// register tiles MR x NV (gemm_ax) and AMR x AKR (gemm_abt), with leading dimensions larger
// than the rows, against the reference loops.
template <class T, int N, int MR, int NV, int AMR, int AKR>
void check_gemm(index_t M, index_t K, index_t S, revox::Rng& rng) {
  namespace detail = revox::cpu::detail;
  INFO("N " << N << ", tiles " << MR << "x" << NV << " / " << AMR << "x" << AKR << ", M " << M
            << ", K " << K << ", S " << S);
  const index_t lda = K + 1, ldx = S + 3, ldy = S + 2;
  const auto A = random_vector<T>(M * lda, rng);
  const auto X = random_vector<T>(K * ldx, rng);
  const auto bias = random_vector<T>(M, rng);
  const auto prior = random_vector<T>(M * ldy, rng);
  // Sums of K (gemm_ax) or S (gemm_abt) products of magnitude <= 1.
  const double ax_tol = tolerance<T>() * std::max(1.0, std::sqrt(static_cast<double>(K)));
  const double abt_tol = weight_grad_tolerance<T>(S);
  for (const int mode : {0, 1, 2}) {  // no bias, bias, accumulate
    INFO("gemm_ax mode " << mode);
    const T* b = mode == 1 ? bias.data() : nullptr;
    std::vector<T> fast = prior;
    std::vector<T> ref = prior;
    detail::gemm_ax_impl<T, N, MR, NV>(M, K, S, A.data(), lda, X.data(), ldx, fast.data(), ldy,
                                       b, mode == 2);
    revox::cpu::reference::gemm_ax<T>(M, K, S, A.data(), lda, X.data(), ldx, ref.data(), ldy, b,
                                      mode == 2);
    CHECK(max_vector_error(fast, ref) <= ax_tol);
  }
  const index_t ldd = S + 1, ldc = K + 2;
  const auto D = random_vector<T>(M * ldd, rng);
  const auto c_prior = random_vector<T>(M * ldc, rng);
  std::vector<T> fast = c_prior;
  std::vector<T> ref = c_prior;
  detail::gemm_abt_impl<T, N, AMR, AKR>(M, K, S, D.data(), ldd, X.data(), ldx, fast.data(), ldc);
  revox::cpu::reference::gemm_abt<T>(M, K, S, D.data(), ldd, X.data(), ldx, ref.data(), ldc);
  CHECK(max_vector_error(fast, ref) <= abt_tol);
}

// Single elements; odd sizes around the register tiles; K across the K block (128); S across
// a gemm_abt chunk (2048); and S long enough (9 ranges of 16384) for gemm_abt to split the
// columns instead of the tiles.
const index_t kGemmSizes[][3] = {{1, 1, 1},   {5, 7, 9},     {13, 3, 37},
                                 {9, 130, 50}, {17, 11, 2100}, {3, 5, 140000}};

}  // namespace

TEMPLATE_TEST_CASE("cpu::gemm_ax and gemm_abt match the reference at every vector width",
                   "[op][pointwise_conv3d][gemm]", float, double) {
  using T = TestType;
  revox::Rng rng(31);
  for (const auto& size : kGemmSizes) {
    const index_t M = size[0], K = size[1], S = size[2];
    check_gemm<T, 2, 1, 1, 1, 1>(M, K, S, rng);
    check_gemm<T, 4, 4, 2, 2, 4>(M, K, S, rng);
    check_gemm<T, 8, 8, 3, 4, 4>(M, K, S, rng);
    check_gemm<T, 16, 8, 3, 4, 4>(M, K, S, rng);
    check_gemm<T, revox::cpu::simd::native_lanes<T>, revox::cpu::detail::kGemmAxRows,
               revox::cpu::detail::kGemmAxVectors, revox::cpu::detail::kGemmAbtRows,
               revox::cpu::detail::kGemmAbtCols>(M, K, S, rng);
  }
}

TEST_CASE("cpu::gemm_ax and gemm_abt results do not depend on the number of threads",
          "[op][pointwise_conv3d][gemm]") {
  revox::Rng rng(8);
  // The tile split (S = 3000) and the column split (S = 140000) of gemm_abt.
  for (const index_t S : {index_t{3000}, index_t{140000}}) {
    const index_t M = 12, K = 10;
    const auto A = random_vector<float>(M * K, rng);
    const auto X = random_vector<float>(K * S, rng);
    const auto D = random_vector<float>(M * S, rng);
    auto run = [&](int threads) {
      const int before = omp_get_max_threads();
      omp_set_num_threads(threads);
      std::vector<float> y(static_cast<std::size_t>(M * S));
      std::vector<float> c(static_cast<std::size_t>(M * K), 0.5f);
      revox::cpu::gemm_ax<float>(M, K, S, A.data(), K, X.data(), S, y.data(), S, nullptr, false);
      revox::cpu::gemm_abt<float>(M, K, S, D.data(), S, X.data(), S, c.data(), K);
      omp_set_num_threads(before);
      y.insert(y.end(), c.begin(), c.end());
      return y;
    };
    const std::vector<float> one = run(1);
    for (const int threads : {2, 3}) {
      INFO("S " << S << ", " << threads << " threads");
      const std::vector<float> many = run(threads);
      CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("cpu::pointwise_conv3d matches the definition on a benchmark shape",
          "[op][pointwise_conv3d][slow]") {
  // revox_bench's (C, D) = (32, 64), expanded to 64 channels. The fast path runs in full; the
  // definition is evaluated in double at a sample of voxels and weight-gradient entries.
  const Shape5 xs{1, 32, 64, 64, 64};
  const Shape5 ys = xs.with_channels(64);
  revox::Rng rng(3);
  const auto x = random_tensor<float>(xs, rng);
  const auto dy = random_tensor<float>(ys, rng);
  const auto weight = random_tensor<float>(revox::flat_shape(64 * 32), rng);
  const auto bias = random_tensor<float>(revox::flat_shape(64), rng);
  Tensor<float> y(ys), dx(xs);
  auto dw = Tensor<float>::zeros(revox::flat_shape(64 * 32));
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), y.view());
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx.view());
  revox::ops::PointwiseConv3dKernels<revox::Cpu>::pointwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw.data(), nullptr);
  const index_t spatial = xs.spatial();
  double y_err = 0.0, dx_err = 0.0;
  for (index_t s = 0; s < spatial; s += 257) {
    for (index_t co = 0; co < 64; ++co) {
      double sum = static_cast<double>(bias[co]);
      for (index_t ci = 0; ci < 32; ++ci) {
        sum += static_cast<double>(weight[co * 32 + ci]) *
               static_cast<double>(x[ci * spatial + s]);
      }
      y_err = std::max(y_err, std::abs(static_cast<double>(y[co * spatial + s]) - sum));
    }
    for (index_t ci = 0; ci < 32; ++ci) {
      double sum = 0.0;
      for (index_t co = 0; co < 64; ++co) {
        sum += static_cast<double>(weight[co * 32 + ci]) *
               static_cast<double>(dy[co * spatial + s]);
      }
      dx_err = std::max(dx_err, std::abs(static_cast<double>(dx[ci * spatial + s]) - sum));
    }
  }
  CHECK(y_err <= 1e-4);
  CHECK(dx_err <= 1e-4);
  double dw_err = 0.0;
  for (index_t entry = 0; entry < 64 * 32; entry += 97) {
    const index_t co = entry / 32, ci = entry % 32;
    double sum = 0.0;
    for (index_t s = 0; s < spatial; ++s) {
      sum += static_cast<double>(dy[co * spatial + s]) * static_cast<double>(x[ci * spatial + s]);
    }
    dw_err = std::max(dw_err,
                      std::abs(static_cast<double>(dw[entry]) - sum) / (1.0 + std::abs(sum)));
  }
  CHECK(dw_err <= 1e-4);
}

namespace {

// The exact values a bfloat16 kernel computes with, in double: activations as stored, float
// parameters rounded to bfloat16 (round_params) or not; `magnitude` takes absolute values,
// so that a reference run on them gives sum |w x| per output.
template <class T>
Tensor<double> exact_double(const Tensor<T>& t, bool round_params, bool magnitude = false) {
  Tensor<double> out(t.shape());
  for (index_t i = 0; i < t.numel(); ++i) {
    float v = static_cast<float>(t[i]);
    if (round_params) v = static_cast<float>(revox::bfloat16(v));
    out[i] = magnitude ? std::abs(static_cast<double>(v)) : static_cast<double>(v);
  }
  return out;
}

// Elements of `got` farther from `exact` than terms * 2^-24 * magnitude (float32 summation of
// `terms` exact products) plus, for a bfloat16 result, its rounding (2^-8 of the value).
template <class T>
index_t outside_bf16_bound(const Tensor<T>& got, const Tensor<double>& exact,
                           const Tensor<double>& magnitude, double terms) {
  index_t bad = 0;
  for (index_t i = 0; i < got.numel(); ++i) {
    double tol = (terms + 2) * 0x1p-24 * magnitude[i];
    tol += (std::is_same_v<T, float> ? 0x1p-24 : 0x1p-8) * (std::abs(exact[i]) + tol);
    bad += !(std::abs(static_cast<double>(static_cast<float>(got[i])) - exact[i]) <= tol);
  }
  return bad;
}

}  // namespace

TEST_CASE("cpu::pointwise_conv3d in bfloat16 matches the double reference within the bounds of "
          "its rounding", "[op][pointwise_conv3d][bfloat16]") {
  // Activations bfloat16, parameters and their gradients float (param_t), on cpu_path(); the
  // GEMMs' paths one by one are in test_gemm_bf16.cpp, and ctest runs this once more with
  // REVOX_CPU_PATH=portable.
  using revox::bfloat16;
  using Ops = revox::ops::PointwiseConv3dKernels<revox::Cpu>;
  namespace ref = revox::cpu::reference;
  INFO("path " << revox::cpu_path_name(revox::cpu_path()));
  revox::Rng rng(7);
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  cases.push_back({2, 24, 40, 9, 10, 11});  // many 64-column strips, an odd tail
  for (const Case& c : cases) {
    CAPTURE(c.n, c.cin, c.cout, c.d, c.h, c.w);
    const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
    const Shape5 ys = xs.with_channels(c.cout);
    const auto x = random_tensor<bfloat16>(xs, rng);
    const auto dy = random_tensor<bfloat16>(ys, rng);
    const auto weight = random_tensor<float>(revox::flat_shape(c.cout * c.cin), rng);
    const auto bias = random_tensor<float>(revox::flat_shape(c.cout), rng);

    Tensor<bfloat16> y(ys), dx(xs);
    Ops::pointwise_conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), y.view());
    Ops::pointwise_conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx.view());
    auto dw = random_tensor<float>(revox::flat_shape(c.cout * c.cin), rng);
    auto db = random_tensor<float>(revox::flat_shape(c.cout), rng);
    const auto dw_prior = dw.clone();
    const auto db_prior = db.clone();
    Ops::pointwise_conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw.data(),
                                          db.data());

    const auto xd = exact_double(x, false), xa = exact_double(x, false, true);
    const auto dyd = exact_double(dy, false), dya = exact_double(dy, false, true);
    const auto wd = exact_double(weight, true), wa = exact_double(weight, true, true);
    const auto bd = exact_double(bias, false), ba = exact_double(bias, false, true);
    Tensor<double> y_ref(ys), y_mag(ys), dx_ref(xs), dx_mag(xs);
    ref::pointwise_conv3d_forward(xd.cview(), wd.data(), bd.data(), y_ref.view());
    ref::pointwise_conv3d_forward(xa.cview(), wa.data(), ba.data(), y_mag.view());
    ref::pointwise_conv3d_backward_data(dyd.cview(), wd.data(), dx_ref.view());
    ref::pointwise_conv3d_backward_data(dya.cview(), wa.data(), dx_mag.view());
    CHECK(outside_bf16_bound(y, y_ref, y_mag, static_cast<double>(c.cin)) == 0);
    CHECK(outside_bf16_bound(dx, dx_ref, dx_mag, static_cast<double>(c.cout)) == 0);

    // Gradients accumulate onto the prior; x and dy enter exactly (no parameter rounding).
    auto dw_ref = exact_double(dw_prior, false), dw_mag = exact_double(dw_prior, false, true);
    auto db_ref = exact_double(db_prior, false), db_mag = exact_double(db_prior, false, true);
    ref::pointwise_conv3d_backward_weight(xd.cview(), dyd.cview(), dw_ref.data(), db_ref.data());
    ref::pointwise_conv3d_backward_weight(xa.cview(), dya.cview(), dw_mag.data(), db_mag.data());
    const double voxels = static_cast<double>(xs.n * xs.spatial());
    CHECK(outside_bf16_bound(dw, dw_ref, dw_mag, voxels) == 0);
    CHECK(outside_bf16_bound(db, db_ref, db_mag, voxels) == 0);
  }
}

TEST_CASE("PointwiseConv3d<bfloat16> keeps float parameters and follows the float32 layer "
          "within bfloat16's rounding", "[layer][pointwise_conv3d][bfloat16]") {
  using revox::bfloat16;
  const index_t cin = 12, cout = 20;
  revox::PointwiseConv3d<bfloat16> lb(cin, cout, true);
  revox::PointwiseConv3d<float> lf(cin, cout, true);
  revox::Parameters<float> pb(lb);  // float master weights for the bfloat16 layer
  revox::Parameters<float> pf(lf);
  REQUIRE(pb.entries().size() == 2);
  CHECK(pb.entries()[0].name == "weight");
  CHECK(pb.entries()[1].name == "bias");
  revox::Rng rb(3), rf(3);
  lb.reset_parameters(rb);
  lf.reset_parameters(rf);
  for (index_t i = 0; i < pb.values().numel(); ++i) REQUIRE(pb.values()[i] == pf.values()[i]);

  const Shape5 xs{2, cin, 5, 6, 7};
  const Shape5 ys = xs.with_channels(cout);
  revox::Rng rng(8);
  const auto x = random_tensor<bfloat16>(xs, rng);
  const auto dy = random_tensor<bfloat16>(ys, rng);
  Tensor<float> xf(xs), dyf(ys);
  for (index_t i = 0; i < xs.numel(); ++i) xf[i] = static_cast<float>(x[i]);
  for (index_t i = 0; i < ys.numel(); ++i) dyf[i] = static_cast<float>(dy[i]);

  const revox::Cpu dev;
  Tensor<bfloat16> yb(ys), dxb(xs);
  Tensor<float> yf(ys), dxf(xs);
  revox::PointwiseConv3d<bfloat16>::Saved<revox::Cpu> sb;
  revox::PointwiseConv3d<float>::Saved<revox::Cpu> sf;
  lb.forward(dev, x.cview(), yb.view(), &sb);
  lf.forward(dev, xf.cview(), yf.view(), &sf);
  revox::backward(lb, dev, sb, dy.cview(), dxb.view());
  revox::backward(lf, dev, sf, dyf.cview(), dxf.view());

  // The float32 layer sees the same (bfloat16-exact) activations; the bfloat16 one also
  // rounds the weight (2^-8 of each product at most) and its outputs (2^-8 of each value).
  // The magnitudes: the float layer run on |x|, |W|, |b| (and |dy|).
  revox::PointwiseConv3d<float> la(cin, cout, true);
  revox::Parameters<float> pa(la);
  for (index_t i = 0; i < pa.values().numel(); ++i) pa.values()[i] = std::abs(pf.values()[i]);
  Tensor<float> xa(xs), dya(ys), ya(ys), dxa(xs);
  for (index_t i = 0; i < xs.numel(); ++i) xa[i] = std::abs(xf[i]);
  for (index_t i = 0; i < ys.numel(); ++i) dya[i] = std::abs(dyf[i]);
  revox::PointwiseConv3d<float>::Saved<revox::Cpu> sa;
  la.forward(dev, xa.cview(), ya.view(), &sa);
  revox::backward(la, dev, sa, dya.cview(), dxa.view());
  const auto outside = [](const auto& got, const Tensor<float>& want, const Tensor<float>& mag,
                          double per_magnitude, double rounding) {
    index_t bad = 0;
    for (index_t i = 0; i < want.numel(); ++i) {
      const double tol = per_magnitude * static_cast<double>(mag[i]) +
                         rounding * std::abs(static_cast<double>(want[i]));
      bad += !(std::abs(static_cast<double>(static_cast<float>(got[i])) -
                        static_cast<double>(want[i])) <= tol);
    }
    return bad;
  };
  // Per magnitude: the weight's rounding (2^-8) and both float sums ((K + 2) 2^-24 each).
  const double terms_y = static_cast<double>(cin), terms_dx = static_cast<double>(cout);
  CHECK(outside(yb, yf, ya, 0x1p-8 + 2 * (terms_y + 2) * 0x1p-24, 0x1p-8) == 0);
  CHECK(outside(dxb, dxf, dxa, 0x1p-8 + 2 * (terms_dx + 2) * 0x1p-24, 0x1p-8) == 0);
  // Weight and bias gradients: x and dy are exact in both, so only the float sums over the
  // N * D * H * W voxels differ (and each result's own float rounding).
  Tensor<float> gb(revox::flat_shape(pb.grads().numel())), gf(gb.shape()), ga(gb.shape());
  for (index_t i = 0; i < gb.numel(); ++i) {
    gb[i] = pb.grads()[i];
    gf[i] = pf.grads()[i];
    ga[i] = pa.grads()[i];
  }
  const double voxels = static_cast<double>(xs.n * xs.spatial());
  CHECK(outside(gb, gf, ga, 2 * (voxels + 2) * 0x1p-24, 0x1p-23) == 0);
  // Not trivially equal: the weight rounding shows in y.
  double diff = 0.0;
  for (index_t i = 0; i < ys.numel(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(static_cast<float>(yb[i])) - yf[i]));
  }
  CHECK(diff > 0.0);
}

#else  // REVOX_GPU_TESTS

// GPU parity of the pointwise 1x1x1 convolution (ops::pointwise_conv3d_*) through the ops::
// dispatchers against the plain CPU reference, float and double (tests/cuda/conv_parity.cuh:
// shared checks, tolerances). Exits 77 (skipped) without a GPU. The same kernel bodies run on
// the CPU in tests/test_kernel_bodies_pointwise_conv3d.cpp.
#include "cuda/conv_parity.cuh"
#include "cuda/cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_pointwise_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    conv_parity<T>(dev, odd, 5, 0, with_bias, 0, rng);
  }
  conv_parity<T>(dev, larger, 24, 0, true, 0, rng);
}

}  // namespace

int main() {
  return run_with_context("cuda.test_pointwise_conv3d", [](const revox::Cuda& dev, auto t) {
    all_pointwise_parity<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
