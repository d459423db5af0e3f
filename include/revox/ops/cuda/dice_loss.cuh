// revox/ops/cuda/dice_loss.cuh — DiceLossKernels<Cuda>: the soft-Dice and BCE + Dice losses
// of losses/dice.hpp on the GPU: kernels::dice_loss_reduce_stages (per-chunk partial sums in
// double, then fixed-order sums: deterministic, no atomics) through cuda::for_each, the totals
// copied back to check every logit and target as the CPU does, then the gradient body one
// thread per element. Semantics, messages and ASSIGNED dlogits as losses/dice.hpp; logits,
// targets and dlogits are device memory. Synchronises dev.stream (the value is returned on
// the host); dlogits is written only when the inputs pass the checks. Include from a .cu
// translation unit.
#pragma once

#include "revox/core/cuda.hpp"
#include "revox/losses/dice.hpp"
#include "revox/ops/cuda/launch.cuh"
#include "revox/ops/kernel_bodies/dice_loss.hpp"

namespace revox::cuda {

namespace detail {
// One element of device memory, copied to the host after the stream's work.
template <class T>
double element_on_host(const Cuda& dev, const T* data, index_t index) {
  T value{};
  REVOX_CUDA_CHECK(
      cudaMemcpyAsync(&value, data + index, sizeof(T), cudaMemcpyDeviceToHost, dev.stream));
  REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
  return static_cast<double>(value);
}
}  // namespace detail

}  // namespace revox::cuda

namespace revox::ops {

template <>
struct DiceLossKernels<Cuda> {
  template <class T>
  static double dice_bce_loss(const Cuda& dev, const char* loss, TensorView<const T> logits,
                              TensorView<const T> targets, TensorView<T> dlogits, double smooth,
                              double bce_weight, double dice_weight) {
    losses::detail::check_inputs(loss, logits, targets, dlogits);
    losses::detail::check_weights(loss, smooth, bce_weight, dice_weight);
    namespace k = ::revox::kernels;
    const k::DiceLossDims dims = k::dice_loss_dims(logits.shape, k::kLossChunk);
    const k::DiceLossWeights weights{smooth, bce_weight, dice_weight};
    Tensor<k::LossChunkSums, Cuda> slots(flat_shape(k::dice_loss_slot_scratch(dims)));
    Tensor<double, Cuda> planes(flat_shape(k::dice_loss_double_scratch(dims)));
    Tensor<k::DiceLossTotals, Cuda> totals(flat_shape(1));
    k::dice_loss_reduce_stages(
        [&dev](index_t count, const auto& body) { cuda::for_each(dev, count, body); },
        logits.data, targets.data, dims, weights, slots.data(), planes.data(), totals.data());

    k::DiceLossTotals host{};
    REVOX_CUDA_CHECK(cudaMemcpyAsync(&host, totals.data(), sizeof(host),
                                     cudaMemcpyDeviceToHost, dev.stream));
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
    if (host.bad_logit >= 0 || host.bad_target >= 0) {
      losses::detail::check_values(
          loss, logits.shape, host.bad_logit,
          host.bad_logit < 0 ? 0.0
                             : cuda::detail::element_on_host(dev, logits.data, host.bad_logit),
          host.bad_target,
          host.bad_target < 0
              ? 0.0
              : cuda::detail::element_on_host(dev, targets.data, host.bad_target));
    }
    if (!dlogits.empty()) {
      cuda::for_each(dev, logits.numel(),
                     k::DiceGradient<T>{logits.data, targets.data, dims, weights,
                                        k::dice_loss_numerator(dims, planes.data()),
                                        k::dice_loss_union(dims, planes.data()), dlogits.data});
    }
    return host.value;
  }
};

}  // namespace revox::ops
