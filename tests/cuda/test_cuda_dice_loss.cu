// GPU parity of the Dice and BCE + Dice losses: each runs through its dispatcher on Cuda and on
// Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_dice_loss.cpp.
//
// Tolerances: value 1e-12 relative; dlogits float 1e-5, double 1e-12 relative to the largest
// |dlogit| (device exp/log1p are within 2 ulp of the host's).
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/ops/cuda/dice_loss.cuh"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
void test_losses(const Cuda& dev) {
  revox::Rng rng(206);
  const std::string prefix = std::string("losses<") + type_name<T>() + ">: ";
  for (const Shape5 shape : {kOddShape, Shape5{2, 3, 20, 30, 40}}) {
    const Tensor<T> logits = random_tensor<T>(shape, rng, -6.0, 6.0);
    Tensor<T> targets = random_tensor<T>(shape, rng, 0.0, 1.0);
    for (index_t i = 0; i < targets.numel(); i += 2) targets[i] = targets[i] < T(0.5) ? T(0) : T(1);
    const auto logits_dev = revox::to_device(logits);
    const auto targets_dev = revox::to_device(targets);
    for (const bool bce : {false, true}) {
      const std::string name = prefix + (bce ? "bce_dice_loss" : "soft_dice_loss");
      Tensor<T> dx = nan_tensor<T>(shape);
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

}  // namespace

int main() {
  return run_parity_test("test_cuda_dice_loss", [](const Cuda& dev, auto t) {
    test_losses<decltype(t)>(dev);
  });
}
