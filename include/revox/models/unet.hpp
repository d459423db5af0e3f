// revox/models/unet.hpp — UNet<T, F, G>: the generic reversible 3D U-Net of the paper
// (Pendse, Thangarasa et al., arXiv 2104.09648; docs/architecture.md section 4), sized at run
// time by a UNetConfig (revox/models/unet_config.hpp), with the encoder's reversible block
// functions F and G chosen at compile time.
//
//   x (N, in_channels, D, H, W)
//   encoder level i = 0 .. L-1 (C_i = widths[i]; level 0 reads x, level i > 0 reads
//     MaxPool3d(2) of level i-1's output):
//       PointwiseConv3d(C_{i-1} -> C_i, bias)            into the level buffer
//       ReversibleSequence of blocks_per_level ReversibleBlock<F, G>, IN PLACE on that buffer,
//         F, G: layers mapping (1, C_i/2, D, H, W) to the same shape (see below)
//       the buffer then holds the level output = the skip tensor of level i.
//   decoder level i = L-2 .. 0 (reads the deepest skip for i = L-2, else decoder i+1's output;
//   what it keeps for backward: config.decoder_memory, below):
//       PointwiseConv3d(C_{i+1} -> C_i, bias) "reduce"   (before the upsampling: 8x cheaper)
//       UpsampleTrilinear(x2), + skip_i (additive skip)
//       decoder_blocks x ConvBlock(C_i -> C_i, num_groups)
//   head: PointwiseConv3d(C_0 -> out_channels, bias)    logits (WT, TC, ET), no activation
//   y (N, out_channels, D, H, W)
//   deep supervision (config.deep_supervision = K > 0, nnU-Net's): auxiliary heads
//     PointwiseConv3d(C_j -> out_channels, bias) on decoder level j = 1 .. K's output,
//     aux_j (N, out_channels, D/2^j, H/2^j, W/2^j). forward computes them only when given
//     views for them (forward(dev, x, y, saved, {aux_1, .., aux_K})); without, the net runs
//     exactly as one without heads (inference). backward(dev, saved, dy, dx, {daux_1, ..})
//     adds each head's input gradient to its decoder level's output gradient; without daux
//     the heads get no gradient.
//
// The encoder's F and G:
//  * UNet<T> (F = G = ConfiguredBlock<T>, the default): the block type whose config name
//    (BlockTraits<B>::config_name) is config.block, from a list fixed at compile time,
//      "mbconv":   MBConv(C_i/2 -> C_i/2, expand_ratio, num_groups), lean when
//                  config.block_memory is "lean" (revox/layers/mbconv.hpp)
//      "standard": ConvBlock(C_i/2 -> C_i/2, num_groups)
//    ConfiguredBlock<T> holds one of them (a std::variant) and passes its parameter names
//    through unchanged, so names, checkpoints and outputs are those of a plain MBConv or
//    ConvBlock.
//  * UNet<T, F, G> (G = F unless given): your own layers (the layer contract,
//    revox/layers/layer.hpp), built by factories called once per F and once per G of every
//    block, with the block's half width C_i/2 and the level i:
//      UNet<float, MyBlock> net(config, [](index_t half_channels, index_t level) {
//        return MyBlock(half_channels);
//      });
//      UNet<float, MyF, MyG> net(config, make_f, make_g);   // F != G: one factory each
//    Each F and G must map (1, C_i/2, D, H, W) to the same shape, be deterministic (no
//    dropout, no running statistics: reversible backward recomputes them) and keep no view
//    of its input beyond its own backward (ReversibleBlock's preconditions,
//    revox/layers/reversible.hpp). config.block and config.expand_ratio are read only by
//    ConfiguredBlock; everything else in the config (widths, blocks_per_level, decoder,
//    num_groups of the decoder's ConvBlocks, reversible) applies to every UNet.
//
// No GroupNorm after the encoder's pointwise conv: it would have to keep its input (a full
// C_i map per level) for its backward, which is exactly what the reversible sequence is
// there to avoid; MBConv and ConvBlock already end in a GroupNorm. D, H and W must each be
// divisible by 2^(L-1) (output_shape throws otherwise: crop or pad first).
//
// Parameter names (flat, PyTorch-style, in this order):
//   encoders.<i>.conv.{weight,bias}
//   encoders.<i>.blocks.<k>.{f,g}.<F's or G's names>   (ReversibleSequence names; for UNet<T>
//                                                       MBConv's or ConvBlock's names)
//   decoders.<i>.reduce.{weight,bias}, decoders.<i>.blocks.<k>.<ConvBlock names>
//   head.{weight,bias}
//   aux_heads.<j>.{weight,bias}   (deep supervision only, j = 1 .. K, after every other name,
//                                  so the other names, their order and their initial values
//                                  are those of the same net without heads)
// where i is the level (decoders.0 is the shallowest decoder level), k the block.
//
// Saved (what forward keeps for backward): a view of x (the caller keeps x alive); per
// encoder level ONLY the level output (the skip; in reversible mode the sequence's backward
// rebuilds its input from it in place) and the sequence's own Saved (scratch-free in
// reversible mode, all activations in stored mode); per decoder level, with
// config.decoder_memory = "lean" (the paper presets' setting), only each ConvBlock's output
// and its GroupNorm's statistics (backward back-propagates ReLU from that output, recomputes
// the upsampled sum from the reduce input and the skip and each convolution from its input,
// and runs GroupNorm's backward in place on the gradient: one extra convolution per block,
// the same results bit for bit), or with "stored" (the default) the sum after the skip and
// each ConvBlock's Saved (convolution and norm outputs) and output; backward follows the
// mode forward ran in. The pooled tensors and the max-pool argmax are NOT kept: backward
// recomputes level i-1's pool from skip i-1 (still intact then, since levels are undone
// deepest first) when level i's pointwise conv needs its input.
// Peak activation memory is therefore independent of blocks_per_level in reversible mode (a
// test measures it with the tracking allocator). Backward runs the head and the decoder
// first (shallowest first), holding each skip's gradient (one skip-sized tensor per level)
// until the encoder is undone deepest first; each sequence propagates its gradient in place.
// Backward: dx ASSIGNED (skipped when dx is empty); parameter gradients ACCUMULATE. Backward
// consumes `saved` (the skips are overwritten by the reconstruction): run forward with
// `saved` again before another backward.
// reversible = false (config, or set_reversible(false)) gives the stored-activation twin:
// the same function and parameters, with every block's activations kept, for comparisons.
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/add.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/ops/activations.hpp"
#include "revox/ops/add.hpp"

namespace revox {

// The encoder blocks UNet<T> can pick by name from config.block: BlockTraits<B> gives block
// type B's config name and builds a B on half_channels channels from a UNetConfig. To offer
// another block, specialise BlockTraits for it and add it to ConfiguredBlock's list.
template <class Block>
struct BlockTraits;

// "mbconv": MBConv(half, half, expand_ratio, num_groups, lean = config.block_memory == "lean").
template <class T>
struct BlockTraits<MBConv<T>> {
  static constexpr const char* config_name = "mbconv";
  static MBConv<T> from_config(const UNetConfig& config, index_t half_channels) {
    return MBConv<T>(half_channels, half_channels, config.expand_ratio, config.num_groups,
                     config.block_memory == "lean");
  }
};

// "standard": ConvBlock(half, half, num_groups).
template <class T>
struct BlockTraits<ConvBlock<T>> {
  static constexpr const char* config_name = "standard";
  static ConvBlock<T> from_config(const UNetConfig& config, index_t half_channels) {
    return ConvBlock<T>(half_channels, half_channels, config.num_groups);
  }
};

// A compile-time list of block types: the variant of them and the variant of their Saved.
template <class... Blocks>
struct BlockList {
  using variant = std::variant<Blocks...>;
  template <class Dev>
  using saved_variant = std::variant<saved_t<Blocks, Dev>...>;
  // True when B is one of Blocks.
  template <class B>
  static constexpr bool contains = (std::is_same_v<B, Blocks> || ...);
};

// The default encoder block of UNet<T>: one of a compile-time list of block types (Blocks:
// MBConv, then ConvBlock), the one whose BlockTraits config_name equals config.block, built
// by its BlockTraits from_config. A layer (revox/layers/layer.hpp) that forwards every call
// to the block it holds; its parameter names are the block's own, unprefixed, so a UNet<T>
// built from it names its parameters as if F and G were the plain MBConv or ConvBlock.
template <class T>
class ConfiguredBlock {
 public:
  using value_type = T;
  // The block types config.block chooses from, in the order of their names in errors.
  using Blocks = BlockList<MBConv<T>, ConvBlock<T>>;
  using variant_type = typename Blocks::variant;

 private:
  static constexpr std::size_t kBlocks = std::variant_size_v<variant_type>;
  template <std::size_t I>
  using block_t = std::variant_alternative_t<I, variant_type>;

  // The position of B in Blocks (each type appears once).
  template <class B, std::size_t I = 0>
  static constexpr std::size_t index_of() {
    static_assert(I < kBlocks, "ConfiguredBlock: not one of its block types");
    if constexpr (std::is_same_v<B, block_t<I>>) {
      return I;
    } else {
      return index_of<B, I + 1>();
    }
  }

 public:
  template <class Dev>
  struct Saved {
    // The alternative matching the block (forward sets it).
    typename Blocks::template saved_variant<Dev> block;
  };

  // The block named config.block; throws revox::Error listing the valid names otherwise.
  ConfiguredBlock(const UNetConfig& config, index_t half_channels)
      : block_(make<0>(config, half_channels)) {}
  // Holds `block`, one of Blocks (an MBConv or a ConvBlock).
  template <class B, class = std::enable_if_t<Blocks::template contains<B>>>
  explicit ConfiguredBlock(B block) : block_(std::in_place_index<index_of<B>()>, std::move(block)) {}

  template <class B>
  bool holds() const {
    return block_.index() == index_of<B>();
  }
  bool is_mbconv() const { return holds<MBConv<T>>(); }
  // The config.block value this block stands for ("mbconv", "standard").
  const char* kind() const {
    return std::visit(
        [](const auto& block) {
          return BlockTraits<std::decay_t<decltype(block)>>::config_name;
        },
        block_);
  }
  variant_type& block() { return block_; }
  const variant_type& block() const { return block_; }

  // The valid config.block values, quoted, e.g. "mbconv" or "standard".
  static std::string config_names() {
    std::string names;
    add_names<0>(names);
    return names;
  }

  Shape5 output_shape(Shape5 in) const {
    return std::visit([&in](const auto& block) { return block.output_shape(in); }, block_);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    std::visit([&fn](auto& block) { block.visit_params(fn); }, block_);
  }

  void reset_parameters(Rng& rng) {
    std::visit([&rng](auto& block) { block.reset_parameters(rng); }, block_);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    std::visit(
        [&](const auto& block) {
          constexpr std::size_t I = index_of<std::decay_t<decltype(block)>>();
          if (saved == nullptr) {
            block.forward(dev, x, y, nullptr);
          } else {
            block.forward(dev, x, y, &saved->block.template emplace<I>());
          }
        },
        block_);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    REVOX_CHECK(saved.block.index() == block_.index(),
                "ConfiguredBlock::backward: `saved` was not filled by this block's forward "
                "(it holds another block kind's state)");
    std::visit(
        [&](auto& block) {
          constexpr std::size_t I = index_of<std::decay_t<decltype(block)>>();
          block.backward(dev, std::get<I>(saved.block), dy, dx);
        },
        block_);
  }

 private:
  template <std::size_t I>
  static variant_type make(const UNetConfig& config, index_t half_channels) {
    if constexpr (I < kBlocks) {
      using Traits = BlockTraits<block_t<I>>;
      if (config.block == Traits::config_name) {
        return variant_type(std::in_place_index<I>, Traits::from_config(config, half_channels));
      }
      return make<I + 1>(config, half_channels);
    } else {
      throw Error(detail::concat("ConfiguredBlock: config.block must be ", config_names(),
                                 ", got \"", config.block, "\""));
    }
  }

  template <std::size_t I>
  static void add_names(std::string& names) {
    if constexpr (I < kBlocks) {
      if (I > 0) names += I + 1 == kBlocks ? " or " : ", ";
      names += std::string("\"") + BlockTraits<block_t<I>>::config_name + "\"";
      add_names<I + 1>(names);
    }
  }

  variant_type block_;
};

template <class T, class F = ConfiguredBlock<T>, class G = F>
class UNet {
  static_assert(check_layer_contract<F>() && check_layer_contract<G>(),
                "UNet<T, F, G>: F and G must satisfy the revox layer contract "
                "(revox/layers/layer.hpp)");
  static_assert(std::is_same_v<typename F::value_type, T> &&
                    std::is_same_v<typename G::value_type, T>,
                "UNet<T, F, G>: F and G must have value_type T");

 public:
  using value_type = T;
  using f_type = F;
  using g_type = G;
  using Block = ReversibleBlock<F, G>;
  using Sequence = ReversibleSequence<Block>;  // one encoder level's blocks
  // True for UNet<T>: F and G are picked from config.block at run time.
  static constexpr bool configured_blocks =
      std::is_same_v<F, ConfiguredBlock<T>> && std::is_same_v<G, ConfiguredBlock<T>>;

  template <class Dev>
  struct DecoderSaved {
    saved_t<PointwiseConv3d<T>, Dev> reduce;  // a view of the decoder's input
    saved_t<UpsampleTrilinear<T>, Dev> upsample;
    // upsampled + skip: the first ConvBlock's input (lean decoder: kept only when the level
    // has no ConvBlock, i.e. when it is the level output; backward recomputes it)
    Tensor<T, Dev> sum;
    std::vector<saved_t<ConvBlock<T>, Dev>> blocks;  // stored decoder only
    std::vector<saved_t<GroupNorm<T>, Dev>> norms;    // lean decoder only: statistics
    std::vector<Tensor<T, Dev>> outputs;  // outputs[k]: ConvBlock k's output
    // The level output (what the next reduce or the head reads).
    TensorView<const T> output() const {
      return outputs.empty() ? sum.cview() : outputs.back().cview();
    }
  };

  template <class Dev>
  struct Saved {
    TensorView<const T> x;
    std::vector<Tensor<T, Dev>> skips;  // skips[i]: encoder level i's output
    std::vector<saved_t<Sequence, Dev>> encoders;  // encoders[i]: level i's sequence
    std::vector<DecoderSaved<Dev>> decoders;  // decoders[i]: decoder level i (i < L-1)
    saved_t<PointwiseConv3d<T>, Dev> head;
    std::vector<saved_t<PointwiseConv3d<T>, Dev>> aux_heads;  // [j - 1]: head of level j
  };

  // UNet<T>: F and G from config.block (ConfiguredBlock<T>).
  explicit UNet(const UNetConfig& config) : config_(config), head_(1, 1) {
    static_assert(configured_blocks,
                  "UNet<T, F, G>(config) builds ConfiguredBlock<T> only; build your own F and "
                  "G with a factory: UNet<T, F>(config, make_f) or UNet<T, F, G>(config, "
                  "make_f, make_g)");
    if constexpr (configured_blocks) {
      auto make = [&config](index_t half_channels, index_t) {
        return ConfiguredBlock<T>(config, half_channels);
      };
      build(make, make);
    }
  }

  // UNet<T, F> (G = F): make_f(index_t half_channels, index_t level) returns an F; it is
  // called twice per reversible block (once for F, once for G), so each has its own
  // parameters.
  template <class MakeF>
  UNet(const UNetConfig& config, MakeF&& make_f) : config_(config), head_(1, 1) {
    static_assert(std::is_same_v<F, G>,
                  "UNet<T, F, G>(config, make): F and G differ; pass one factory for each, "
                  "UNet<T, F, G>(config, make_f, make_g)");
    static_assert(std::is_invocable_r_v<F, MakeF&, index_t, index_t>,
                  "UNet<T, F>(config, make_f): make_f must be callable as "
                  "make_f(index_t half_channels, index_t level) and return an F");
    build(make_f, make_f);
  }

  // UNet<T, F, G>: make_f(half_channels, level) returns an F, make_g(half_channels, level) a
  // G; per block make_f is called before make_g.
  template <class MakeF, class MakeG>
  UNet(const UNetConfig& config, MakeF&& make_f, MakeG&& make_g) : config_(config), head_(1, 1) {
    static_assert(std::is_invocable_r_v<F, MakeF&, index_t, index_t>,
                  "UNet<T, F, G>(config, make_f, make_g): make_f must be callable as "
                  "make_f(index_t half_channels, index_t level) and return an F");
    static_assert(std::is_invocable_r_v<G, MakeG&, index_t, index_t>,
                  "UNet<T, F, G>(config, make_f, make_g): make_g must be callable as "
                  "make_g(index_t half_channels, index_t level) and return a G");
    build(make_f, make_g);
  }

  const UNetConfig& config() const { return config_; }
  index_t levels() const { return config_.levels(); }

  // Encoder level `level`'s reversible blocks (blocks_per_level of them).
  Sequence& encoder_blocks(index_t level) { return encoders_[checked_level(level)].blocks; }
  const Sequence& encoder_blocks(index_t level) const {
    return encoders_[checked_level(level)].blocks;
  }

  // false: every reversible sequence keeps its activations (the stored-activation twin).
  void set_reversible(bool reversible) {
    config_.reversible = reversible;
    for (auto& encoder : encoders_) encoder.blocks.set_store_activations(!reversible);
  }
  bool reversible() const { return config_.reversible; }

  // "lean" or "stored" (UNetConfig::decoder_memory): what the decoder keeps for backward.
  // Both give the same outputs and gradients; a backward follows the mode its forward ran in.
  void set_decoder_memory(const std::string& mode) {
    REVOX_CHECK(mode == "lean" || mode == "stored",
                "UNet::set_decoder_memory: expected \"lean\" or \"stored\", got \"", mode, "\"");
    config_.decoder_memory = mode;
  }
  bool lean_decoder() const { return config_.decoder_memory == "lean"; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "UNet: input extents must be positive, got ", in);
    REVOX_CHECK_EQ("UNet: input channels", config_.in_channels, in.c);
    const index_t divisor = config_.size_divisor();
    const char* axes[3] = {"D", "H", "W"};
    const index_t extents[3] = {in.d, in.h, in.w};
    for (int a = 0; a < 3; ++a) {
      REVOX_CHECK(extents[a] % divisor == 0, "UNet: input ", axes[a], " (", extents[a],
                  ") must be divisible by ", divisor, " (", levels(),
                  " levels); crop or pad to a multiple first");
    }
    return in.with_channels(config_.out_channels);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    for (std::size_t i = 0; i < encoders_.size(); ++i) {
      const std::string prefix = "encoders." + std::to_string(i) + ".";
      encoders_[i].conv.visit_params(prefixed(fn, prefix + "conv."));
      encoders_[i].blocks.visit_params(prefixed(fn, prefix + "blocks."));
    }
    for (std::size_t i = 0; i < decoders_.size(); ++i) {
      const std::string prefix = "decoders." + std::to_string(i) + ".";
      decoders_[i].reduce.visit_params(prefixed(fn, prefix + "reduce."));
      for (std::size_t k = 0; k < decoders_[i].blocks.size(); ++k) {
        decoders_[i].blocks[k].visit_params(
            prefixed(fn, prefix + "blocks." + std::to_string(k) + "."));
      }
    }
    head_.visit_params(prefixed(fn, "head."));
    for (std::size_t j = 0; j < aux_heads_.size(); ++j) {
      aux_heads_[j].visit_params(prefixed(fn, "aux_heads." + std::to_string(j + 1) + "."));
    }
  }

  // The shape of deep-supervision output j (1 .. config.deep_supervision) for input `in`.
  Shape5 aux_output_shape(Shape5 in, index_t j) const {
    REVOX_CHECK(j >= 1 && j <= config_.deep_supervision, "UNet: deep-supervision output ", j,
                " does not exist (the net has ", config_.deep_supervision, ")");
    const Shape5 out = output_shape(in);
    return Shape5{out.n, out.c, out.d >> j, out.h >> j, out.w >> j};
  }

  void reset_parameters(Rng& rng) {
    for (auto& encoder : encoders_) {
      encoder.conv.reset_parameters(rng);
      encoder.blocks.reset_parameters(rng);
    }
    for (auto& decoder : decoders_) {
      decoder.reduce.reset_parameters(rng);
      for (auto& block : decoder.blocks) block.reset_parameters(rng);
    }
    head_.reset_parameters(rng);
    for (auto& head : aux_heads_) head.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved,
               const std::vector<TensorView<T>>& aux = {}) const {
    check_output_view("UNet", output_shape(x.shape), y.shape);
    REVOX_CHECK(aux.empty() || aux.size() == aux_heads_.size(), "UNet::forward: ", aux.size(),
                " deep-supervision outputs given, the net has ", aux_heads_.size());
    for (std::size_t j = 0; j < aux.size(); ++j) {
      check_output_view("UNet (deep-supervision output)",
                        aux_output_shape(x.shape, static_cast<index_t>(j + 1)), aux[j].shape);
    }
    const std::size_t levels = encoders_.size();
    std::vector<Tensor<T, Dev>> skips(levels);
    // Encoder. `pooled` is the current level's input for i > 0.
    Tensor<T, Dev> pooled;
    if (saved != nullptr) {
      *saved = Saved<Dev>{};
      saved->x = x;
      saved->encoders.resize(levels);
      saved->decoders.resize(levels - 1);
      saved->aux_heads.resize(aux.size());
    }
    for (std::size_t i = 0; i < levels; ++i) {
      const Encoder& encoder = encoders_[i];
      const TensorView<const T> in = i == 0 ? x : pooled.cview();
      skips[i] = Tensor<T, Dev>(encoder.conv.output_shape(in.shape));
      encoder.conv.forward(dev, in, skips[i].view(), nullptr);
      pooled = Tensor<T, Dev>();
      // In place on the level buffer: the buffer becomes the level output.
      encoder.blocks.forward(dev, skips[i].cview(), skips[i].view(),
                             saved != nullptr ? &saved->encoders[i] : nullptr);
      if (i + 1 < levels) {
        pooled = Tensor<T, Dev>(pool_.output_shape(skips[i].shape()));
        pool_.forward(dev, skips[i].cview(), pooled.view(), nullptr);
      }
    }
    // Decoder, deepest first. `below` owns the previous decoder output when nothing is saved.
    Tensor<T, Dev> below;
    TensorView<const T> in = skips[levels - 1].cview();
    for (std::size_t level = levels - 1; level-- > 0;) {
      const Decoder& decoder = decoders_[level];
      DecoderSaved<Dev> local;
      DecoderSaved<Dev>& ds = saved != nullptr ? saved->decoders[level] : local;
      Tensor<T, Dev> reduced(decoder.reduce.output_shape(in.shape));
      decoder.reduce.forward(dev, in, reduced.view(), saved != nullptr ? &ds.reduce : nullptr);
      if (saved == nullptr) {
        below = Tensor<T, Dev>();
        if (level + 2 == levels) skips[levels - 1] = Tensor<T, Dev>();
      }
      ds.sum = Tensor<T, Dev>(upsample_.output_shape(reduced.shape()));
      upsample_.forward(dev, reduced.cview(), ds.sum.view(),
                        saved != nullptr ? &ds.upsample : nullptr);
      reduced = Tensor<T, Dev>();
      skip_add_.forward(dev, ds.sum.cview(), skips[level].cview(), ds.sum.view());
      if (saved == nullptr) skips[level] = Tensor<T, Dev>();
      const bool lean = lean_decoder();
      if (lean) {
        ds.norms.resize(decoder.blocks.size());
      } else {
        ds.blocks.resize(decoder.blocks.size());
      }
      for (std::size_t k = 0; k < decoder.blocks.size(); ++k) {
        const TensorView<const T> block_in = k == 0 ? ds.sum.cview() : ds.outputs.back().cview();
        Tensor<T, Dev> out(decoder.blocks[k].output_shape(block_in.shape));
        if (lean) {
          // conv -> GroupNorm -> ReLU, the last two in place in `out`; only the statistics
          // are kept (the view GroupNorm's Saved takes of `out` is replaced in backward).
          const ConvBlock<T>& block = decoder.blocks[k];
          block.conv().forward(dev, block_in, out.view(), nullptr);
          block.norm().forward(dev, out.cview(), out.view(),
                               saved != nullptr ? &ds.norms[k] : nullptr);
          ops::relu(dev, out.cview(), out.view());
          if (saved != nullptr) {
            ds.norms[k].x = TensorView<const T>{};
            if (k == 0) ds.sum = Tensor<T, Dev>();  // recomputed in backward
          }
        } else {
          decoder.blocks[k].forward(dev, block_in, out.view(),
                                    saved != nullptr ? &ds.blocks[k] : nullptr);
        }
        if (saved == nullptr) {
          if (k == 0) {
            ds.sum = Tensor<T, Dev>();
          } else {
            ds.outputs.pop_back();
          }
        }
        ds.outputs.push_back(std::move(out));
      }
      if (saved == nullptr) {
        below = ds.outputs.empty() ? std::move(ds.sum) : std::move(ds.outputs.back());
        in = below.cview();
      } else {
        in = ds.output();
      }
      if (level >= 1 && level <= aux.size()) {
        aux_heads_[level - 1].forward(dev, in, aux[level - 1],
                                      saved != nullptr ? &saved->aux_heads[level - 1] : nullptr);
      }
    }
    head_.forward(dev, in, y, saved != nullptr ? &saved->head : nullptr);
    if (saved != nullptr) saved->skips = std::move(skips);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx,
                const std::vector<TensorView<const T>>& daux = {}) {
    const std::size_t levels = encoders_.size();
    REVOX_CHECK(daux.empty() || daux.size() == saved.aux_heads.size(), "UNet::backward: ",
                daux.size(), " deep-supervision gradients given, forward computed ",
                saved.aux_heads.size(), " outputs");
    REVOX_CHECK(saved.skips.size() == levels && !saved.skips[levels - 1].empty(),
                "UNet::backward: nothing saved (or already consumed); run forward with `saved` "
                "before each backward");
    const Shape5 out_shape = output_shape(saved.x.shape);
    REVOX_CHECK(dy.shape == out_shape, "UNet::backward: dy shape ", dy.shape,
                " does not match the output shape ", out_shape);
    if (!dx.empty()) check_output_view("UNet::backward (dx)", saved.x.shape, dx.shape);

    // dskips[i]: the gradient reaching encoder level i's output.
    std::vector<Tensor<T, Dev>> dskips(levels);
    // Head, then the decoder shallowest first; `dout` is the gradient of the current
    // decoder level's output.
    const TensorView<const T> head_in =
        levels == 1 ? saved.skips[0].cview() : saved.decoders[0].output();
    Tensor<T, Dev> dout(head_in.shape);
    head_.backward(dev, saved.head, dy, dout.view());
    for (std::size_t level = 0; level + 1 < levels; ++level) {
      Decoder& decoder = decoders_[level];
      DecoderSaved<Dev>& ds = saved.decoders[level];
      if (level >= 1 && level <= daux.size()) {
        // The level output also fed its deep-supervision head.
        Tensor<T, Dev> dhead(dout.shape());
        aux_heads_[level - 1].backward(dev, saved.aux_heads[level - 1], daux[level - 1],
                                       dhead.view());
        ops::add_inplace(dev, dout.view(), dhead.cview());
      }
      const TensorView<const T> reduce_in =
          level + 2 == levels ? saved.skips[levels - 1].cview() : saved.decoders[level + 1].output();
      // Follow what forward kept (the mode may have changed since).
      if (!ds.norms.empty()) {
        lean_decoder_backward(dev, level, reduce_in, saved.skips[level].cview(), ds, dout);
      } else {
        for (std::size_t k = decoder.blocks.size(); k-- > 0;) {
          Tensor<T, Dev> din(k == 0 ? ds.sum.shape() : ds.outputs[k - 1].shape());
          decoder.blocks[k].backward(dev, ds.blocks[k], dout.cview(), din.view());
          dout = std::move(din);
        }
      }
      // dout is now d(sum): the skip gets it unchanged, the upsampling its adjoint.
      Tensor<T, Dev> dreduced(ds.upsample.input_shape);
      upsample_.backward(dev, ds.upsample, dout.cview(), dreduced.view());
      dskips[level] = std::move(dout);
      dout = Tensor<T, Dev>(reduce_in.shape);
      decoder.reduce.backward(dev, ds.reduce, dreduced.cview(), dout.view());
      ds = DecoderSaved<Dev>{};  // its only reader (decoder level - 1's reduce) is done
    }
    dskips[levels - 1] = std::move(dout);

    // Encoder, deepest first. Level i's sequence rebuilds its input in skips[i]; its
    // pointwise conv needs level i's input, which is recomputed from skips[i-1].
    for (std::size_t i = levels; i-- > 0;) {
      Encoder& encoder = encoders_[i];
      // The sequence propagates the gradient in place: dskips[i] becomes d(conv output).
      Tensor<T, Dev> dconv = std::move(dskips[i]);
      encoder.blocks.backward(dev, saved.encoders[i], dconv.cview(), dconv.view());
      saved.encoders[i] = saved_t<Sequence, Dev>{};
      saved.skips[i] = Tensor<T, Dev>();
      saved_t<PointwiseConv3d<T>, Dev> conv_saved{};
      if (i == 0) {
        conv_saved.x = saved.x;
        revox::backward(encoder.conv, dev, conv_saved, dconv.cview(), dx, gradients_for(dx));
        continue;
      }
      saved_t<MaxPool3d<T>, Dev> pool_saved{};
      Tensor<T, Dev> pooled(pool_.output_shape(saved.skips[i - 1].shape()));
      pool_.forward(dev, saved.skips[i - 1].cview(), pooled.view(), &pool_saved);
      conv_saved.x = pooled.cview();
      Tensor<T, Dev> dpooled(pooled.shape());
      encoder.conv.backward(dev, conv_saved, dconv.cview(), dpooled.view());
      dconv = Tensor<T, Dev>();
      pooled = Tensor<T, Dev>();
      Tensor<T, Dev> dpool_in(saved.skips[i - 1].shape());
      pool_.backward(dev, pool_saved, dpooled.cview(), dpool_in.view());
      dpooled = Tensor<T, Dev>();
      ops::add_inplace(dev, dskips[i - 1].view(), dpool_in.cview());
    }
    saved = Saved<Dev>{};
  }

 private:
  struct Encoder {
    PointwiseConv3d<T> conv;
    Sequence blocks;
  };
  struct Decoder {
    PointwiseConv3d<T> reduce;
    std::vector<ConvBlock<T>> blocks;
  };

  template <class MakeF, class MakeG>
  void build(MakeF& make_f, MakeG& make_g) {
    validate_unet_config(config_);
    const index_t levels = config_.levels();
    for (index_t i = 0; i < levels; ++i) {
      const index_t width = config_.widths[static_cast<std::size_t>(i)];
      const index_t in =
          i == 0 ? config_.in_channels : config_.widths[static_cast<std::size_t>(i - 1)];
      const index_t half = width / 2;
      std::vector<Block> blocks;
      blocks.reserve(static_cast<std::size_t>(config_.blocks_per_level));
      for (index_t k = 0; k < config_.blocks_per_level; ++k) {
        F f = make_f(half, i);
        G g = make_g(half, i);
        blocks.emplace_back(std::move(f), std::move(g));
      }
      encoders_.push_back(Encoder{PointwiseConv3d<T>(in, width, true), Sequence(std::move(blocks))});
    }
    for (index_t i = 0; i + 1 < levels; ++i) {
      const index_t width = config_.widths[static_cast<std::size_t>(i)];
      Decoder decoder{
          PointwiseConv3d<T>(config_.widths[static_cast<std::size_t>(i + 1)], width, true), {}};
      for (index_t k = 0; k < config_.decoder_blocks; ++k) {
        decoder.blocks.emplace_back(width, width, config_.num_groups);
      }
      decoders_.push_back(std::move(decoder));
    }
    head_ = PointwiseConv3d<T>(config_.widths[0], config_.out_channels, true);
    for (index_t j = 1; j <= config_.deep_supervision; ++j) {
      aux_heads_.emplace_back(config_.widths[static_cast<std::size_t>(j)], config_.out_channels,
                              true);
    }
    set_reversible(config_.reversible);
  }

  // The lean decoder's backward of level `level`'s ConvBlocks: on entry `dout` is the
  // gradient of the level output, on return the gradient of the sum (upsampled + skip).
  // Block k (conv -> GroupNorm -> ReLU) back-propagates ReLU from its kept output (for ReLU,
  // out <= 0 exactly where its input <= 0, NaN included, so the result is the same), frees
  // that output (its other reader, the next block or the next level's reduce or the head,
  // has run its backward already), recomputes its convolution from its input (block k-1's
  // output, or for k = 0 the sum, recomputed from the reduce input and the skip), runs the
  // GroupNorm backward in place on the gradient with the statistics forward kept, and then
  // the convolution's backward. Peak: the gradient, the block input and the recomputed
  // convolution output (three maps of the level's width) beside what is resident.
  template <class Dev>
  void lean_decoder_backward(const Dev& dev, std::size_t level, TensorView<const T> reduce_in,
                             TensorView<const T> skip, DecoderSaved<Dev>& ds,
                             Tensor<T, Dev>& dout) {
    Decoder& decoder = decoders_[level];
    const std::size_t blocks = decoder.blocks.size();
    for (std::size_t k = blocks; k-- > 0;) {
      ConvBlock<T>& block = decoder.blocks[k];
      ops::relu_backward(dev, ds.outputs[k].cview(), dout.cview(), dout.view());
      ds.outputs[k] = Tensor<T, Dev>();
      Tensor<T, Dev> sum;  // block 0's input, recomputed
      if (k == 0) {
        Tensor<T, Dev> reduced(decoder.reduce.output_shape(reduce_in.shape));
        decoder.reduce.forward(dev, reduce_in, reduced.view(), nullptr);
        sum = Tensor<T, Dev>(upsample_.output_shape(reduced.shape()));
        upsample_.forward(dev, reduced.cview(), sum.view(), nullptr);
        reduced = Tensor<T, Dev>();
        skip_add_.forward(dev, sum.cview(), skip, sum.view());
      }
      const TensorView<const T> block_in = k == 0 ? sum.cview() : ds.outputs[k - 1].cview();
      {
        Tensor<T, Dev> conv_out(dout.shape());
        block.conv().forward(dev, block_in, conv_out.view(), nullptr);
        ds.norms[k].x = conv_out.cview();
        block.norm().backward(dev, ds.norms[k], dout.cview(), dout.view());
      }
      saved_t<Conv3d<T>, Dev> conv_saved{};
      conv_saved.x = block_in;
      Tensor<T, Dev> din(block_in.shape);
      block.conv().backward(dev, conv_saved, dout.cview(), din.view());
      dout = std::move(din);
    }
  }

  std::size_t checked_level(index_t level) const {
    REVOX_CHECK(level >= 0 && level < levels(), "UNet::encoder_blocks: level ", level,
                " is out of range (the UNet has ", levels(), " levels)");
    return static_cast<std::size_t>(level);
  }

  template <class Fn>
  static auto prefixed(Fn& fn, std::string prefix) {
    return [&fn, prefix = std::move(prefix)](const std::string& name, Param<T>& p) {
      fn(prefix + name, p);
    };
  }

  UNetConfig config_;
  std::vector<Encoder> encoders_;
  std::vector<Decoder> decoders_;
  PointwiseConv3d<T> head_;
  std::vector<PointwiseConv3d<T>> aux_heads_;  // [j - 1]: deep-supervision head of level j
  MaxPool3d<T> pool_;
  UpsampleTrilinear<T> upsample_;
  Add<T> skip_add_;
};

}  // namespace revox
