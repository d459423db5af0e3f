// The CUDA kernel bodies of the Dice and BCE + Dice losses (include/revox/ops/kernel_bodies/), run
// on the CPU with kernels::emulate_for_each and compared with the CPU kernels (losses/dice.hpp).
// Outputs are pre-filled with NaN so an element a body never writes fails; shapes are odd (N=2, C=3
// or 6, 5x7x9) so every index path is taken. The GPU runs the same bodies through cuda::for_each
// (the GPU part of tests/test_losses.cpp checks it on a GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "revox/losses/dice.hpp"
#include "revox/ops/kernel_bodies/dice_loss.hpp"
#include "support/kernel_bodies.hpp"

using revox::test::elementwise::tolerance;

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
        CHECK(max_error_same_nonfinite(dx, dx_cpu) <= tolerance<T>());
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
