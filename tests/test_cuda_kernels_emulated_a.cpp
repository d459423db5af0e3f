// The CUDA kernel bodies of activations, add, GroupNorm, MaxPool3d, UpsampleTrilinear, the
// Dice losses and the optimizers (include/revox/ops/kernels/), run on the CPU with
// kernels::emulate_for_each and compared with the CPU kernels (include/revox/ops/cpu/,
// losses/dice.hpp, optim/). Outputs are pre-filled with NaN so an element a body never writes
// fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU runs the
// same bodies through cuda::for_each (tests/cuda/test_cuda_ops_a.cu checks it on a GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/ops/cpu/activations.hpp"
#include "revox/ops/cpu/add.hpp"
#include "revox/ops/cpu/group_norm.hpp"
#include "revox/ops/cpu/max_pool3d.hpp"
#include "revox/ops/cpu/upsample_trilinear.hpp"
#include "revox/ops/kernels/activations.hpp"
#include "revox/ops/kernels/add.hpp"
#include "revox/ops/kernels/dice_loss.hpp"
#include "revox/ops/kernels/for_each.hpp"
#include "revox/ops/kernels/group_norm.hpp"
#include "revox/ops/kernels/max_pool3d.hpp"
#include "revox/ops/kernels/optim.hpp"
#include "revox/ops/kernels/unravel.hpp"
#include "revox/ops/kernels/upsample_trilinear.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;
namespace kernels = revox::kernels;

namespace {

template <class T>
T nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

template <class T>
Tensor<T> random_tensor(Shape5 shape, revox::Rng& rng, double low = -1.0, double high = 1.0) {
  Tensor<T> t(shape);
  revox::fill_uniform(t.view(), rng, low, high);
  return t;
}

template <class T>
Tensor<T> nan_tensor(Shape5 shape) {
  return Tensor<T>::full(shape, nan<T>());
}

// Elements that differ in value, where NaN equals NaN only. 0 when the tensors agree exactly.
template <class T>
index_t mismatches(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<index_t>::max();
  index_t count = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const bool both_nan =
        std::isnan(static_cast<double>(a[i])) && std::isnan(static_cast<double>(b[i]));
    if (!both_nan && !(a[i] == b[i])) ++count;
  }
  return count;
}

// Worst |a - b| / max(1, |b|); infinity when exactly one of a pair is NaN or infinite
// (both NaN, or equal infinities: 0).
template <class T>
double max_error(const T* a, const T* b, index_t count) {
  double worst = 0.0;
  for (index_t i = 0; i < count; ++i) {
    const double x = static_cast<double>(a[i]);
    const double y = static_cast<double>(b[i]);
    if (x == y || (std::isnan(x) && std::isnan(y))) continue;  // equal infinities too
    const double err = std::abs(x - y) / std::max(1.0, std::abs(y));
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

template <class T>
double max_error(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  return max_error(a.data(), b.data(), a.numel());
}

// Rounding-level tolerance of a value computed in T through a different operation order.
template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-6 : 1e-14;
}

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

const Shape5 kOddShape{2, 3, 5, 7, 9};

}  // namespace

TEST_CASE("emulated kernels: unravel inverts Shape5::offset past 2^31 elements",
          "[cuda][emulated][index]") {
  // 4 x 128 x 256 x 256 x 160 = 5.4e9 elements: offsets above 2^31 and 2^32.
  const Shape5 big{4, 128, 256, 256, 160};
  REQUIRE(big.numel() > (index_t{1} << 32) + 12345);
  const index_t probes[] = {0,
                            1,
                            big.w - 1,
                            big.w,
                            (index_t{1} << 31) - 1,
                            index_t{1} << 31,
                            (index_t{1} << 32) + 12345,
                            big.numel() / 2 + 7,
                            big.numel() - 1};
  for (const index_t i : probes) {
    const kernels::Coord5 u = kernels::unravel(big, i);
    INFO("flat index " << i);
    CHECK(u.n >= 0);
    CHECK(u.n < big.n);
    CHECK(u.c >= 0);
    CHECK(u.c < big.c);
    CHECK(u.d < big.d);
    CHECK(u.h < big.h);
    CHECK(u.w < big.w);
    CHECK(big.offset(u.n, u.c, u.d, u.h, u.w) == i);
  }
  const kernels::Coord5 last = kernels::unravel(big, big.numel() - 1);
  CHECK((last.n == big.n - 1 && last.c == big.c - 1 && last.d == big.d - 1 &&
         last.h == big.h - 1 && last.w == big.w - 1));

  // The group-norm chunk bounds of the last plane end at the last element.
  const auto dims = kernels::group_norm_dims(big, 8, kernels::kGroupNormChunk);
  const index_t last_plane = big.n * big.c - 1;
  CHECK(dims.slots() == big.n * big.c * ((big.spatial() + kernels::kGroupNormChunk - 1) /
                                         kernels::kGroupNormChunk));
  CHECK(dims.chunk_end(last_plane, dims.chunks - 1) == big.numel());
  CHECK(dims.chunk_begin(last_plane, 0) == big.numel() - big.spatial());

  // A small random check of every index of an odd shape.
  for (index_t i = 0; i < kOddShape.numel(); ++i) {
    const kernels::Coord5 u = kernels::unravel(kOddShape, i);
    if (kOddShape.offset(u.n, u.c, u.d, u.h, u.w) != i) FAIL("unravel fails at " << i);
  }
}

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
  CHECK(max_error(y_emulated, a) <= 4 * tolerance<T>() * 5);
}

TEMPLATE_TEST_CASE("emulated kernels: MaxPool3d forward and gather backward match the CPU",
                   "[cuda][emulated][max_pool3d]", float, double) {
  using T = TestType;
  revox::Rng rng(103);
  const Shape5 shapes[] = {kOddShape, {1, 2, 4, 6, 8}, {2, 1, 2, 3, 2}, {1, 1, 3, 2, 5}};
  for (const Shape5& in : shapes) {
    INFO("input " << in);
    Tensor<T> x = random_tensor<T>(in, rng);
    // Ties (quantised values) and NaN in some windows.
    for (index_t i = 0; i < x.numel(); i += 3) x[i] = std::round(x[i] * T(2)) / T(2);
    for (index_t i = 5; i < x.numel(); i += 41) x[i] = nan<T>();
    const Shape5 out{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};

    Tensor<T> y_cpu = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax_cpu = Tensor<std::uint8_t>::full(out, 255);
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y_cpu.view(), argmax_cpu.view());

    Tensor<T> y = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax = Tensor<std::uint8_t>::full(out, 255);
    kernels::emulate_for_each(out.numel(), kernels::MaxPool3dForward<T>{x.data(), in, y.data(),
                                                                        out, argmax.data()});
    CHECK(mismatches(y, y_cpu) == 0);
    CHECK(mismatches(argmax, argmax_cpu) == 0);

    // Without argmax (inference): y only.
    Tensor<T> y_only = nan_tensor<T>(out);
    kernels::emulate_for_each(out.numel(), kernels::MaxPool3dForward<T>{x.data(), in,
                                                                        y_only.data(), out,
                                                                        nullptr});
    CHECK(mismatches(y_only, y_cpu) == 0);

    const Tensor<T> dy = random_tensor<T>(out, rng);
    Tensor<T> dx_cpu = nan_tensor<T>(in);
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward(revox::Cpu{}, dy.cview(), argmax_cpu.cview(), dx_cpu.view());
    Tensor<T> dx = nan_tensor<T>(in);
    kernels::emulate_for_each(in.numel(), kernels::MaxPool3dBackward<T>{dy.data(), argmax.data(),
                                                                        out, dx.data(), in});
    CHECK(mismatches(dx, dx_cpu) == 0);
  }
}

TEMPLATE_TEST_CASE("emulated kernels: UpsampleTrilinear forward and gather backward match the "
                   "CPU",
                   "[cuda][emulated][upsample_trilinear]", float, double) {
  using T = TestType;
  revox::Rng rng(104);
  const Shape5 shapes[] = {kOddShape, {1, 2, 1, 1, 1}, {1, 1, 2, 1, 3}, {2, 1, 3, 2, 1}};
  for (const Shape5& in : shapes) {
    INFO("input " << in);
    const Shape5 out{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
    const Tensor<T> x = random_tensor<T>(in, rng);
    Tensor<T> y_cpu = nan_tensor<T>(out);
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear(revox::Cpu{}, x.cview(), y_cpu.view());
    Tensor<T> y = nan_tensor<T>(out);
    kernels::emulate_for_each(out.numel(), kernels::UpsampleTrilinearForward<T>{x.data(), in,
                                                                                y.data(), out});
    CHECK(max_error(y, y_cpu) <= tolerance<T>());

    Tensor<T> dy = random_tensor<T>(out, rng);
    Tensor<T> dx_cpu = nan_tensor<T>(in);
    revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy.cview(), dx_cpu.view());
    Tensor<T> dx = nan_tensor<T>(in);
    kernels::emulate_for_each(in.numel(), kernels::UpsampleTrilinearBackward<T>{dy.data(), out,
                                                                                dx.data(), in});
    CHECK(max_error(dx, dx_cpu) <= tolerance<T>());

    // An inf in dy reaches the same inputs, zero-weight taps included (0 * inf = NaN).
    for (index_t spot : {index_t{0}, out.numel() / 2, out.numel() - 1}) {
      Tensor<T> dy_inf = dy.clone();
      dy_inf[spot] = std::numeric_limits<T>::infinity();
      revox::ops::UpsampleTrilinearKernels<revox::Cpu>::upsample_trilinear_backward(revox::Cpu{}, dy_inf.cview(), dx_cpu.view());
      kernels::emulate_for_each(in.numel(), kernels::UpsampleTrilinearBackward<T>{
                                                dy_inf.data(), out, dx.data(), in});
      index_t pattern_mismatches = 0;
      for (index_t i = 0; i < in.numel(); ++i) {
        pattern_mismatches += std::isnan(dx[i]) != std::isnan(dx_cpu[i]);
        pattern_mismatches += std::isinf(dx[i]) != std::isinf(dx_cpu[i]);
      }
      CHECK(pattern_mismatches == 0);
    }
  }
}

TEST_CASE("emulated kernels: upsample adjoint taps are the transpose of the forward taps",
          "[cuda][emulated][upsample_trilinear]") {
  for (index_t n = 1; n <= 9; ++n) {
    // Brute force: every (output, weight) pair naming input i, in output order.
    for (index_t i = 0; i < n; ++i) {
      std::vector<index_t> outputs;
      std::vector<double> weights;
      for (index_t o = 0; o < 2 * n; ++o) {
        const auto tap = kernels::upsample_tap<double>(o, n);
        if (tap.i0 == i) {
          outputs.push_back(o);
          weights.push_back(tap.l0);
        }
        if (tap.i1 == i) {
          outputs.push_back(o);
          weights.push_back(tap.l1);
        }
      }
      const auto taps = kernels::upsample_adjoint_taps<double>(i, n);
      INFO("n " << n << ", input " << i);
      REQUIRE(taps.count == static_cast<int>(outputs.size()));
      CHECK(taps.count <= 5);
      for (int k = 0; k < taps.count; ++k) {
        CHECK(taps.output[k] == outputs[static_cast<std::size_t>(k)]);
        CHECK(taps.weight[k] == weights[static_cast<std::size_t>(k)]);
      }
    }
  }
}

namespace {

// GroupNorm through kernels::group_norm_*_stages with emulate_for_each as the runner.
const auto kEmulate = [](index_t count, const auto& body) {
  kernels::emulate_for_each(count, body);
};

struct GroupNormCase {
  Shape5 shape;
  index_t groups;
};

const GroupNormCase kGroupNormCases[] = {
    {{2, 6, 5, 7, 9}, 3}, {{2, 3, 5, 7, 9}, 3}, {{2, 3, 5, 7, 9}, 1},
    {{1, 4, 1, 1, 1}, 2}, {{3, 2, 1, 2, 3}, 1},
};

}  // namespace

TEMPLATE_TEST_CASE("emulated kernels: GroupNorm forward and backward match the CPU",
                   "[cuda][emulated][group_norm]", float, double) {
  using T = TestType;
  revox::Rng rng(105);
  const double eps = 1e-5;
  for (const GroupNormCase& test : kGroupNormCases) {
    for (const index_t chunk : {index_t{7}, index_t{64}, kernels::kGroupNormChunk}) {
      for (const double offset : {0.0, 1000.0}) {
        const Shape5 shape = test.shape;
        const index_t groups = test.groups;
        INFO("shape " << shape << ", groups " << groups << ", chunk " << chunk << ", offset "
                      << offset);
        // A large offset with a small spread: the shifted statistics must keep precision.
        const double spread = offset == 0.0 ? 1.0 : 0.01;
        const Tensor<T> x = random_tensor<T>(shape, rng, offset - spread, offset + spread);
        const Tensor<T> gamma = random_tensor<T>(Shape5{1, 1, 1, 1, shape.c}, rng, 0.5, 1.5);
        const Tensor<T> beta = random_tensor<T>(Shape5{1, 1, 1, 1, shape.c}, rng);
        const Shape5 stats{shape.n, groups, 1, 1, 1};

        Tensor<T> y_cpu = nan_tensor<T>(shape);
        Tensor<double> mean_cpu = nan_tensor<double>(stats);
        Tensor<double> rstd_cpu = nan_tensor<double>(stats);
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_forward<T>(revox::Cpu{}, x.cview(), groups, eps, gamma.data(), beta.data(),
                                          y_cpu.view(), mean_cpu.data(), rstd_cpu.data());

        const auto dims = kernels::group_norm_dims(shape, groups, chunk);
        Tensor<double> scratch = nan_tensor<double>(
            revox::flat_shape(kernels::group_norm_forward_scratch(dims)));
        Tensor<T> y = nan_tensor<T>(shape);
        Tensor<double> mean = nan_tensor<double>(stats);
        Tensor<double> rstd = nan_tensor<double>(stats);
        kernels::group_norm_forward_stages(kEmulate, x.data(), dims, eps, gamma.data(),
                                           beta.data(), y.data(), mean.data(), rstd.data(),
                                           scratch.data());
        CHECK(max_error(mean, mean_cpu) <= 1e-13);
        CHECK(max_error(rstd, rstd_cpu) <= 1e-9);
        CHECK(max_error(y, y_cpu) <= tolerance<T>() * 4);

        const Tensor<T> dy = random_tensor<T>(shape, rng);
        Tensor<T> dx_cpu = nan_tensor<T>(shape);
        Tensor<T> dgamma_cpu = random_tensor<T>(gamma.shape(), rng);  // ACCUMULATED onto
        Tensor<T> dbeta_cpu = random_tensor<T>(gamma.shape(), rng);
        Tensor<T> dgamma = dgamma_cpu.clone();
        Tensor<T> dbeta = dbeta_cpu.clone();
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward<T>(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_cpu.data(),
                                           rstd_cpu.data(), gamma.data(), dx_cpu.view(),
                                           dgamma_cpu.data(), dbeta_cpu.data());
        Tensor<double> grad_scratch = nan_tensor<double>(
            revox::flat_shape(kernels::group_norm_backward_scratch(dims)));
        Tensor<T> dx = nan_tensor<T>(shape);
        kernels::group_norm_backward_stages(kEmulate, x.data(), dy.data(), dims,
                                            mean_cpu.data(), rstd_cpu.data(), gamma.data(),
                                            dx.data(), dgamma.data(), dbeta.data(),
                                            grad_scratch.data());
        // dx is the difference of terms of size rstd * |dy|: relative to that scale.
        const double scale = offset == 0.0 ? 1.0 : 100.0;
        CHECK(max_error(dx, dx_cpu) <= tolerance<T>() * 4 * scale);
        CHECK(max_error(dgamma, dgamma_cpu) <= tolerance<T>() * 4 * scale);
        CHECK(max_error(dbeta, dbeta_cpu) <= tolerance<T>() * 4);

        // Without dx: the parameter gradients only, dx untouched.
        Tensor<T> dgamma_only = dgamma.clone();
        Tensor<T> dbeta_only = dbeta.clone();
        Tensor<T> untouched = nan_tensor<T>(shape);
        kernels::group_norm_backward_stages(kEmulate, x.data(), dy.data(), dims, mean_cpu.data(),
                                            rstd_cpu.data(), gamma.data(),
                                            static_cast<T*>(nullptr), dgamma_only.data(),
                                            dbeta_only.data(), grad_scratch.data());
        revox::ops::GroupNormKernels<revox::Cpu>::group_norm_backward<T>(revox::Cpu{}, x.cview(), dy.cview(), groups, mean_cpu.data(),
                                           rstd_cpu.data(), gamma.data(), TensorView<T>{},
                                           dgamma_cpu.data(), dbeta_cpu.data());
        CHECK(max_error(dgamma_only, dgamma_cpu) <= tolerance<T>() * 8 * scale);
        CHECK(max_error(dbeta_only, dbeta_cpu) <= tolerance<T>() * 8);
        index_t written = 0;
        for (index_t i = 0; i < untouched.numel(); ++i) written += !std::isnan(untouched[i]);
        CHECK(written == 0);
      }
    }
  }
}

namespace {

// The loss through kernels::dice_loss_reduce_stages and DiceGradient, as the GPU runs them.
template <class T>
kernels::DiceLossTotals emulated_dice(TensorView<const T> logits, TensorView<const T> targets,
                                      TensorView<T> dlogits, index_t chunk,
                                      const kernels::DiceLossWeights& weights) {
  const auto dims = kernels::dice_loss_dims(logits.shape, chunk);
  std::vector<kernels::LossChunkSums> slots(
      static_cast<std::size_t>(kernels::dice_loss_slot_scratch(dims)));
  std::vector<double> planes(static_cast<std::size_t>(kernels::dice_loss_double_scratch(dims)),
                             nan<double>());
  kernels::DiceLossTotals totals{nan<double>(), -7, -7};
  kernels::dice_loss_reduce_stages(kEmulate, logits.data, targets.data, dims, weights,
                                   slots.data(), planes.data(), &totals);
  if (!dlogits.empty() && totals.bad_logit < 0 && totals.bad_target < 0) {
    kernels::emulate_for_each(
        logits.numel(),
        kernels::DiceGradient<T>{logits.data, targets.data, dims, weights,
                                 kernels::dice_loss_numerator(dims, planes.data()),
                                 kernels::dice_loss_union(dims, planes.data()), dlogits.data});
  }
  return totals;
}

}  // namespace

TEMPLATE_TEST_CASE("emulated kernels: Dice and BCE + Dice losses match the CPU",
                   "[cuda][emulated][loss]", float, double) {
  using T = TestType;
  revox::Rng rng(106);
  const Shape5 shapes[] = {kOddShape, {1, 3, 1, 1, 1}, {2, 2, 9, 40, 50}};
  for (const Shape5& shape : shapes) {
    const Tensor<T> logits = random_tensor<T>(shape, rng, -6.0, 6.0);
    Tensor<T> targets = random_tensor<T>(shape, rng, 0.0, 1.0);
    for (index_t i = 0; i < targets.numel(); i += 2) targets[i] = targets[i] < T(0.5) ? T(0) : T(1);
    struct Weights {
      bool bce;
      double smooth, bce_weight, dice_weight;
    };
    for (const Weights w : {Weights{false, 1.0, 0.0, 1.0}, Weights{true, 1.0, 1.0, 1.0},
                            Weights{true, 0.5, 2.0, 0.25}, Weights{true, 1.0, 1.0, 0.0}}) {
      for (const index_t chunk : {index_t{100}, kernels::kLossChunk}) {
        INFO("shape " << shape << ", bce " << w.bce << ", smooth " << w.smooth << ", weights "
                      << w.bce_weight << "/" << w.dice_weight << ", chunk " << chunk);
        Tensor<T> dx_cpu = nan_tensor<T>(shape);
        const double value_cpu =
            w.bce ? revox::losses::bce_dice_loss(logits.cview(), targets.cview(), dx_cpu.view(),
                                                 w.smooth, w.bce_weight, w.dice_weight)
                  : revox::losses::soft_dice_loss(logits.cview(), targets.cview(),
                                                  dx_cpu.view(), w.smooth);
        Tensor<T> dx = nan_tensor<T>(shape);
        const auto totals = emulated_dice<T>(logits.cview(), targets.cview(), dx.view(), chunk,
                                             kernels::DiceLossWeights{w.smooth, w.bce_weight,
                                                                      w.dice_weight});
        CHECK(totals.bad_logit == -1);
        CHECK(totals.bad_target == -1);
        if (chunk == kernels::kLossChunk) {
          // The CPU's chunks and order: the same sums, bit for bit.
          CHECK(totals.value == value_cpu);
        } else {
          CHECK(std::abs(totals.value - value_cpu) <= 1e-13);
        }
        CHECK(max_error(dx, dx_cpu) <= tolerance<T>());
      }
    }
  }
}

TEMPLATE_TEST_CASE("emulated kernels: the loss reports the first bad logit and target as the "
                   "CPU does",
                   "[cuda][emulated][loss]", float, double) {
  using T = TestType;
  revox::Rng rng(107);
  const Shape5 shape = kOddShape;
  Tensor<T> logits = random_tensor<T>(shape, rng, -3.0, 3.0);
  Tensor<T> targets = random_tensor<T>(shape, rng, 0.0, 1.0);
  const index_t first_logit = 377, first_target = 500;
  logits[first_logit] = std::numeric_limits<T>::infinity();
  logits[first_logit + 311] = nan<T>();
  targets[first_target] = T(1.5);
  targets[first_target + 9] = nan<T>();

  std::string cpu_message;
  try {
    revox::losses::bce_dice_loss(logits.cview(), targets.cview(), TensorView<T>{});
  } catch (const revox::Error& error) {
    cpu_message = error.what();
  }
  REQUIRE(!cpu_message.empty());

  const auto totals = emulated_dice<T>(logits.cview(), targets.cview(), TensorView<T>{},
                                       index_t{100}, kernels::DiceLossWeights{1.0, 1.0, 1.0});
  CHECK(totals.bad_logit == first_logit);
  CHECK(totals.bad_target == first_target);
  // The GPU launcher builds its message from the totals and the offending values.
  std::string emulated_message;
  try {
    revox::losses::detail::check_values(
        "bce_dice_loss", shape, totals.bad_logit,
        static_cast<double>(logits[totals.bad_logit]), totals.bad_target,
        static_cast<double>(targets[totals.bad_target]));
  } catch (const revox::Error& error) {
    emulated_message = error.what();
  }
  CHECK(emulated_message == cpu_message);
  CHECK_THAT(emulated_message, Catch::Contains("logits must be finite, got inf at (n=0, c=1,"));

  logits[first_logit] = T(0);
  logits[first_logit + 311] = T(0);
  const auto only_target = emulated_dice<T>(logits.cview(), targets.cview(), TensorView<T>{},
                                            index_t{64}, kernels::DiceLossWeights{1.0, 0.0, 1.0});
  CHECK(only_target.bad_logit == -1);
  CHECK(only_target.bad_target == first_target);
}

namespace {

// Parameters of odd sizes, so the flat buffers have padding between them.
template <class T>
struct OddParams {
  revox::Param<T> weight{revox::ParamShape{3, 2, 1, 1, 3}};
  revox::Param<T> bias{revox::ParamShape{5}};
  revox::Param<T> norm{revox::ParamShape{17}};
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("weight", weight);
    fn("bias", bias);
    fn("norm", norm);
  }
};

// Random parameter values (padding stays 0) and random gradients with garbage in the padding.
template <class T>
void fill_params(revox::Parameters<T>& params, revox::Rng& rng, bool values) {
  const std::vector<index_t> table = revox::optim::detail::parameter_range_table(params.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(params.entries().size()));
  TensorView<T> buffer = values ? params.values() : params.grads();
  for (index_t i = 0; i < buffer.numel(); ++i) {
    if (ranges.contains(i)) {
      buffer[i] = static_cast<T>(rng.uniform(-1.0, 1.0));
    } else if (!values) {
      buffer[i] = T(1e3);  // the optimizers must never read this
    }
  }
}

// Runs `steps` updates with the CPU optimizer and with the update bodies over every flat index
// (as the GPU does), and compares values and state bit for bit.
template <class T, class MakeOptimizer, class MakeUpdate>
void compare_optimizer(MakeOptimizer make_optimizer, MakeUpdate make_update, int state_buffers) {
  revox::Rng rng(108);
  OddParams<T> model_cpu, model_emulated;
  revox::Parameters<T> cpu(model_cpu);
  revox::Parameters<T> emulated(model_emulated);
  REQUIRE(cpu.size() > cpu.count());  // there is padding
  fill_params(cpu, rng, true);
  std::memcpy(emulated.values().data, cpu.values().data,
              static_cast<std::size_t>(cpu.size()) * sizeof(T));
  auto optimizer = make_optimizer(cpu);
  std::vector<Tensor<T>> state;
  for (int k = 0; k < 2; ++k) state.push_back(Tensor<T>::zeros(revox::flat_shape(cpu.size())));
  const std::vector<index_t> table =
      revox::optim::detail::parameter_range_table(emulated.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(emulated.entries().size()));
  for (int step = 1; step <= 4; ++step) {
    fill_params(cpu, rng, false);
    std::memcpy(emulated.grads().data, cpu.grads().data,
                static_cast<std::size_t>(cpu.size()) * sizeof(T));
    optimizer.step();
    const auto update = make_update(emulated, state[0].data(), state[1].data(), step);
    kernels::emulate_for_each(emulated.size(),
                              kernels::ParameterElements<std::decay_t<decltype(update)>>{
                                  update, ranges});
    INFO("step " << step);
    CHECK(optimizer.steps() == step);
    CHECK(std::memcmp(emulated.values().data, cpu.values().data,
                      static_cast<std::size_t>(cpu.size()) * sizeof(T)) == 0);
    int visited = 0;
    optimizer.visit_state([&](const char* name, TensorView<T> buffer) {
      INFO("state " << name);
      REQUIRE(visited < state_buffers);
      CHECK(std::memcmp(buffer.data, state[static_cast<std::size_t>(visited)].data(),
                        static_cast<std::size_t>(buffer.numel()) * sizeof(T)) == 0);
      ++visited;
    });
    CHECK(visited == state_buffers);
  }
  // The padding of the values and the state stayed exactly zero.
  index_t dirty = 0;
  for (index_t i = 0; i < emulated.size(); ++i) {
    if (ranges.contains(i)) continue;
    dirty += emulated.values()[i] != T(0);
    dirty += state[0][i] != T(0);
    dirty += state[1][i] != T(0);
  }
  CHECK(dirty == 0);
}

}  // namespace

TEST_CASE("emulated kernels: ParamRanges::contains finds exactly the parameter elements",
          "[cuda][emulated][optim]") {
  OddParams<float> model;
  revox::Parameters<float> params(model);
  const std::vector<index_t> table = revox::optim::detail::parameter_range_table(params.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(params.entries().size()));
  index_t inside = 0;
  for (index_t i = -3; i < params.size() + 20; ++i) {
    bool expected = false;
    for (const auto& entry : params.entries()) {
      expected = expected || (i >= entry.offset && i < entry.offset + entry.shape.numel());
    }
    if (ranges.contains(i) != expected) FAIL("ParamRanges::contains is wrong at " << i);
    inside += expected;
  }
  CHECK(inside == params.count());
  CHECK_FALSE(revox::optim::detail::param_ranges(table.data(), 0).contains(0));
}

TEMPLATE_TEST_CASE("emulated kernels: Adam, AdamW and SGD steps match the CPU optimizers",
                   "[cuda][emulated][optim]", float, double) {
  using T = TestType;
  namespace optim = revox::optim;
  SECTION("Adam with L2 weight decay") {
    const optim::AdamOptions options{2e-2, 0.8, 0.95, 1e-6, 0.1};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::Adam<T>(p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, false, step);
        },
        2);
  }
  SECTION("Adam without weight decay") {
    const optim::AdamOptions options{};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::Adam<T>(revox::Cpu{}, p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, false, step);
        },
        2);
  }
  SECTION("AdamW") {
    const optim::AdamWOptions options{1e-2, 0.9, 0.99, 1e-8, 0.05};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::AdamW<T>(p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, true, step);
        },
        2);
  }
  for (const bool nesterov : {false, true}) {
    DYNAMIC_SECTION("SGD with momentum, nesterov " << nesterov) {
      optim::SGDOptions options;
      options.lr = 0.1;
      options.momentum = 0.9;
      options.dampening = nesterov ? 0.0 : 0.25;
      options.weight_decay = 0.01;
      options.nesterov = nesterov;
      compare_optimizer<T>(
          [&](revox::Parameters<T>& p) { return optim::SGD<T>(revox::Cpu{}, p, options); },
          [&](revox::Parameters<T>& p, T* b, T*, int step) {
            return optim::detail::sgd_update<T>(p.values().data, p.grads().data, b, options.lr,
                                                options, step == 1);
          },
          1);
    }
  }
  SECTION("SGD without momentum") {
    optim::SGDOptions options;
    options.lr = 0.05;
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::SGD<T>(p, options); },
        [&](revox::Parameters<T>& p, T*, T*, int) {
          return optim::detail::sgd_update<T>(p.values().data, p.grads().data, nullptr,
                                              options.lr, options, false);
        },
        0);
  }
}
