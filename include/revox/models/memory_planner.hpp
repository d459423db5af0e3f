// revox/models/memory_planner.hpp — the peak tracked memory of one training step of any
// layer (a revox::UNet, a Sequential, an MBConv, a ReversibleBlock, your own layer built from
// revox layers), predicted by running the layer's own code on the planning device, and
// measured by running the same step for real on the CPU.
//
// plan_layer_memory(layer, input, options) runs, on revox::Plan (revox/core/plan.hpp), what
// measure_layer_memory runs on the CPU, in the same order:
//   resident (allocated before the step, alive throughout): a copy of the layer bound to its
//     own Parameters (values and gradients: two flat buffers, each parameter 16-aligned; the
//     caller's layer is left as it is), the optimizer state ("adam"/"adamw": two buffers as
//     long as the parameter buffer; "sgd": one; "none": none), the input x, a target of the
//     output's shape, the output y and its gradient dy, and the input gradient dx if asked;
//   the step: forward(x, y, &saved), then backward(saved, dy, dx).
// Plan's allocator hands out fake addresses and counts bytes, and every op's Plan branch
// allocates (and frees) exactly the tracked scratch its CPU kernel allocates for those shapes
// (conv3d's column chunk where its im2col path runs, GroupNorm's double sums), so the plan is
// what the CPU backend's tracking allocator measures for the step, to the byte, for any
// composition: the containers' and layers' own code does the allocating, there is nothing to
// keep in sync. Planning allocates no real memory for tensors or parameters (a 160x256x256
// MBConv-Base U-Net plans in milliseconds).
//
// What is counted: tracked tensor bytes, i.e. what goes through the CPU tracking allocator
// (revox/core/memory.hpp). NOT counted: the CPU allocator's pool of freed blocks
// (REVOX_CPU_CACHE_MB), std::vector bookkeeping and the kernels' untracked per-thread scratch
// (the depthwise kernels' O(H * W) rows, conv3d's transposed weights), nor the program
// itself: the process RSS is larger (docs/guide.md, "Planning memory for your own network").
// A layer that computes on the host with its own loops skips them when is_plan_v<Dev>
// (core/plan.hpp); one that does not is stopped with a message saying so.
//
// Peak = resident + the larger of the forward and the backward peak above resident. peak_at
// names the phase ("forward" or "backward") and the allocation that first reached the peak:
// its size, and either the op whose scratch it is, with the shape of the op's first tensor
// ("backward: 1769472-byte column-chunk scratch of ops::conv3d_backward_data on (1, 8, 16,
// 16, 16)"), or, for a tensor a layer allocates, the op that ran last before it ("forward:
// 524288-byte tensor allocated after ops::relu on (1, 32, 16, 16, 16)").
//
// plan_training_memory(config, input, options) is plan_layer_memory of UNet<float> (or
// UNet<double> for element_bytes 8) built from config; measure_training_memory<T> runs that
// step for real with the soft Dice loss (which allocates no tracked memory) and the
// optimizer's step (none either), and the tests hold the two equal to the byte.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/random.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

namespace revox {

struct MemoryPlanOptions {
  index_t element_bytes = 4;  // plan_training_memory: 4 (UNet<float>) or 8 (UNet<double>);
                              // plan_layer_memory uses sizeof(the layer's value_type)
  std::string optimizer = "adam";  // "adam" / "adamw" (2 state buffers), "sgd" (momentum: 1),
                                   // "none" (also plain SGD without momentum)
  bool include_input = true;       // the input x is allocated by the caller of the step
  bool include_target = true;      // the loss target, same shape as the output
  bool include_output_gradient = true;  // d loss / d output (the output is always counted)
  bool input_gradient = false;          // dx of the input (the trainer does not need it)
};

struct MemoryPlan {
  index_t parameter_count = 0;            // parameter elements
  index_t parameter_buffer_elements = 0;  // flat buffer length, alignment padding included
  std::size_t parameter_bytes = 0;
  std::size_t gradient_bytes = 0;
  std::size_t optimizer_state_bytes = 0;
  std::size_t input_target_bytes = 0;  // x, target and (if asked) dx
  std::size_t output_bytes = 0;        // the output (logits) and its gradient
  std::size_t resident_bytes = 0;      // the five above: alive during the whole step
  std::size_t saved_bytes = 0;         // what forward leaves for backward
  std::size_t forward_peak_bytes = 0;  // peak above resident during forward
  std::size_t backward_peak_bytes = 0;   // peak above resident during backward
  std::size_t activation_peak_bytes = 0;  // max of the two
  std::size_t peak_bytes = 0;             // resident + activation peak: the step's peak
  std::string peak_at;  // the phase and the allocation where the peak is first reached
};

namespace detail {

inline index_t optimizer_state_buffers(const char* caller, const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "adamw") return 2;
  if (optimizer == "sgd") return 1;
  if (optimizer == "none") return 0;
  throw Error(std::string(caller) + ": unknown optimizer '" + optimizer +
              "'; valid: adam, adamw, sgd (with momentum), none");
}

}  // namespace detail

// The tracked memory of one training step of `layer` on an input of extent `input` (see the
// top of this file). Allocates no real memory for tensors or parameters. Throws what the
// layer's output_shape throws for an input that does not fit, and for an unknown optimizer.
template <class L>
MemoryPlan plan_layer_memory(const L& layer, Shape5 input, const MemoryPlanOptions& options = {}) {
  static_assert(check_layer_contract<L, Plan>(), "plan_layer_memory needs a revox layer");
  using T = typename L::value_type;
  const index_t state_buffers = detail::optimizer_state_buffers("plan_layer_memory",
                                                                options.optimizer);
  L net(layer);  // bound to the plan's parameters below; `layer` keeps its own
  const Shape5 output = net.output_shape(input);
  using PlanTensor = Tensor<T, Plan>;
  PlanRecord& record = plan_record();
  // Buffers the plan leaves out are allocated before it starts, as measure_layer_memory does.
  PlanTensor x, target, dy;
  if (!options.include_input) x = PlanTensor(input);
  if (!options.include_target) target = PlanTensor(output);
  if (!options.include_output_gradient) dy = PlanTensor(output);
  const std::size_t before = record.current_bytes;
  plan_reset_peak("resident");

  MemoryPlan plan;
  {
    const PlanFaultGuard fault_guard;  // a layer touching tensor data gets a clear message
    Parameters<T, Plan> params(net);
    plan.parameter_count = params.count();
    plan.parameter_buffer_elements = params.size();
    plan.parameter_bytes = static_cast<std::size_t>(params.values().numel()) * sizeof(T);
    plan.gradient_bytes = static_cast<std::size_t>(params.grads().numel()) * sizeof(T);
    std::vector<PlanTensor> state;
    for (index_t i = 0; i < state_buffers; ++i) {
      state.push_back(PlanTensor::zeros(params.values().shape));
      plan.optimizer_state_bytes += state.back().bytes();
    }
    if (options.include_input) x = PlanTensor(input);
    if (options.include_target) target = PlanTensor(output);
    PlanTensor y(output);
    if (options.include_output_gradient) dy = PlanTensor(output);
    PlanTensor dx(options.input_gradient ? input : Shape5{});
    plan.input_target_bytes = (options.include_input ? x.bytes() : 0) +
                              (options.include_target ? target.bytes() : 0) + dx.bytes();
    plan.output_bytes = y.bytes() + (options.include_output_gradient ? dy.bytes() : 0);
    plan.resident_bytes = plan.parameter_bytes + plan.gradient_bytes +
                          plan.optimizer_state_bytes + plan.input_target_bytes + plan.output_bytes;
    REVOX_ASSERT(record.current_bytes - before == plan.resident_bytes);
    const std::size_t resident = before + plan.resident_bytes;

    std::string forward_peak_at;
    {
      saved_t<L, Plan> saved{};
      plan_reset_peak("forward");
      net.forward(Plan{}, x.cview(), y.view(), &saved);
      plan.forward_peak_bytes = record.peak_bytes - resident;
      plan.saved_bytes = record.current_bytes - resident;
      forward_peak_at = record.peak_at;
      plan_reset_peak("backward");
      net.backward(Plan{}, saved, dy.cview(), dx.view());
    }
    plan.backward_peak_bytes = record.peak_bytes - resident;
    plan.activation_peak_bytes = std::max(plan.forward_peak_bytes, plan.backward_peak_bytes);
    plan.peak_bytes = plan.resident_bytes + plan.activation_peak_bytes;
    plan.peak_at =
        plan.backward_peak_bytes >= plan.forward_peak_bytes ? record.peak_at : forward_peak_at;
    if (options.include_input) x = PlanTensor();
    if (options.include_target) target = PlanTensor();
    if (options.include_output_gradient) dy = PlanTensor();
  }
  REVOX_ASSERT(record.current_bytes == before);
  record.phase.clear();
  return plan;
}

// Runs the step plan_layer_memory plans, for real on the CPU: a copy of `layer` bound to its
// own Parameters (random initialisation), the optimizer's state, a random input, a target
// buffer, the output, a random output gradient standing in for the loss's, the input gradient
// if asked; forward with saved, backward, the optimizer's step. Returns the CPU tracking
// allocator's peak above what was in use before: the number plan_layer_memory predicts.
template <class L>
std::size_t measure_layer_memory(const L& layer, Shape5 input,
                                 const MemoryPlanOptions& options = {}) {
  static_assert(check_layer_contract<L, Cpu>(), "measure_layer_memory needs a revox layer");
  using T = typename L::value_type;
  detail::optimizer_state_buffers("measure_layer_memory", options.optimizer);
  const Cpu dev;
  L net(layer);
  const Shape5 output = net.output_shape(input);
  Tensor<T> x, target, dy;
  if (!options.include_input) x = Tensor<T>(input);
  if (!options.include_target) target = Tensor<T>(output);
  if (!options.include_output_gradient) dy = Tensor<T>(output);
  TrackingAllocator& allocator = DeviceTraits<Cpu>::allocator();
  const std::size_t before = allocator.current_bytes();
  allocator.reset_peak();
  {
    Parameters<T> params(net);
    Rng rng(20240611);
    net.reset_parameters(rng);
    std::optional<optim::Adam<T>> adam;
    std::optional<optim::AdamW<T>> adamw;
    std::optional<optim::SGD<T>> sgd;
    if (options.optimizer == "adam") adam.emplace(params);
    if (options.optimizer == "adamw") adamw.emplace(params);
    if (options.optimizer == "sgd") sgd.emplace(params, optim::SGDOptions{1e-2, 0.9});
    if (options.include_input) x = Tensor<T>(input);
    if (options.include_target) target = Tensor<T>::zeros(output);
    fill_uniform(x.view(), rng, -1.0, 1.0);
    Tensor<T> y(output);
    if (options.include_output_gradient) dy = Tensor<T>(output);
    fill_uniform(dy.view(), rng, -1.0, 1.0);
    Tensor<T> dx(options.input_gradient ? input : Shape5{});
    {
      saved_t<L, Cpu> saved{};
      net.forward(dev, x.cview(), y.view(), &saved);
      params.zero_grad();
      net.backward(dev, saved, dy.cview(), dx.view());
    }
    if (adam) adam->step();
    if (adamw) adamw->step();
    if (sgd) sgd->step();
    if (options.include_input) x = Tensor<T>();
    if (options.include_target) target = Tensor<T>();
    if (options.include_output_gradient) dy = Tensor<T>();
  }
  return allocator.peak_bytes() - before;
}

// The plan of one training step of a revox::UNet built from `config`: plan_layer_memory of
// UNet<float> (element_bytes 4) or UNet<double> (8).
inline MemoryPlan plan_training_memory(const UNetConfig& config, Shape5 input,
                                       const MemoryPlanOptions& options = {}) {
  validate_unet_config(config);
  REVOX_CHECK(config.deep_supervision == 0, "plan_training_memory: a UNet with "
              "deep_supervision ", config.deep_supervision, " is not planned (its auxiliary "
              "outputs, their gradients and the heads' backward are not modelled); plan it with "
              "deep_supervision 0 for the rest of the step");
  REVOX_CHECK(options.element_bytes == 4 || options.element_bytes == 8,
              "plan_training_memory: element_bytes must be 4 (float) or 8 (double), got ",
              options.element_bytes);
  detail::optimizer_state_buffers("plan_training_memory", options.optimizer);
  if (options.element_bytes == 4) return plan_layer_memory(UNet<float>(config), input, options);
  return plan_layer_memory(UNet<double>(config), input, options);
}

// Wall-clock seconds of the phases of a step measure_training_memory ran.
struct StepTimes {
  double setup = 0.0;     // parameters, initialisation, optimizer state, random data
  double forward = 0.0;   // forward with saved
  double loss = 0.0;      // soft Dice loss and its gradient
  double backward = 0.0;  // zero_grad and backward
  double optimizer = 0.0;  // the optimizer's step
  double step() const { return forward + loss + backward + optimizer; }
};

// Runs one training step of `config` on `input` (random data) on the CPU and returns the
// tracking allocator's peak above what was in use before: parameters, gradients, optimizer
// state, input, target, logits and their gradient are allocated inside the measurement, as
// plan_training_memory counts them. options.element_bytes must be sizeof(T). `times`, if
// given, receives the wall-clock seconds of each phase.
template <class T>
std::size_t measure_training_memory(const UNetConfig& config, Shape5 input,
                                    const MemoryPlanOptions& options = {},
                                    StepTimes* times = nullptr) {
  REVOX_CHECK(options.element_bytes == static_cast<index_t>(sizeof(T)),
              "measure_training_memory: element_bytes (", options.element_bytes,
              ") must equal sizeof(T) (", sizeof(T), ")");
  detail::optimizer_state_buffers("measure_training_memory", options.optimizer);
  const Cpu dev;
  UNet<T> net(config);
  const Shape5 output = net.output_shape(input);
  // Buffers the plan leaves out are allocated before the measurement starts.
  Tensor<T> x, target, dlogits;
  if (!options.include_input) x = Tensor<T>(input);
  if (!options.include_target) target = Tensor<T>(output);
  if (!options.include_output_gradient) dlogits = Tensor<T>(output);
  TrackingAllocator& allocator = DeviceTraits<Cpu>::allocator();
  const std::size_t before = allocator.current_bytes();
  allocator.reset_peak();
  StepTimes local_times;
  StepTimes& t = times != nullptr ? *times : local_times;
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  auto start = Clock::now();
  {
    Parameters<T> params(net);
    Rng rng(20240611);
    net.reset_parameters(rng);
    std::optional<optim::Adam<T>> adam;
    std::optional<optim::AdamW<T>> adamw;
    std::optional<optim::SGD<T>> sgd;
    if (options.optimizer == "adam") adam.emplace(params);
    if (options.optimizer == "adamw") adamw.emplace(params);
    if (options.optimizer == "sgd") sgd.emplace(params, optim::SGDOptions{1e-2, 0.9});
    if (options.include_input) x = Tensor<T>(input);
    if (options.include_target) target = Tensor<T>(output);
    fill_uniform(x.view(), rng, -1.0, 1.0);
    for (index_t i = 0; i < target.numel(); ++i) target[i] = rng.uniform01() < 0.3 ? T(1) : T(0);
    Tensor<T> logits(output);
    if (options.include_output_gradient) dlogits = Tensor<T>(output);
    Tensor<T> dx(options.input_gradient ? input : Shape5{});
    t.setup = since(start);
    {
      typename UNet<T>::template Saved<Cpu> saved;
      start = Clock::now();
      net.forward(dev, x.cview(), logits.view(), &saved);
      t.forward = since(start);
      start = Clock::now();
      losses::soft_dice_loss(logits.cview(), target.cview(), dlogits.view());
      t.loss = since(start);
      start = Clock::now();
      params.zero_grad();
      net.backward(dev, saved, dlogits.cview(), dx.view());
      t.backward = since(start);
    }
    start = Clock::now();
    if (adam) adam->step();
    if (adamw) adamw->step();
    if (sgd) sgd->step();
    t.optimizer = since(start);
    if (options.include_input) x = Tensor<T>();
    if (options.include_target) target = Tensor<T>();
    if (options.include_output_gradient) dlogits = Tensor<T>();
  }
  return allocator.peak_bytes() - before;
}

}  // namespace revox
