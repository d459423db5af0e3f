// revox/models/memory_planner.hpp — the peak memory of one training step of a revox::UNet,
// predicted from its config and input shape without allocating anything, and measured by
// running the step for real.
//
// plan_training_memory(config, input, options) replays, allocation by allocation, what one
// training step on the CPU backend allocates through the tracking allocator:
//   resident (allocated before the step, alive throughout):
//     parameters and gradients (Parameters: two flat buffers, each parameter 16-aligned),
//     optimizer state ("adam"/"adamw": exp_avg + exp_avg_sq; "sgd": the momentum buffer;
//     "none": nothing), the input x and the target, the logits and the loss gradient
//     (optionally the input gradient dx; the trainer skips it);
//   forward with `saved` (revox/models/unet.hpp): per encoder level the level buffer (the
//     skip), the pooled input of the next level, each reversible block's half-size output
//     buffer and the transient intermediates of F and G run without `saved` (reversible
//     mode) or all their activations, GroupNorm statistics and copies of their inputs
//     (stored mode); per decoder level the reduced map, the upsampled sum and each
//     ConvBlock's output and saved intermediates;
//   backward: the decoder gradients, then per encoder level (deepest first) the block's two
//     half-size buffers, F and G recomputed WITH `saved` (MBConv: six expanded maps and one
//     projected map) one at a time and back-propagated through, the recomputed pooled input,
//     its argmax and gradients, while the gradients of the shallower skips wait;
//   and every kernel's scratch: conv3d's im2col column chunk where its column-buffer path
//   runs (cpu::conv3d_scratch_bytes, ops/cpu/conv3d.hpp, 16 MiB budget), GroupNorm's
//   per-plane sums in double. (The depthwise kernels' per-thread scratch, O(H * W)
//   elements, is plain heap memory outside the tracking allocator.)
// The walk mirrors the code of UNet, ReversibleBlock/Sequence, Sequential, MBConv, ConvBlock
// and the layers exactly, so the prediction equals the tracking allocator's peak up to what
// does not go through it (std::vector bookkeeping, the kernels' per-thread scratch); the tests
// hold it to the measured peak. When that code changes, change this walk with it.
//
// Peak = resident + the largest activation/scratch total reached during forward or backward.
// All byte counts are exact integers for the given element size (4: float, 8: double);
// GroupNorm statistics and scratch are double, the max-pool argmax one byte per element.
//
// measure_training_memory<T>(config, input, options) runs the same step for real (random
// parameters and input, a binary target, soft Dice loss, the optimizer's step) and returns
// the tracking allocator's peak minus what was in use before it: the number the plan predicts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/ops/cpu/conv3d.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

namespace revox {

struct MemoryPlanOptions {
  index_t element_bytes = 4;     // sizeof(T): 4 (float) or 8 (double)
  std::string optimizer = "adam";  // "adam" / "adamw" (2 state buffers), "sgd" (momentum: 1),
                                   // "none" (also plain SGD without momentum)
  bool include_input = true;       // the input x is allocated by the caller of the step
  bool include_target = true;      // the loss target, same shape as the logits
  bool include_output_gradient = true;  // d loss / d logits (the logits are always counted)
  bool input_gradient = false;          // dx of the input (the trainer does not need it)
};

struct MemoryPlan {
  index_t parameter_count = 0;            // parameter elements
  index_t parameter_buffer_elements = 0;  // flat buffer length, alignment padding included
  std::size_t parameter_bytes = 0;
  std::size_t gradient_bytes = 0;
  std::size_t optimizer_state_bytes = 0;
  std::size_t input_target_bytes = 0;  // x, target and (if asked) dx
  std::size_t output_bytes = 0;        // logits and their gradient
  std::size_t resident_bytes = 0;      // the five above: alive during the whole step
  std::size_t saved_bytes = 0;         // what forward leaves for backward
  std::size_t forward_peak_bytes = 0;  // peak above resident during forward
  std::size_t backward_peak_bytes = 0;   // peak above resident during backward
  std::size_t activation_peak_bytes = 0;  // max of the two
  std::size_t peak_bytes = 0;             // resident + activation peak: the step's peak
  std::string peak_at;                    // where the peak is first reached
};

namespace detail {

// Counts allocations and releases in the order the real code makes them.
class AllocationTrace {
 public:
  void allocate(std::size_t bytes, const char* what) {
    if (bytes == 0) return;
    current_ += bytes;
    if (current_ > peak_) {
      peak_ = current_;
      peak_at_ = phase_ + ": " + what;
    }
  }
  void release(std::size_t bytes) {
    REVOX_ASSERT(bytes <= current_);
    current_ -= bytes;
  }
  void set_phase(std::string phase) { phase_ = std::move(phase); }
  // Starts a new peak measurement from the current bytes.
  void reset_peak() {
    peak_ = current_;
    peak_at_ = phase_ + ": (nothing above the start)";
  }
  std::size_t current() const { return current_; }
  std::size_t peak() const { return peak_; }
  const std::string& peak_at() const { return peak_at_; }

 private:
  std::size_t current_ = 0;
  std::size_t peak_ = 0;
  std::string phase_;
  std::string peak_at_;
};

enum class PlanLayer { pointwise, depthwise, conv3, group_norm, activation };

struct PlanStep {
  PlanLayer kind;
  index_t out_channels;  // for group_norm/activation: the (unchanged) channel count
};

// What a Sequential keeps with `saved`: each intermediate (bytes) and each GroupNorm's
// mean + rstd (bytes, 0 for other layers).
struct PlanChainSaved {
  std::vector<std::size_t> activations;
  std::vector<std::size_t> stats;
};

// A Sequential of PlanSteps with a fixed GroupNorm group count, as the walk sees it.
class PlanChain {
 public:
  PlanChain(std::vector<PlanStep> steps, index_t num_groups, index_t element_bytes)
      : steps_(std::move(steps)), num_groups_(num_groups), element_bytes_(element_bytes) {}

  // Sequential::forward: y is the caller's; intermediates saved or released one by one.
  void forward(AllocationTrace& trace, Shape5 x, PlanChainSaved* saved) const {
    const std::size_t k = steps_.size();
    if (saved != nullptr) {
      saved->activations.assign(k - 1, 0);
      saved->stats.assign(k, 0);
    }
    std::size_t owner = 0;
    Shape5 in = x;
    for (std::size_t i = 0; i < k; ++i) {
      const Shape5 out = in.with_channels(steps_[i].out_channels);
      if (i + 1 < k) trace.allocate(bytes(out), "layer output");
      layer_forward(trace, steps_[i], in, saved != nullptr ? &saved->stats[i] : nullptr);
      if (i + 1 < k) {
        if (saved != nullptr) {
          saved->activations[i] = bytes(out);
        } else {
          trace.release(owner);
          owner = bytes(out);
        }
      }
      in = out;
    }
    trace.release(owner);
  }

  // Sequential::backward: one gradient per layer, each activation released after its reader.
  void backward(AllocationTrace& trace, Shape5 x, PlanChainSaved& saved, bool want_dx) const {
    const std::size_t k = steps_.size();
    std::vector<Shape5> inputs(k);
    inputs[0] = x;
    for (std::size_t i = 1; i < k; ++i) {
      inputs[i] = inputs[i - 1].with_channels(steps_[i - 1].out_channels);
    }
    std::size_t owner = 0;
    for (std::size_t i = k; i-- > 1;) {
      trace.allocate(saved.activations[i - 1], "layer input gradient");
      layer_backward(trace, steps_[i], inputs[i], true, saved.stats[i]);
      trace.release(saved.activations[i - 1]);
      trace.release(owner);
      owner = saved.activations[i - 1];
    }
    layer_backward(trace, steps_[0], inputs[0], want_dx, saved.stats[0]);
    trace.release(owner);
    saved = PlanChainSaved{};
  }

  std::size_t bytes(const Shape5& s) const {
    return static_cast<std::size_t>(s.numel() * element_bytes_);
  }

 private:
  void layer_forward(AllocationTrace& trace, const PlanStep& step, Shape5 x,
                     std::size_t* stats) const {
    switch (step.kind) {
      case PlanLayer::group_norm: {
        const std::size_t stat_bytes = static_cast<std::size_t>(x.n * num_groups_ * 8);
        if (stats != nullptr) {
          trace.allocate(2 * stat_bytes, "GroupNorm statistics");
          *stats = 2 * stat_bytes;
        }
        const auto scratch = static_cast<std::size_t>((2 * x.n * x.c + 3 * x.n * num_groups_) * 8);
        trace.allocate(scratch, "GroupNorm scratch");
        trace.release(scratch);
        break;
      }
      case PlanLayer::conv3: {
        const std::size_t col = conv_scratch(cpu::Conv3dPass::forward, x, step.out_channels);
        if (col > 0) {
          trace.allocate(col, "conv3d im2col chunk");
          trace.release(col);
        }
        break;
      }
      case PlanLayer::depthwise:  // per-thread scratch only, outside the allocator
      case PlanLayer::pointwise:
      case PlanLayer::activation:
        break;
    }
  }

  void layer_backward(AllocationTrace& trace, const PlanStep& step, Shape5 x, bool want_dx,
                      std::size_t stats) const {
    switch (step.kind) {
      case PlanLayer::group_norm: {
        const auto scratch = static_cast<std::size_t>((2 * x.n * x.c + 2 * x.n * num_groups_) * 8);
        trace.allocate(scratch, "GroupNorm backward scratch");
        trace.release(scratch);
        trace.release(stats);
        break;
      }
      case PlanLayer::conv3: {
        const std::size_t data_col =
            conv_scratch(cpu::Conv3dPass::backward_data, x, step.out_channels);
        if (want_dx && data_col > 0) {
          trace.allocate(data_col, "conv3d backward-data column chunk");
          trace.release(data_col);
        }
        const std::size_t col =
            conv_scratch(cpu::Conv3dPass::backward_weight, x, step.out_channels);
        if (col > 0) {
          trace.allocate(col, "conv3d backward-weight im2col chunk");
          trace.release(col);
        }
        break;
      }
      case PlanLayer::depthwise:
      case PlanLayer::pointwise:
      case PlanLayer::activation:
        break;
    }
  }

  std::size_t conv_scratch(cpu::Conv3dPass pass, const Shape5& x, index_t cout) const {
    return static_cast<std::size_t>(cpu::conv3d_scratch_bytes(pass, x, cout, 3, element_bytes_));
  }

  std::vector<PlanStep> steps_;
  index_t num_groups_;
  index_t element_bytes_;
};

// MBConv(half -> half, e) and ConvBlock(cin -> cout) as chains.
inline PlanChain plan_mbconv(index_t channels, index_t expand_ratio, index_t num_groups,
                             index_t element_bytes) {
  const index_t hidden = channels * expand_ratio;
  std::vector<PlanStep> steps;
  if (expand_ratio > 1) {
    steps = {{PlanLayer::pointwise, hidden}, {PlanLayer::group_norm, hidden},
             {PlanLayer::activation, hidden}, {PlanLayer::depthwise, hidden},
             {PlanLayer::group_norm, hidden}, {PlanLayer::activation, hidden},
             {PlanLayer::pointwise, channels}, {PlanLayer::group_norm, channels}};
  } else {
    steps = {{PlanLayer::depthwise, hidden}, {PlanLayer::group_norm, hidden},
             {PlanLayer::activation, hidden}, {PlanLayer::pointwise, channels},
             {PlanLayer::group_norm, channels}};
  }
  return PlanChain(std::move(steps), num_groups, element_bytes);
}

inline PlanChain plan_conv_block(index_t out_channels, index_t num_groups,
                                 index_t element_bytes) {
  return PlanChain({{PlanLayer::conv3, out_channels},
                    {PlanLayer::group_norm, out_channels},
                    {PlanLayer::activation, out_channels}},
                   num_groups, element_bytes);
}

// What a ReversibleBlock keeps in stored mode (nothing in reversible mode).
struct PlanBlockSaved {
  std::size_t inputs = 0;  // f_input + g_input
  std::vector<PlanChainSaved> f;  // per sample
  std::vector<PlanChainSaved> g;
};

// ReversibleBlock<F, G>::forward / backward on y (N, C, ...), F and G on (1, C/2, ...).
inline void plan_block_forward(AllocationTrace& trace, const PlanChain& f, const PlanChain& g,
                               Shape5 y, bool store, PlanBlockSaved& saved) {
  const Shape5 half{1, y.c / 2, y.d, y.h, y.w};
  if (store) {
    saved.inputs = 2 * f.bytes(y.with_channels(half.c));
    trace.allocate(saved.inputs, "stored F and G inputs");
    saved.f.resize(static_cast<std::size_t>(y.n));
    saved.g.resize(static_cast<std::size_t>(y.n));
  }
  trace.allocate(f.bytes(half), "block F/G output buffer");
  for (index_t n = 0; n < y.n; ++n) {
    const auto i = static_cast<std::size_t>(n);
    f.forward(trace, half, store ? &saved.f[i] : nullptr);
    g.forward(trace, half, store ? &saved.g[i] : nullptr);
  }
  trace.release(f.bytes(half));
}

inline void plan_block_backward(AllocationTrace& trace, const PlanChain& f, const PlanChain& g,
                                Shape5 y, PlanBlockSaved& saved, const std::string& phase) {
  const Shape5 half{1, y.c / 2, y.d, y.h, y.w};
  const bool stored = !saved.f.empty();
  trace.allocate(2 * f.bytes(half), "block output and gradient buffers");
  for (index_t n = 0; n < y.n; ++n) {
    const auto i = static_cast<std::size_t>(n);
    trace.set_phase(phase + (stored ? ", G backward" : ", G recomputed and back-propagated"));
    PlanChainSaved recomputed;
    if (!stored) g.forward(trace, half, &recomputed);
    g.backward(trace, half, stored ? saved.g[i] : recomputed, true);
    trace.set_phase(phase + (stored ? ", F backward" : ", F recomputed and back-propagated"));
    if (!stored) f.forward(trace, half, &recomputed);
    f.backward(trace, half, stored ? saved.f[i] : recomputed, true);
  }
  trace.release(saved.inputs);
  saved = PlanBlockSaved{};
  trace.release(2 * f.bytes(half));
}

inline index_t optimizer_state_buffers(const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "adamw") return 2;
  if (optimizer == "sgd") return 1;
  if (optimizer == "none") return 0;
  throw Error("plan_training_memory: unknown optimizer '" + optimizer +
              "'; valid: adam, adamw, sgd (with momentum), none");
}

}  // namespace detail

inline MemoryPlan plan_training_memory(const UNetConfig& config, Shape5 input,
                                       const MemoryPlanOptions& options = {}) {
  using detail::AllocationTrace;
  using detail::PlanChain;
  validate_unet_config(config);
  REVOX_CHECK(options.element_bytes == 4 || options.element_bytes == 8,
              "plan_training_memory: element_bytes must be 4 (float) or 8 (double), got ",
              options.element_bytes);
  const index_t state_buffers = detail::optimizer_state_buffers(options.optimizer);
  // The model itself validates the input (channels, divisibility by 2^(levels-1)); it
  // allocates nothing until a Parameters binds it.
  UNet<float> net(config);
  const Shape5 output = net.output_shape(input);
  const index_t e = options.element_bytes;
  auto bytes = [e](const Shape5& s) { return static_cast<std::size_t>(s.numel() * e); };

  MemoryPlan plan;
  net.visit_params([&](const std::string&, Param<float>& p) {
    plan.parameter_buffer_elements =
        detail::align_up(plan.parameter_buffer_elements, detail::kParamAlignment) + p.numel();
    plan.parameter_count += p.numel();
  });
  plan.parameter_bytes = static_cast<std::size_t>(plan.parameter_buffer_elements * e);
  plan.gradient_bytes = plan.parameter_bytes;
  plan.optimizer_state_bytes = static_cast<std::size_t>(state_buffers) * plan.parameter_bytes;
  plan.input_target_bytes = (options.include_input ? bytes(input) : 0) +
                            (options.include_target ? bytes(output) : 0) +
                            (options.input_gradient ? bytes(input) : 0);
  plan.output_bytes = bytes(output) * (options.include_output_gradient ? 2 : 1);
  plan.resident_bytes = plan.parameter_bytes + plan.gradient_bytes + plan.optimizer_state_bytes +
                        plan.input_target_bytes + plan.output_bytes;

  const std::size_t levels = config.widths.size();
  const bool store = !config.reversible;
  const index_t groups = config.num_groups;
  auto level_shape = [&](std::size_t level, index_t channels) {
    const index_t scale = index_t{1} << level;
    return Shape5{input.n, channels, input.d / scale, input.h / scale, input.w / scale};
  };
  auto width = [&](std::size_t level) { return config.widths[level]; };
  std::vector<PlanChain> block_chains;  // F (= G) of each encoder level
  std::vector<PlanChain> decoder_chains;
  for (std::size_t i = 0; i < levels; ++i) {
    block_chains.push_back(config.block == "mbconv"
                               ? detail::plan_mbconv(width(i) / 2, config.expand_ratio, groups, e)
                               : detail::plan_conv_block(width(i) / 2, groups, e));
    decoder_chains.push_back(detail::plan_conv_block(width(i), groups, e));
  }

  AllocationTrace trace;
  trace.set_phase("resident");
  trace.allocate(plan.resident_bytes, "parameters, gradients, optimizer state, input, output");
  trace.reset_peak();

  // ---- forward (UNet::forward with saved) ----
  std::vector<std::size_t> skips(levels, 0);
  std::vector<std::vector<detail::PlanBlockSaved>> encoder_saved(levels);
  std::size_t pooled = 0;
  for (std::size_t i = 0; i < levels; ++i) {
    trace.set_phase("forward, encoder level " + std::to_string(i));
    const Shape5 s = level_shape(i, width(i));
    skips[i] = bytes(s);
    trace.allocate(skips[i], "level buffer (skip)");
    trace.release(pooled);
    pooled = 0;
    encoder_saved[i].resize(static_cast<std::size_t>(config.blocks_per_level));
    for (auto& block : encoder_saved[i]) {
      detail::plan_block_forward(trace, block_chains[i], block_chains[i], s, store, block);
    }
    if (i + 1 < levels) {
      pooled = bytes(level_shape(i + 1, width(i)));
      trace.allocate(pooled, "pooled input of the next level");
    }
  }
  struct DecoderSaved {
    std::size_t sum = 0;
    std::vector<std::size_t> outputs;
    std::vector<detail::PlanChainSaved> blocks;
  };
  std::vector<DecoderSaved> decoder_saved(levels > 0 ? levels - 1 : 0);
  for (std::size_t level = levels - 1; level-- > 0;) {
    trace.set_phase("forward, decoder level " + std::to_string(level));
    DecoderSaved& ds = decoder_saved[level];
    const std::size_t reduced = bytes(level_shape(level + 1, width(level)));
    trace.allocate(reduced, "reduced map");
    const Shape5 s = level_shape(level, width(level));
    ds.sum = bytes(s);
    trace.allocate(ds.sum, "upsampled sum");
    trace.release(reduced);
    ds.blocks.resize(static_cast<std::size_t>(config.decoder_blocks));
    for (auto& block : ds.blocks) {
      trace.allocate(bytes(s), "ConvBlock output");
      decoder_chains[level].forward(trace, s, &block);
      ds.outputs.push_back(bytes(s));
    }
  }
  plan.forward_peak_bytes = trace.peak() - plan.resident_bytes;
  plan.saved_bytes = trace.current() - plan.resident_bytes;
  const std::string forward_peak_at = trace.peak_at();

  // ---- backward (UNet::backward) ----
  trace.set_phase("backward, head");
  trace.reset_peak();
  std::vector<std::size_t> dskips(levels, 0);
  std::size_t dout = bytes(level_shape(0, width(0)));
  trace.allocate(dout, "head input gradient");
  for (std::size_t level = 0; level + 1 < levels; ++level) {
    trace.set_phase("backward, decoder level " + std::to_string(level));
    DecoderSaved& ds = decoder_saved[level];
    const Shape5 s = level_shape(level, width(level));
    for (std::size_t k = ds.blocks.size(); k-- > 0;) {
      trace.allocate(bytes(s), "ConvBlock input gradient");
      decoder_chains[level].backward(trace, s, ds.blocks[k], true);
      trace.release(dout);
      dout = bytes(s);
    }
    const std::size_t dreduced = bytes(level_shape(level + 1, width(level)));
    trace.allocate(dreduced, "reduced-map gradient");
    dskips[level] = dout;
    dout = bytes(level_shape(level + 1, width(level + 1)));
    trace.allocate(dout, "decoder input gradient");
    trace.release(ds.sum);
    for (std::size_t out : ds.outputs) trace.release(out);
    ds = DecoderSaved{};
    trace.release(dreduced);
  }
  dskips[levels - 1] = dout;
  for (std::size_t i = levels; i-- > 0;) {
    const std::string phase = "backward, encoder level " + std::to_string(i);
    trace.set_phase(phase);
    const Shape5 s = level_shape(i, width(i));
    const std::size_t dconv = dskips[i];
    for (std::size_t k = encoder_saved[i].size(); k-- > 0;) {
      detail::plan_block_backward(trace, block_chains[i], block_chains[i], s,
                                  encoder_saved[i][k], phase + ", block " + std::to_string(k));
    }
    trace.set_phase(phase);
    trace.release(skips[i]);
    if (i == 0) {
      trace.release(dconv);
      continue;
    }
    const Shape5 pooled_shape = level_shape(i, width(i - 1));
    const std::size_t pooled_bytes = bytes(pooled_shape);
    trace.allocate(pooled_bytes, "recomputed pooled input");
    const auto argmax = static_cast<std::size_t>(pooled_shape.numel());
    trace.allocate(argmax, "max-pool argmax");
    trace.allocate(pooled_bytes, "pooled-input gradient");
    trace.release(dconv);
    trace.release(pooled_bytes);
    const std::size_t dpool_in = bytes(level_shape(i - 1, width(i - 1)));
    trace.allocate(dpool_in, "max-pool input gradient");
    trace.release(argmax);
    trace.release(pooled_bytes);
    trace.release(dpool_in);
  }
  REVOX_ASSERT(trace.current() == plan.resident_bytes);
  plan.backward_peak_bytes = trace.peak() - plan.resident_bytes;
  plan.activation_peak_bytes = std::max(plan.forward_peak_bytes, plan.backward_peak_bytes);
  plan.peak_bytes = plan.resident_bytes + plan.activation_peak_bytes;
  plan.peak_at = plan.backward_peak_bytes >= plan.forward_peak_bytes ? trace.peak_at()
                                                                     : forward_peak_at;
  return plan;
}

// Runs one training step of `config` on `input` (random data) on the CPU and returns the
// tracking allocator's peak above what was in use before: parameters, gradients, optimizer
// state, input, target, logits and their gradient are allocated inside the measurement, as
// plan_training_memory counts them. options.element_bytes must be sizeof(T).
template <class T>
std::size_t measure_training_memory(const UNetConfig& config, Shape5 input,
                                    const MemoryPlanOptions& options = {}) {
  REVOX_CHECK(options.element_bytes == static_cast<index_t>(sizeof(T)),
              "measure_training_memory: element_bytes (", options.element_bytes,
              ") must equal sizeof(T) (", sizeof(T), ")");
  detail::optimizer_state_buffers(options.optimizer);  // validates the name
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
    {
      typename UNet<T>::template Saved<Cpu> saved;
      net.forward(dev, x.cview(), logits.view(), &saved);
      losses::soft_dice_loss(logits.cview(), target.cview(), dlogits.view());
      params.zero_grad();
      net.backward(dev, saved, dlogits.cview(), dx.view());
    }
    if (adam) adam->step();
    if (adamw) adamw->step();
    if (sgd) sgd->step();
    if (options.include_input) x = Tensor<T>();
    if (options.include_target) target = Tensor<T>();
    if (options.include_output_gradient) dlogits = Tensor<T>();
  }
  return allocator.peak_bytes() - before;
}

}  // namespace revox
