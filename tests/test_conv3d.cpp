// Conv3d and its CPU kernels: the direct path and the im2col + GEMM path (chunked) against
// the plain reference and across thread counts, gradients against finite differences, misuse
// errors, parameters, and the scratch memory the tracking allocator sees.
//
// Two programs in one file: the CPU tests (Catch2, in revox_tests) and, in the
// REVOX_GPU_TESTS part at the end, the GPU tests, which tests/cuda/CMakeLists.txt compiles
// with nvcc as cuda.test_conv3d (exit 77, skipped, without a GPU).
#ifndef REVOX_GPU_TESTS

#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/ops/cpu/conv3d.hpp"
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

struct Case {
  index_t n, cin, cout, d, h, w;
};

// Sizes 1 to 7 per axis (odd ones included), channel counts 1 to 7, and one wider case.
const Case kCases[] = {
    {1, 1, 1, 1, 1, 1}, {2, 3, 5, 5, 6, 7}, {1, 7, 4, 2, 3, 4}, {2, 2, 7, 3, 2, 3},
    {1, 4, 6, 1, 1, 1}, {2, 5, 1, 2, 3, 2}, {1, 20, 19, 3, 4, 5},
};

// Runs forward, backward_data and backward_weight through the fast path (with the given
// scratch budget) and the reference on random data, outputs poisoned differently, and
// checks that they agree.
template <class T>
void compare_with_reference(const Case& c, int kernel_size, bool with_bias,
                            index_t scratch_bytes, revox::Rng& rng) {
  CAPTURE(c.n, c.cin, c.cout, c.d, c.h, c.w, kernel_size, with_bias, scratch_bytes);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const index_t k = kernel_size;
  const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
  const Shape5 ys = xs.with_channels(c.cout);
  const Shape5 ws = revox::flat_shape(c.cout * c.cin * k * k * k);
  const Shape5 bs = revox::flat_shape(c.cout);
  const auto x = random_tensor<T>(xs, rng);
  const auto weight = random_tensor<T>(ws, rng);
  const auto bias = random_tensor<T>(bs, rng);
  const T* bias_ptr = with_bias ? bias.data() : nullptr;

  auto y_fast = Tensor<T>::full(ys, nan);
  auto y_ref = Tensor<T>::full(ys, T(12345));
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias_ptr, y_fast.view(), kernel_size,
                             scratch_bytes);
  revox::cpu::reference::conv3d_forward(x.cview(), weight.data(), bias_ptr, y_ref.view(),
                                        kernel_size);
  CHECK(max_mixed_error(y_fast, y_ref) <= tolerance<T>());

  const auto dy = random_tensor<T>(ys, rng);
  auto dx_fast = Tensor<T>::full(xs, nan);
  auto dx_ref = Tensor<T>::full(xs, T(-777));
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx_fast.view(), kernel_size,
                                   scratch_bytes);
  revox::cpu::reference::conv3d_backward_data(dy.cview(), weight.data(), dx_ref.view(),
                                              kernel_size);
  CHECK(max_mixed_error(dx_fast, dx_ref) <= tolerance<T>());

  // Parameter gradients accumulate: both start from the same random prior.
  const auto dw_prior = random_tensor<T>(ws, rng);
  const auto db_prior = random_tensor<T>(bs, rng);
  auto dw_fast = dw_prior.clone();
  auto dw_ref = dw_prior.clone();
  auto db_fast = db_prior.clone();
  auto db_ref = db_prior.clone();
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), dw_fast.data(),
                                     with_bias ? db_fast.data() : nullptr, kernel_size,
                                     scratch_bytes);
  revox::cpu::reference::conv3d_backward_weight(x.cview(), dy.cview(), dw_ref.data(),
                                                with_bias ? db_ref.data() : nullptr, kernel_size);
  CHECK(max_mixed_error(dw_fast, dw_ref) <= weight_grad_tolerance<T>(c.n * c.d * c.h * c.w));
  CHECK(max_mixed_error(db_fast, db_ref) <= tolerance<T>());
  if (!with_bias) CHECK(max_mixed_error(db_fast, db_prior) == 0.0);
}

// Bytes of one output row's columns: Cin * k^3 * W elements.
template <class T>
index_t row_bytes(const Shape5& x, int kernel_size) {
  const index_t k = kernel_size;
  return x.c * k * k * k * x.w * static_cast<index_t>(sizeof(T));
}

}  // namespace

TEMPLATE_TEST_CASE("cpu::conv3d fast path matches the reference", "[op][conv3d]", float,
                   double) {
  revox::Rng rng(42);
  for (const Case& c : kCases) {
    for (const int kernel_size : {1, 3}) {
      for (const bool with_bias : {true, false}) {
        compare_with_reference<TestType>(c, kernel_size, with_bias, revox::cpu::kConv3dScratchBytes,
                                         rng);
      }
    }
  }
}

TEMPLATE_TEST_CASE("cpu::conv3d gives the same result in several row chunks",
                   "[op][conv3d][chunks]", float, double) {
  using T = TestType;
  revox::Rng rng(5);
  const Case c{2, 3, 4, 5, 6, 7};
  const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
  const index_t row = row_bytes<T>(xs, 3);
  struct Budget {
    index_t bytes, chunks, rows_per_chunk;
  };
  // 30 output rows (D * H); budgets of 1 row, 4 rows (balanced: 8 chunks of 4, the last of 2),
  // 7 rows (balanced: 5 chunks of 6), and less than one row (still one row per chunk).
  const Budget budgets[] = {{row, 30, 1}, {4 * row, 8, 4}, {7 * row + row / 2, 5, 6},
                            {1, 30, 1}, {revox::cpu::kConv3dScratchBytes, 1, 30}};
  for (const auto& budget : budgets) {
    CAPTURE(budget.bytes);
    const auto chunking =
        revox::cpu::conv3d_chunking(xs, 3, static_cast<index_t>(sizeof(T)), budget.bytes);
    CHECK(chunking.chunks == budget.chunks);
    CHECK(chunking.rows_per_chunk == budget.rows_per_chunk);
    CHECK(chunking.scratch_elements == xs.c * 27 * budget.rows_per_chunk * xs.w);
    for (const bool with_bias : {true, false}) {
      compare_with_reference<T>(c, 3, with_bias, budget.bytes, rng);
    }
  }
}

TEST_CASE("cpu::conv3d matches the reference where its OpenMP loops run in parallel",
          "[op][conv3d]") {
  // Large enough to pass the size thresholds of im2col, col2im, the bias fill and the bias
  // gradient sums (the shapes above are all below them), in one chunk and in several.
  revox::Rng rng(17);
  const Case c{1, 2, 9, 16, 16, 32};
  const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
  compare_with_reference<float>(c, 3, true, revox::cpu::kConv3dScratchBytes, rng);
  compare_with_reference<float>(c, 3, true, 40 * row_bytes<float>(xs, 3), rng);
}

TEST_CASE("cpu::conv3d_chunking bounds the column buffer", "[op][conv3d][chunks]") {
  // A 64-channel 32x64x64 input: 2048 rows of 64 * 27 * 64 floats (442 KB) each.
  const Shape5 x{1, 64, 32, 64, 64};
  const auto chunking = revox::cpu::conv3d_chunking(x, 3, 4);
  CHECK(chunking.chunks > 1);
  CHECK(chunking.chunks * chunking.rows_per_chunk >= 2048);
  CHECK((chunking.chunks - 1) * chunking.rows_per_chunk < 2048);
  CHECK(chunking.scratch_elements * 4 <= revox::cpu::kConv3dScratchBytes);
  CHECK(chunking.scratch_elements * 4 > revox::cpu::kConv3dScratchBytes / 2);
  // One row larger than the budget still runs, one row at a time.
  const Shape5 wide{1, 480, 4, 4, 256};
  const auto single = revox::cpu::conv3d_chunking(wide, 3, 8);
  CHECK(single.rows_per_chunk == 1);
  CHECK(single.chunks == 16);
  CHECK(single.scratch_elements == 480 * 27 * 256);
  // An empty input has no chunks.
  CHECK(revox::cpu::conv3d_chunking(Shape5{1, 2, 0, 3, 3}, 3, 4).chunks == 0);
}

TEST_CASE("cpu::conv3d is a zero-padded cross-correlation", "[op][conv3d]") {
  // A single tap W[0, 0, kd=0, kh=1, kw=2] = 1 gives y[d, h, w] = x[d - 1, h, w + 1] (0 outside).
  const Shape5 s{1, 1, 3, 4, 5};
  revox::Rng rng(9);
  const auto x = random_tensor<double>(s, rng);
  std::vector<double> weight(27, 0.0);
  weight[(0 * 3 + 1) * 3 + 2] = 1.0;
  Tensor<double> y_fast(s);
  Tensor<double> y_ref(s);
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), nullptr, y_fast.view(), 3);
  revox::cpu::reference::conv3d_forward(x.cview(), weight.data(), nullptr, y_ref.view(), 3);
  for (index_t d = 0; d < s.d; ++d)
    for (index_t h = 0; h < s.h; ++h)
      for (index_t w = 0; w < s.w; ++w) {
        const double expected = (d >= 1 && w + 1 < s.w) ? x.view().at(0, 0, d - 1, h, w + 1) : 0.0;
        CAPTURE(d, h, w);
        CHECK(y_fast.view().at(0, 0, d, h, w) == expected);
        CHECK(y_ref.view().at(0, 0, d, h, w) == expected);
      }

  // All-ones weights on an all-ones input count the in-bounds taps times Cin, plus the bias.
  const Shape5 ones_shape{1, 2, 3, 3, 4};
  const auto ones = Tensor<double>::full(ones_shape, 1.0);
  const std::vector<double> ones_weight(2 * 27, 1.0);
  const double bias = 0.5;
  Tensor<double> y(ones_shape.with_channels(1));
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, ones.cview(), ones_weight.data(), &bias, y.view(), 3);
  auto taps = [](index_t i, index_t extent) { return 3 - (i == 0) - (i == extent - 1); };
  for (index_t d = 0; d < 3; ++d)
    for (index_t h = 0; h < 3; ++h)
      for (index_t w = 0; w < 4; ++w) {
        CAPTURE(d, h, w);
        CHECK(y.view().at(0, 0, d, h, w) ==
              static_cast<double>(2 * taps(d, 3) * taps(h, 3) * taps(w, 4)) + bias);
      }
}

TEST_CASE("Conv3d with kernel_size 1 equals PointwiseConv3d", "[layer][conv3d]") {
  revox::Conv3d<float> conv(5, 3, 1);
  revox::PointwiseConv3d<float> pointwise(5, 3);
  revox::Parameters<float> conv_params(conv);
  revox::Parameters<float> pointwise_params(pointwise);
  revox::Rng rng(21);
  conv.reset_parameters(rng);
  REQUIRE(conv_params.size() == pointwise_params.size());
  std::copy(conv_params.values().data, conv_params.values().data + conv_params.size(),
            pointwise_params.values().data);
  const auto x = random_tensor<float>(Shape5{2, 5, 3, 4, 5}, rng);
  const auto dy = random_tensor<float>(Shape5{2, 3, 3, 4, 5}, rng);
  Tensor<float> y_conv(dy.shape());
  Tensor<float> y_pointwise(dy.shape());
  Tensor<float> dx_conv(x.shape());
  Tensor<float> dx_pointwise(x.shape());
  const revox::Cpu dev;
  revox::Conv3d<float>::Saved<revox::Cpu> conv_saved;
  revox::PointwiseConv3d<float>::Saved<revox::Cpu> pointwise_saved;
  conv.forward(dev, x.cview(), y_conv.view(), &conv_saved);
  pointwise.forward(dev, x.cview(), y_pointwise.view(), &pointwise_saved);
  conv.backward(dev, conv_saved, dy.cview(), dx_conv.view());
  pointwise.backward(dev, pointwise_saved, dy.cview(), dx_pointwise.view());
  CHECK(max_mixed_error(y_conv, y_pointwise) == 0.0);
  CHECK(max_mixed_error(dx_conv, dx_pointwise) == 0.0);
  for (index_t i = 0; i < conv_params.size(); ++i) {
    CHECK(conv_params.grads()[i] == pointwise_params.grads()[i]);
  }
}

TEST_CASE("Conv3d passes gradcheck", "[layer][conv3d][gradcheck]") {
  struct GradCase {
    index_t cin, cout;
    int kernel_size;
    Shape5 input;
    index_t max_checks;  // 0: every entry
  };
  const GradCase cases[] = {
      {1, 1, 3, Shape5{1, 1, 3, 3, 3}, 0},  {2, 3, 3, Shape5{1, 2, 2, 3, 4}, 0},
      {3, 2, 3, Shape5{2, 3, 3, 2, 3}, 0},  {1, 2, 3, Shape5{2, 1, 1, 1, 1}, 0},
      {2, 2, 3, Shape5{1, 2, 5, 6, 7}, 96}, {3, 4, 1, Shape5{2, 3, 2, 3, 4}, 0},
      {1, 1, 1, Shape5{1, 1, 1, 1, 1}, 0},  {5, 2, 1, Shape5{1, 5, 3, 2, 3}, 0},
  };
  for (const auto& c : cases) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(c.cin, c.cout, c.kernel_size, c.input, with_bias);
      revox::Conv3d<double> layer(c.cin, c.cout, c.kernel_size, with_bias);
      revox::Parameters<double> params(layer);
      revox::testing::GradcheckOptions options;
      options.max_checks_per_tensor = c.max_checks;
      const auto result = revox::testing::gradcheck(layer, params, c.input, options);
      INFO(result.report);
      REQUIRE(result.passed);
      if (c.max_checks == 0) {
        CHECK(result.checked == c.input.numel() + revox::param_count(layer));
      }
    }
  }
}

TEST_CASE("Conv3d releases its scratch memory and keeps it to one column buffer",
          "[layer][conv3d][memory]") {
  revox::Conv3d<float> layer(4, 5, 3);
  revox::Parameters<float> params(layer);
  revox::Rng rng(13);
  layer.reset_parameters(rng);
  const auto x = random_tensor<float>(Shape5{2, 4, 5, 6, 7}, rng);
  const auto dy = random_tensor<float>(Shape5{2, 5, 5, 6, 7}, rng);
  Tensor<float> y(dy.shape());
  Tensor<float> dx(x.shape());
  const auto chunking = revox::cpu::conv3d_chunking(x.shape(), 3, 4);
  const auto column_bytes = static_cast<std::size_t>(chunking.scratch_elements) * sizeof(float);
  REQUIRE(column_bytes > 0);

  auto& allocator = revox::cpu_allocator();
  const auto before = allocator.stats();
  allocator.reset_peak();
  revox::Conv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  CHECK(allocator.current_bytes() == before.current_bytes);
  layer.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  const auto after = allocator.stats();
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.live_allocations == before.live_allocations);
  CHECK(after.peak_bytes == before.current_bytes + column_bytes);
  // One buffer for the forward, one each for backward data and backward weight.
  CHECK(after.total_allocations == before.total_allocations + 3);

  // With a small budget the buffer shrinks to the chunk.
  const index_t budget = row_bytes<float>(x.shape(), 3) * 2;
  allocator.reset_peak();
  revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, x.cview(), params.values().data, nullptr, y.view(), 3, budget);
  CHECK(allocator.current_bytes() == before.current_bytes);
  CHECK(allocator.peak_bytes() == before.current_bytes + static_cast<std::size_t>(budget));
}

TEST_CASE("Conv3d rejects misuse with readable errors", "[layer][conv3d][errors]") {
  using Catch::Contains;
  using Layer = revox::Conv3d<float>;
  CHECK_THROWS_AS(Layer(4, 8, 2), revox::Error);
  CHECK_THROWS_WITH(Layer(4, 8, 2), Contains("Conv3d: kernel_size must be 1 or 3, got 2"));
  CHECK_THROWS_WITH(Layer(4, 8, 5), Contains("Conv3d: kernel_size must be 1 or 3, got 5"));
  CHECK_THROWS_WITH(Layer(4, 8, 0), Contains("Conv3d: kernel_size must be 1 or 3, got 0"));
  CHECK_THROWS_WITH(Layer(0, 8, 3), Contains("Conv3d: in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(4, 0, 3), Contains("Conv3d: out_channels must be positive, got 0"));
  CHECK_THROWS_WITH(Layer(4, -2, 1), Contains("Conv3d: out_channels must be positive, got -2"));

  Layer layer(4, 6, 3);
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 3, 2, 2, 2}),
                    Contains("Conv3d: input channels: expected 4, got 3"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 2, 0, 2}),
                    Contains("Conv3d: input extents must be positive"));
  CHECK_THROWS_WITH(layer.output_shape(Shape5{1, 4, 2, 2, -1}),
                    Contains("Conv3d: input extents must be positive"));
  CHECK(layer.output_shape(Shape5{2, 4, 3, 5, 7}) == Shape5{2, 6, 3, 5, 7});

  const revox::Cpu dev;
  auto x = Tensor<float>::zeros(Shape5{1, 4, 2, 3, 4});
  auto y = Tensor<float>::zeros(Shape5{1, 6, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y.view(), nullptr),
                    Contains("Conv3d::forward: parameters are not bound"));

  revox::Parameters<float> params(layer);
  auto y_wrong = Tensor<float>::zeros(Shape5{1, 6, 3, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x.cview(), y_wrong.view(), nullptr),
                    Contains("Conv3d: output shape (N=1, C=6, D=3, H=3, W=4) does not match the "
                             "expected (N=1, C=6, D=2, H=3, W=4)"));
  auto x_wrong = Tensor<float>::zeros(Shape5{1, 5, 2, 3, 4});
  CHECK_THROWS_WITH(layer.forward(dev, x_wrong.cview(), y.view(), nullptr),
                    Contains("Conv3d: input channels: expected 4, got 5"));

  revox::Conv3d<float>::Saved<revox::Cpu> empty_saved;
  auto dx = Tensor<float>::zeros(x.shape());
  CHECK_THROWS_WITH(layer.backward(dev, empty_saved, y.cview(), dx.view()),
                    Contains("Conv3d::backward: nothing saved"));

  revox::Conv3d<float>::Saved<revox::Cpu> saved;
  layer.forward(dev, x.cview(), y.view(), &saved);
  auto dx_wrong = Tensor<float>::zeros(Shape5{2, 4, 2, 3, 4});
  CHECK_THROWS_WITH(layer.backward(dev, saved, y.cview(), dx_wrong.view()),
                    Contains("Conv3d::backward: dx shape (N=2, C=4, D=2, H=3, W=4) does not "
                             "match the input shape (N=1, C=4, D=2, H=3, W=4)"));
  auto dy_wrong = Tensor<float>::zeros(Shape5{1, 5, 2, 3, 4});
  CHECK_THROWS_WITH(layer.backward(dev, saved, dy_wrong.cview(), dx.view()),
                    Contains("Conv3d::backward: dy shape (N=1, C=5, D=2, H=3, W=4) does not "
                             "match the output shape (N=1, C=6, D=2, H=3, W=4)"));

  // The kernels themselves refuse even kernel sizes and mismatched extents.
  const float* weight = params.values().data;
  CHECK_THROWS_WITH(revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, x.cview(), weight, nullptr, y.view(), 2),
                    Contains("cpu::conv3d_forward: kernel_size must be odd and positive"));
  CHECK_THROWS_WITH(
      revox::cpu::reference::conv3d_backward_data(y.cview(), weight, dx.view(), 4),
      Contains("kernel_size must be odd and positive ('same' padding), got 4"));
  CHECK_THROWS_WITH(revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_data(revox::Cpu{}, y.cview(), weight, dx_wrong.view(), 3),
                    Contains("cpu::conv3d_backward_data: dy (N=1, C=6, D=2, H=3, W=4) and dx "
                             "(N=2, C=4, D=2, H=3, W=4) must have the same batch and spatial "
                             "extents"));
}

TEST_CASE("Conv3d parameters have PyTorch's names, shapes and initialisation",
          "[layer][conv3d][params]") {
  STATIC_REQUIRE(revox::is_layer_v<revox::Conv3d<float>>);
  STATIC_REQUIRE(revox::is_layer_v<revox::Conv3d<double>>);

  for (const int kernel_size : {1, 3}) {
    for (const bool with_bias : {true, false}) {
      CAPTURE(kernel_size, with_bias);
      revox::Conv3d<float> layer(4, 8, kernel_size, with_bias);
      CHECK(layer.padding() == kernel_size / 2);
      std::vector<std::string> names;
      std::vector<revox::ParamShape> shapes;
      layer.visit_params([&](const std::string& name, revox::Param<float>& p) {
        names.push_back(name);
        shapes.push_back(p.shape);
      });
      const index_t k = kernel_size;
      if (with_bias) {
        REQUIRE(names == std::vector<std::string>{"weight", "bias"});
        CHECK(shapes[1] == revox::ParamShape{8});
      } else {
        REQUIRE(names == std::vector<std::string>{"weight"});
      }
      CHECK(shapes[0] == revox::ParamShape{8, 4, k, k, k});
      CHECK(revox::param_count(layer) == 32 * k * k * k + (with_bias ? 8 : 0));
    }
  }

  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = Cin * 27 for weight and bias.
  revox::Conv3d<double> layer(4, 32, 3);
  revox::Parameters<double> params(layer);
  revox::Rng rng(7);
  layer.reset_parameters(rng);
  const double bound = 1.0 / std::sqrt(4.0 * 27.0);
  const auto& w = layer.weight();
  const auto [w_min, w_max] = std::minmax_element(w.value, w.value + w.numel());
  CHECK(*w_max <= bound);
  CHECK(*w_min >= -bound);
  CHECK(*w_max > 0.95 * bound);
  CHECK(*w_min < -0.95 * bound);
  const auto& b = layer.bias();
  const auto [b_min, b_max] = std::minmax_element(b.value, b.value + b.numel());
  CHECK(*b_max <= bound);
  CHECK(*b_min >= -bound);
  CHECK(*b_max > 0.5 * bound);
  CHECK(*b_min < -0.5 * bound);
}

TEMPLATE_TEST_CASE("cpu::conv3d backward data as the flipped forward matches the reference",
                   "[op][conv3d][chunks]", float, double) {
  // Cout <= Cin takes the flipped-kernel forward, Cout > Cin the col2im path: both, square
  // (the U-Net's ConvBlocks) and not, with budgets of one row, a few rows and the default.
  using T = TestType;
  revox::Rng rng(29);
  const Case cases[] = {{1, 3, 3, 5, 7, 9}, {2, 5, 3, 3, 4, 5}, {1, 3, 5, 4, 3, 6}};
  for (const Case& c : cases) {
    const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
    for (const index_t budget : {row_bytes<T>(xs, 3), 3 * row_bytes<T>(xs, 3) + 1,
                                 revox::cpu::kConv3dScratchBytes}) {
      compare_with_reference<T>(c, 3, false, budget, rng);
    }
  }
}

TEST_CASE("cpu::conv3d backward data keeps its scratch within the input-sized column buffer",
          "[op][conv3d][memory]") {
  revox::Rng rng(30);
  for (const index_t cout : {index_t{2}, index_t{4}}) {  // flipped forward, then square
    const Shape5 xs{1, 4, 5, 6, 7};
    const Shape5 ys = xs.with_channels(cout);
    const auto dy = random_tensor<float>(ys, rng);
    const auto weight = random_tensor<float>(revox::flat_shape(cout * 4 * 27), rng);
    Tensor<float> dx(xs);
    for (const index_t budget : {row_bytes<float>(xs, 3) * 2, revox::cpu::kConv3dScratchBytes}) {
      CAPTURE(cout, budget);
      const auto chunking = revox::cpu::conv3d_chunking(xs, 3, 4, budget);
      auto& allocator = revox::cpu_allocator();
      const auto before = allocator.current_bytes();
      allocator.reset_peak();
      revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), dx.view(), 3, budget);
      CHECK(allocator.current_bytes() == before);
      CHECK(allocator.peak_bytes() <=
            before + static_cast<std::size_t>(chunking.scratch_elements) * sizeof(float));
    }
  }
}

TEMPLATE_TEST_CASE("cpu::conv3d direct forward matches the reference", "[op][conv3d][direct]",
                   float, double) {
  // Widths that are whole vectors of every instruction set (the forward's direct path, and the
  // backward data through it when Cout <= Cin): channel counts around the register tile's
  // height (6 with AVX-512, 3 otherwise), Cin != Cout both ways, rows of one to several
  // column tiles, batch 2, and kernel sizes 1, 3 and 5.
  using T = TestType;
  revox::Rng rng(31);
  const Case cases[] = {{2, 3, 3, 3, 4, 16},  {1, 7, 13, 4, 3, 32}, {1, 13, 6, 2, 5, 48},
                        {2, 1, 7, 3, 3, 80},  {1, 8, 12, 5, 2, 64}, {1, 5, 2, 1, 1, 16},
                        {1, 6, 6, 2, 3, 112}};
  for (const Case& c : cases) {
    REQUIRE(revox::cpu::conv3d_detail::direct_applies<T>(Shape5{c.n, c.cin, c.d, c.h, c.w}, 3));
    for (const int kernel_size : {1, 3, 5}) {
      compare_with_reference<T>(c, kernel_size, kernel_size != 5, revox::cpu::kConv3dScratchBytes,
                                rng);
    }
  }
  // A width that is not whole vectors takes the column-buffer path.
  CHECK_FALSE(revox::cpu::conv3d_detail::direct_applies<T>(Shape5{1, 2, 3, 3, 17}, 3));
}

TEST_CASE("cpu::conv3d direct path is bitwise identical at 1 and 3 threads",
          "[op][conv3d][direct]") {
  // Two ranges per depth plane for the weight gradient (H * W above kDirectRangeVoxels), a
  // partial output-channel tile, and batch 2; also checked against the reference.
  revox::Rng rng(37);
  const Case c{2, 3, 7, 2, 160, 64};
  const Shape5 xs{c.n, c.cin, c.d, c.h, c.w};
  const Shape5 ys = xs.with_channels(c.cout);
  REQUIRE(xs.h * xs.w > revox::cpu::conv3d_detail::kDirectRangeVoxels);
  REQUIRE(revox::cpu::conv3d_detail::direct_applies<float>(xs, 3));
  compare_with_reference<float>(c, 3, true, revox::cpu::kConv3dScratchBytes, rng);
  const auto x = random_tensor<float>(xs, rng);
  const auto dy = random_tensor<float>(ys, rng);
  const auto weight = random_tensor<float>(revox::flat_shape(c.cout * c.cin * 27), rng);
  const auto bias = random_tensor<float>(revox::flat_shape(c.cout), rng);
  struct Result {
    Tensor<float> y, dx, dw;
  };
  const auto run = [&](int threads) {
    const int threads_before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Result r{Tensor<float>(ys), Tensor<float>(xs),
             Tensor<float>::full(revox::flat_shape(c.cout * c.cin * 27), 0.5f)};
    revox::ops::Conv3dKernels<revox::Cpu>::conv3d_forward(revox::Cpu{}, x.cview(), weight.data(), bias.data(), r.y.view(), 3);
    revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_data(revox::Cpu{}, dy.cview(), weight.data(), r.dx.view(), 3);
    revox::ops::Conv3dKernels<revox::Cpu>::conv3d_backward_weight(revox::Cpu{}, x.cview(), dy.cview(), r.dw.data(), nullptr, 3);
    omp_set_num_threads(threads_before);
    return r;
  };
  const Result one = run(1);
  const Result three = run(3);
  CHECK(max_mixed_error(one.y, three.y) == 0.0);
  CHECK(max_mixed_error(one.dx, three.dx) == 0.0);
  CHECK(max_mixed_error(one.dw, three.dw) == 0.0);
}

#else  // REVOX_GPU_TESTS

// GPU parity of the dense Conv3d (kernel_size 1, 3 and 5, chunked im2col) through the ops::
// dispatchers against the plain CPU reference, float and double (tests/cuda/conv_parity.cuh:
// shared checks, tolerances). Exits 77 (skipped) without a GPU. The same kernel bodies run on
// the CPU in tests/test_kernel_bodies_conv3d.cpp.
#include "cuda/conv_parity.cuh"
#include "cuda/cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"

using revox::index_t;
using revox::Shape5;
using namespace revox_cuda_test::convolution;

namespace {

template <class T>
void all_conv3d_parity(const revox::Cuda& dev) {
  revox::Rng rng(2024);
  const Shape5 odd{2, 3, 5, 7, 9};
  const Shape5 larger{1, 16, 12, 20, 28};
  for (const bool with_bias : {true, false}) {
    conv_parity<T>(dev, odd, 4, 3, with_bias, 0, rng);
    conv_parity<T>(dev, odd, 4, 1, with_bias, 0, rng);  // kernel_size 1: the pointwise path
  }
  conv_parity<T>(dev, larger, 8, 3, true, 0, rng);
  // Several im2col chunks: one output row, then four rows per chunk.
  const index_t row = odd.c * 27 * odd.w * static_cast<index_t>(sizeof(T));
  conv_parity<T>(dev, odd, 4, 3, true, row, rng);
  conv_parity<T>(dev, odd, 4, 3, true, 4 * row, rng);
  conv_parity<T>(dev, Shape5{1, 2, 3, 5, 6}, 3, 5, true,
                 2 * 2 * 125 * 6 * static_cast<index_t>(sizeof(T)), rng);
}

}  // namespace

int main() {
  return run_with_context("cuda.test_conv3d", [](const revox::Cuda& dev, auto t) {
    all_conv3d_parity<decltype(t)>(dev);
  });
}

#endif  // REVOX_GPU_TESTS
