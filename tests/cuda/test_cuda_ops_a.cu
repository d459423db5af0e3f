// GPU parity of activations, add / reversible coupling, GroupNorm, MaxPool3d,
// UpsampleTrilinear (ops and layers), the Dice losses and the Adam, AdamW and SGD steps: each
// runs through its dispatcher on Cuda and on Cpu from the same inputs and the results are
// compared. Device outputs are pre-filled with kDevicePrefill and host outputs with NaN, so an
// element one side never writes shows as a mismatch. Exits 77 (skipped) without a GPU.
//
// Tolerances (worst |gpu - cpu| / max(1, |cpu|) unless noted), and why:
//   activations, add, add_inplace, sub_inplace, MaxPool3d (y, argmax, dx): exact; one IEEE
//       operation or a comparison per element.
//   UpsampleTrilinear: float 1e-5, double 1e-12; nvcc contracts a * b + c into FMA, the CPU
//       build does not, so sums of weighted taps differ in the last bits.
//   GroupNorm: mean and rstd 1e-10 (double sums in another order and with FMA); y, dx float
//       1e-5, double 1e-10; dgamma, dbeta the same, relative to the largest |value|.
//   Losses: value 1e-12 relative; dlogits float 1e-5, double 1e-12 relative to the largest
//       |dlogit| (device exp/log1p are within 2 ulp of the host's).
//   Optimizers after 3 steps: float 1e-5, double 1e-12 (FMA contraction on the GPU).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/add.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/losses/dice.hpp"
#include "revox/ops/cuda/activations.cuh"
#include "revox/ops/cuda/add.cuh"
#include "revox/ops/cuda/copy.cuh"
#include "revox/ops/cuda/dice_loss.cuh"
#include "revox/ops/cuda/fill.cuh"
#include "revox/ops/cuda/group_norm.cuh"
#include "revox/ops/cuda/max_pool3d.cuh"
#include "revox/ops/cuda/optim.cuh"
#include "revox/ops/cuda/upsample_trilinear.cuh"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

using revox::Cpu;
using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;

namespace {

constexpr double kDevicePrefill = 12345.0;

template <class T>
T nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

template <class T>
Tensor<T> random_host(Shape5 shape, revox::Rng& rng, double low = -1.0, double high = 1.0) {
  Tensor<T> t(shape);
  revox::fill_uniform(t.view(), rng, low, high);
  return t;
}

template <class T>
Tensor<T> host_prefilled(Shape5 shape) {
  return Tensor<T>::full(shape, nan<T>());
}

template <class T>
Tensor<T, Cuda> device_prefilled(const Cuda& dev, Shape5 shape) {
  Tensor<T, Cuda> t(shape);
  revox::ops::fill(dev, t.view(), static_cast<T>(kDevicePrefill));
  return t;
}

// Worst |a - b| / max(floor, |b|); infinity when exactly one of a pair is NaN or infinite.
template <class A, class B>
double max_error(const A* a, const B* b, index_t count, double floor = 1.0) {
  double worst = 0.0;
  for (index_t i = 0; i < count; ++i) {
    const double x = static_cast<double>(a[i]);
    const double y = static_cast<double>(b[i]);
    if (x == y || (std::isnan(x) && std::isnan(y))) continue;  // equal infinities too
    const double err = std::abs(x - y) / std::max(floor, std::abs(y));
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

template <class T>
double max_error(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  return max_error(a.data(), b.data(), a.numel());
}

// Worst |a - b| relative to the largest |b|.
template <class T>
double scaled_error(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  double largest = 0.0;
  for (index_t i = 0; i < b.numel(); ++i) largest = std::max(largest, std::abs(double(b[i])));
  return max_error(a.data(), b.data(), a.numel(), largest > 0.0 ? largest : 1.0);
}

void check_close(const std::string& what, double error, double tolerance) {
  CUDA_TEST_CHECK(error <= tolerance);
  if (!(error <= tolerance)) {
    std::printf("  %s: error %.3e above tolerance %.3e\n", what.c_str(), error, tolerance);
  }
}

template <class T>
void check_close(const std::string& what, const Tensor<T>& got, const Tensor<T>& expected,
                 double tolerance) {
  check_close(what, max_error(got, expected), tolerance);
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

const Shape5 kOddShape{2, 3, 5, 7, 9};

template <class T>
void test_activations(const Cuda& dev) {
  revox::Rng rng(201);
  const Shape5 shape = kOddShape;
  Tensor<T> x = random_host<T>(shape, rng, -8.0, 8.0);
  x[0] = T(0);
  x[1] = T(6);
  x[2] = nan<T>();
  x[3] = std::numeric_limits<T>::infinity();
  const Tensor<T> dy = random_host<T>(shape, rng);
  const auto x_dev = revox::to_device(x);
  const auto dy_dev = revox::to_device(dy);
  const std::string prefix = std::string("activations<") + type_name<T>() + ">: ";
  const double slope = 0.02;

  auto forward = [&](const char* name, auto op) {
    Tensor<T> expected = host_prefilled<T>(shape);
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
    Tensor<T> expected = host_prefilled<T>(shape);
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
  Tensor<T> y_cpu = host_prefilled<T>(shape);
  Tensor<T> dx_cpu = host_prefilled<T>(shape);
  layer.forward(Cpu{}, x.cview(), y_cpu.view(), &saved_cpu);
  layer.backward(Cpu{}, saved_cpu, dy.cview(), dx_cpu.view());
  auto y_dev = device_prefilled<T>(dev, shape);
  auto dx_dev = device_prefilled<T>(dev, shape);
  layer.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
  layer.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
  check_close(prefix + "LeakyReLU layer y", revox::to_host(y_dev), y_cpu, 0.0);
  check_close(prefix + "LeakyReLU layer dx", revox::to_host(dx_dev), dx_cpu, 0.0);
}

template <class T>
void test_add(const Cuda& dev) {
  revox::Rng rng(202);
  const Shape5 shape = kOddShape;
  const Tensor<T> a = random_host<T>(shape, rng, -5.0, 5.0);
  const Tensor<T> b = random_host<T>(shape, rng, -5.0, 5.0);
  const auto a_dev = revox::to_device(a);
  const auto b_dev = revox::to_device(b);
  const std::string prefix = std::string("add<") + type_name<T>() + ">: ";

  Tensor<T> sum = host_prefilled<T>(shape);
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

template <class T>
void test_max_pool3d(const Cuda& dev) {
  revox::Rng rng(203);
  const std::string prefix = std::string("max_pool3d<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 4, 6, 8}, Shape5{2, 4, 33, 34, 35}}) {
    Tensor<T> x = random_host<T>(in, rng);
    for (index_t i = 0; i < x.numel(); i += 3) x[i] = std::round(x[i] * T(2)) / T(2);  // ties
    for (index_t i = 5; i < x.numel(); i += 41) x[i] = nan<T>();
    const Shape5 out{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};
    const auto x_dev = revox::to_device(x);

    Tensor<T> y = host_prefilled<T>(out);
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

    const Tensor<T> dy = random_host<T>(out, rng);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> dx = host_prefilled<T>(in);
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

template <class T>
void test_upsample_trilinear(const Cuda& dev) {
  revox::Rng rng(204);
  const std::string prefix = std::string("upsample_trilinear<") + type_name<T>() + ">: ";
  for (const Shape5 in : {kOddShape, Shape5{1, 2, 1, 1, 1}, Shape5{2, 4, 17, 18, 19}}) {
    const Shape5 out{in.n, in.c, 2 * in.d, 2 * in.h, 2 * in.w};
    const Tensor<T> x = random_host<T>(in, rng);
    const Tensor<T> dy = random_host<T>(out, rng);
    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    Tensor<T> y = host_prefilled<T>(out);
    Tensor<T> dx = host_prefilled<T>(in);
    revox::ops::upsample_trilinear(Cpu{}, x.cview(), y.view());
    revox::ops::upsample_trilinear_backward(Cpu{}, dy.cview(), dx.view());

    revox::UpsampleTrilinear<T> layer;
    typename revox::UpsampleTrilinear<T>::template Saved<Cuda> saved;
    auto y_dev = device_prefilled<T>(dev, out);
    auto dx_dev = device_prefilled<T>(dev, in);
    layer.forward(dev, x_dev.cview(), y_dev.view(), &saved);
    layer.backward(dev, saved, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tolerance<T>());
    check_close(prefix + "dx", revox::to_host(dx_dev), dx, tolerance<T>());
  }
}

template <class T>
void test_group_norm(const Cuda& dev) {
  revox::Rng rng(205);
  const std::string prefix = std::string("group_norm<") + type_name<T>() + ">: ";
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  struct Case {
    Shape5 shape;
    index_t groups;
    double offset;
  };
  // The last case has 4 chunks per plane; the offset case checks the shifted statistics.
  for (const Case test : {Case{{2, 6, 5, 7, 9}, 3, 0.0}, Case{{2, 3, 5, 7, 9}, 1, 0.0},
                          Case{{2, 6, 5, 7, 9}, 2, 1000.0}, Case{{2, 6, 20, 24, 28}, 3, 0.0}}) {
    const Shape5 shape = test.shape;
    const double spread = test.offset == 0.0 ? 1.0 : 0.01;
    const Tensor<T> x = random_host<T>(shape, rng, test.offset - spread, test.offset + spread);
    const Tensor<T> dy = random_host<T>(shape, rng);
    revox::GroupNorm<T> layer_cpu(test.groups, shape.c);
    revox::GroupNorm<T> layer_dev(test.groups, shape.c);
    revox::Parameters<T> params_cpu(layer_cpu);
    revox::Parameters<T, Cuda> params_dev(layer_dev);
    revox::fill_uniform(layer_cpu.weight().value, shape.c, rng, 0.5, 1.5);
    revox::fill_uniform(layer_cpu.bias().value, shape.c, rng, -0.5, 0.5);
    revox::fill_uniform(layer_cpu.weight().grad, shape.c, rng, -0.5, 0.5);  // ACCUMULATED onto
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.values().data, params_cpu.values().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.grads().data, params_cpu.grads().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));

    typename revox::GroupNorm<T>::template Saved<Cpu> saved_cpu;
    Tensor<T> y = host_prefilled<T>(shape);
    Tensor<T> dx = host_prefilled<T>(shape);
    layer_cpu.forward(Cpu{}, x.cview(), y.view(), &saved_cpu);
    const Tensor<double> mean = saved_cpu.mean.clone();
    const Tensor<double> rstd = saved_cpu.rstd.clone();
    layer_cpu.backward(Cpu{}, saved_cpu, dy.cview(), dx.view());

    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    typename revox::GroupNorm<T>::template Saved<Cuda> saved_dev;
    auto y_dev = device_prefilled<T>(dev, shape);
    auto dx_dev = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
    check_close(prefix + "mean", revox::to_host(saved_dev.mean), mean, 1e-10);
    check_close(prefix + "rstd", scaled_error(revox::to_host(saved_dev.rstd), rstd), 1e-10);
    layer_dev.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tol);
    check_close(prefix + "dx", scaled_error(revox::to_host(dx_dev), dx), tol);
    Tensor<T> grads(revox::flat_shape(params_cpu.size()));
    REVOX_CUDA_CHECK(cudaMemcpy(grads.data(), params_dev.grads().data, grads.bytes(),
                                cudaMemcpyDeviceToHost));
    check_close(prefix + "dweight, dbias",
                max_error(grads.data(), params_cpu.grads().data, grads.numel()), tol);

    // Inference: no saved statistics (they go to scratch).
    auto y_infer = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_infer.view(), nullptr);
    check_close(prefix + "y without saved", revox::to_host(y_infer), y, tol);
  }
}

template <class T>
void test_losses(const Cuda& dev) {
  revox::Rng rng(206);
  const std::string prefix = std::string("losses<") + type_name<T>() + ">: ";
  for (const Shape5 shape : {kOddShape, Shape5{2, 3, 20, 30, 40}}) {
    const Tensor<T> logits = random_host<T>(shape, rng, -6.0, 6.0);
    Tensor<T> targets = random_host<T>(shape, rng, 0.0, 1.0);
    for (index_t i = 0; i < targets.numel(); i += 2) targets[i] = targets[i] < T(0.5) ? T(0) : T(1);
    const auto logits_dev = revox::to_device(logits);
    const auto targets_dev = revox::to_device(targets);
    for (const bool bce : {false, true}) {
      const std::string name = prefix + (bce ? "bce_dice_loss" : "soft_dice_loss");
      Tensor<T> dx = host_prefilled<T>(shape);
      auto dx_dev = device_prefilled<T>(dev, shape);
      double value = 0.0, value_dev = 0.0;
      if (bce) {
        value = revox::losses::bce_dice_loss(Cpu{}, logits.cview(), targets.cview(), dx.view(),
                                             0.5, 2.0, 0.75);
        value_dev = revox::losses::bce_dice_loss(dev, logits_dev.cview(), targets_dev.cview(),
                                                 dx_dev.view(), 0.5, 2.0, 0.75);
      } else {
        value = revox::losses::soft_dice_loss(logits.cview(), targets.cview(), dx.view());
        value_dev = revox::losses::soft_dice_loss(dev, logits_dev.cview(), targets_dev.cview(),
                                                  dx_dev.view());
      }
      check_close(name + " value", std::abs(value_dev - value) / std::abs(value), 1e-12);
      check_close(name + " dlogits", scaled_error(revox::to_host(dx_dev), dx), tolerance<T>());
    }

    // A non-finite logit: the CPU's message, and dlogits left as it was.
    Tensor<T> bad = logits.clone();
    bad[shape.numel() / 3] = nan<T>();
    bad[shape.numel() / 2] = std::numeric_limits<T>::infinity();
    const auto bad_dev = revox::to_device(bad);
    std::string message_cpu, message_dev;
    try {
      revox::losses::bce_dice_loss(bad.cview(), targets.cview(), TensorView<T>{});
    } catch (const revox::Error& error) {
      message_cpu = error.what();
    }
    auto dx_dev = device_prefilled<T>(dev, shape);
    try {
      revox::losses::bce_dice_loss(dev, bad_dev.cview(), targets_dev.cview(), dx_dev.view());
    } catch (const revox::Error& error) {
      message_dev = error.what();
    }
    CUDA_TEST_CHECK(!message_cpu.empty());
    CUDA_TEST_CHECK(message_dev == message_cpu);
    if (message_dev != message_cpu) {
      std::printf("  cpu: %s\n  gpu: %s\n", message_cpu.c_str(), message_dev.c_str());
    }
    const Tensor<T> untouched = revox::to_host(dx_dev);
    index_t written = 0;
    for (index_t i = 0; i < untouched.numel(); ++i) written += untouched[i] != T(kDevicePrefill);
    CUDA_TEST_CHECK(written == 0);
  }
}

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

template <class T>
Tensor<T> host_copy(TensorView<const T> device) {
  Tensor<T> host(device.shape);
  REVOX_CUDA_CHECK(cudaMemcpy(host.data(), device.data, host.bytes(), cudaMemcpyDeviceToHost));
  return host;
}

// Three steps on the CPU and on the GPU from the same values and gradients (garbage in the
// gradient padding); values and every state buffer compared, padding checked to stay zero.
template <class T, class Optimizer, class Make>
void compare_optimizer(const Cuda& dev, const std::string& name, Make make) {
  revox::Rng rng(207);
  OddParams<T> model_cpu, model_dev;
  revox::Parameters<T> cpu(model_cpu);
  revox::Parameters<T, Cuda> gpu(model_dev);
  for (index_t i = 0; i < cpu.size(); ++i) cpu.values()[i] = static_cast<T>(rng.uniform(-1, 1));
  std::vector<bool> is_param(static_cast<std::size_t>(cpu.size()), false);
  for (const auto& entry : cpu.entries()) {
    for (index_t i = entry.offset; i < entry.offset + entry.shape.numel(); ++i) {
      is_param[static_cast<std::size_t>(i)] = true;
    }
  }
  for (index_t i = 0; i < cpu.size(); ++i) {
    if (!is_param[static_cast<std::size_t>(i)]) cpu.values()[i] = T(0);
  }
  REVOX_CUDA_CHECK(cudaMemcpy(gpu.values().data, cpu.values().data, cpu.size() * sizeof(T),
                              cudaMemcpyHostToDevice));
  Optimizer opt_cpu = make(Cpu{}, cpu);
  auto opt_dev = make(dev, gpu);
  for (int step = 1; step <= 3; ++step) {
    for (index_t i = 0; i < cpu.size(); ++i) {
      cpu.grads()[i] = is_param[static_cast<std::size_t>(i)] ? static_cast<T>(rng.uniform(-1, 1))
                                                             : T(1e3);
    }
    REVOX_CUDA_CHECK(cudaMemcpy(gpu.grads().data, cpu.grads().data, cpu.size() * sizeof(T),
                                cudaMemcpyHostToDevice));
    opt_cpu.step();
    opt_dev.step();
  }
  CUDA_TEST_CHECK(opt_dev.steps() == 3);
  const Tensor<T> values = host_copy<T>(gpu.values());
  check_close(name + " values", max_error(values.data(), cpu.values().data, cpu.size()),
              tolerance<T>());
  std::vector<Tensor<T>> state_cpu;
  opt_cpu.visit_state([&](const char*, TensorView<T> buffer) {
    Tensor<T> copy(buffer.shape);
    std::memcpy(copy.data(), buffer.data, copy.bytes());
    state_cpu.push_back(std::move(copy));
  });
  std::size_t k = 0;
  index_t dirty = 0;
  opt_dev.visit_state([&](const char* state, TensorView<T> buffer) {
    CUDA_TEST_CHECK(k < state_cpu.size());
    if (k >= state_cpu.size()) return;
    const Tensor<T> host = host_copy<T>(buffer);
    check_close(name + " state " + state, max_error(host, state_cpu[k]), tolerance<T>());
    for (index_t i = 0; i < host.numel(); ++i) {
      dirty += !is_param[static_cast<std::size_t>(i)] && host[i] != T(0);
    }
    ++k;
  });
  CUDA_TEST_CHECK(k == state_cpu.size());
  for (index_t i = 0; i < values.numel(); ++i) {
    dirty += !is_param[static_cast<std::size_t>(i)] && values[i] != T(0);
  }
  CUDA_TEST_CHECK(dirty == 0);
}

template <class T>
void test_optimizers(const Cuda& dev) {
  namespace optim = revox::optim;
  const std::string prefix = std::string("optim<") + type_name<T>() + ">: ";
  const optim::AdamOptions adam{2e-2, 0.8, 0.95, 1e-6, 0.1};
  compare_optimizer<T, optim::Adam<T>>(dev, prefix + "Adam", [&](const auto& d, auto& p) {
    return optim::Adam<T, std::decay_t<decltype(d)>>(d, p, adam);
  });
  const optim::AdamWOptions adamw{1e-2, 0.9, 0.99, 1e-8, 0.05};
  compare_optimizer<T, optim::AdamW<T>>(dev, prefix + "AdamW", [&](const auto& d, auto& p) {
    return optim::AdamW<T, std::decay_t<decltype(d)>>(d, p, adamw);
  });
  for (const bool nesterov : {false, true}) {
    optim::SGDOptions sgd;
    sgd.lr = 0.1;
    sgd.momentum = 0.9;
    sgd.dampening = nesterov ? 0.0 : 0.25;
    sgd.weight_decay = 0.01;
    sgd.nesterov = nesterov;
    compare_optimizer<T, optim::SGD<T>>(
        dev, prefix + (nesterov ? "SGD Nesterov" : "SGD momentum"),
        [&](const auto& d, auto& p) {
          return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, sgd);
        });
  }
  optim::SGDOptions plain;
  plain.lr = 0.05;
  compare_optimizer<T, optim::SGD<T>>(dev, prefix + "SGD", [&](const auto& d, auto& p) {
    return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, plain);
  });
}

template <class T>
void run_all(const Cuda& dev) {
  test_activations<T>(dev);
  test_add<T>(dev);
  test_max_pool3d<T>(dev);
  test_upsample_trilinear<T>(dev);
  test_group_norm<T>(dev);
  test_losses<T>(dev);
  test_optimizers<T>(dev);
}

}  // namespace

int main() {
  revox_cuda_test::require_gpu("test_cuda_ops_a");
  try {
    const Cuda dev{};
    run_all<float>(dev);
    run_all<double>(dev);
    REVOX_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return revox_cuda_test::finish("test_cuda_ops_a");
}
