// revox/models/unet.hpp — UNet<T>: the generic reversible 3D U-Net of the paper (Pendse,
// Thangarasa et al., arXiv 2104.09648; docs/architecture.md section 4), configured at run
// time by a UNetConfig (revox/models/unet_config.hpp).
//
//   x (N, in_channels, D, H, W)
//   encoder level i = 0 .. L-1 (C_i = widths[i]; level 0 reads x, level i > 0 reads
//     MaxPool3d(2) of level i-1's output):
//       PointwiseConv3d(C_{i-1} -> C_i, bias)            into the level buffer
//       ReversibleSequence of blocks_per_level ReversibleBlock<F, G>, IN PLACE on that buffer,
//         F, G = MBConv(C_i/2 -> C_i/2, expand_ratio, num_groups)   (block "mbconv")
//              or ConvBlock(C_i/2 -> C_i/2, num_groups)             (block "standard")
//       the buffer then holds the level output = the skip tensor of level i.
//   decoder level i = L-2 .. 0 (reads the deepest skip for i = L-2, else decoder i+1's output):
//       PointwiseConv3d(C_{i+1} -> C_i, bias) "reduce"   (before the upsampling: 8x cheaper)
//       UpsampleTrilinear(x2), + skip_i (additive skip)
//       decoder_blocks x ConvBlock(C_i -> C_i, num_groups)
//   head: PointwiseConv3d(C_0 -> out_channels, bias)    logits (WT, TC, ET), no activation
//   y (N, out_channels, D, H, W)
//
// No GroupNorm after the encoder's pointwise conv: it would have to keep its input (a full
// C_i map per level) for its backward, which is exactly what the reversible sequence is
// there to avoid; every F and G already ends in a GroupNorm. D, H and W must each be
// divisible by 2^(L-1) (output_shape throws otherwise: crop or pad first).
//
// Parameter names (flat, PyTorch-style, in this order):
//   encoders.<i>.conv.{weight,bias}
//   encoders.<i>.blocks.<k>.{f,g}.<MBConv or ConvBlock names>   (ReversibleSequence names)
//   decoders.<i>.reduce.{weight,bias}, decoders.<i>.blocks.<k>.<ConvBlock names>
//   head.{weight,bias}
// where i is the level (decoders.0 is the shallowest decoder level), k the block.
//
// Saved (what forward keeps for backward): a view of x (the caller keeps x alive); per
// encoder level ONLY the level output (the skip; in reversible mode the sequence's backward
// rebuilds its input from it in place) and the sequence's own Saved (scratch-free in
// reversible mode, all activations in stored mode); per decoder level the sum after the
// skip, each ConvBlock's Saved and output. The pooled tensors and the max-pool argmax are
// NOT kept: backward recomputes level i-1's pool from skip i-1 (still intact then, since
// levels are undone deepest first) when level i's pointwise conv needs its input.
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
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/add.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/ops/add.hpp"

namespace revox {

template <class T>
class UNet {
 public:
  using value_type = T;
  using MBConvSequence = ReversibleSequence<ReversibleBlock<MBConv<T>, MBConv<T>>>;
  using StandardSequence = ReversibleSequence<ReversibleBlock<ConvBlock<T>, ConvBlock<T>>>;

  template <class Dev>
  struct EncoderSaved {
    // Only the one matching the configured block kind is used.
    saved_t<MBConvSequence, Dev> mbconv;
    saved_t<StandardSequence, Dev> standard;
  };

  template <class Dev>
  struct DecoderSaved {
    saved_t<PointwiseConv3d<T>, Dev> reduce;  // a view of the decoder's input
    saved_t<UpsampleTrilinear<T>, Dev> upsample;
    Tensor<T, Dev> sum;  // upsampled + skip: the first ConvBlock's input
    std::vector<saved_t<ConvBlock<T>, Dev>> blocks;
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
    std::vector<EncoderSaved<Dev>> encoders;
    std::vector<DecoderSaved<Dev>> decoders;  // decoders[i]: decoder level i (i < L-1)
    saved_t<PointwiseConv3d<T>, Dev> head;
  };

  explicit UNet(const UNetConfig& config) : config_(config), head_(1, 1) {
    validate_unet_config(config);
    const index_t levels = config.levels();
    for (index_t i = 0; i < levels; ++i) {
      const index_t width = config.widths[static_cast<std::size_t>(i)];
      const index_t in = i == 0 ? config.in_channels : config.widths[static_cast<std::size_t>(i - 1)];
      const index_t half = width / 2;
      Encoder encoder{PointwiseConv3d<T>(in, width, true), std::nullopt, std::nullopt};
      if (config.block == "mbconv") {
        std::vector<ReversibleBlock<MBConv<T>, MBConv<T>>> blocks;
        for (index_t k = 0; k < config.blocks_per_level; ++k) {
          blocks.emplace_back(MBConv<T>(half, half, config.expand_ratio, config.num_groups),
                              MBConv<T>(half, half, config.expand_ratio, config.num_groups));
        }
        encoder.mbconv.emplace(std::move(blocks));
      } else {
        std::vector<ReversibleBlock<ConvBlock<T>, ConvBlock<T>>> blocks;
        for (index_t k = 0; k < config.blocks_per_level; ++k) {
          blocks.emplace_back(ConvBlock<T>(half, half, config.num_groups),
                              ConvBlock<T>(half, half, config.num_groups));
        }
        encoder.standard.emplace(std::move(blocks));
      }
      encoders_.push_back(std::move(encoder));
    }
    for (index_t i = 0; i + 1 < levels; ++i) {
      const index_t width = config.widths[static_cast<std::size_t>(i)];
      Decoder decoder{
          PointwiseConv3d<T>(config.widths[static_cast<std::size_t>(i + 1)], width, true), {}};
      for (index_t k = 0; k < config.decoder_blocks; ++k) {
        decoder.blocks.emplace_back(width, width, config.num_groups);
      }
      decoders_.push_back(std::move(decoder));
    }
    head_ = PointwiseConv3d<T>(config.widths[0], config.out_channels, true);
    set_reversible(config.reversible);
  }

  const UNetConfig& config() const { return config_; }
  index_t levels() const { return config_.levels(); }

  // false: every reversible sequence keeps its activations (the stored-activation twin).
  void set_reversible(bool reversible) {
    config_.reversible = reversible;
    for (auto& encoder : encoders_) {
      if (encoder.mbconv) encoder.mbconv->set_store_activations(!reversible);
      if (encoder.standard) encoder.standard->set_store_activations(!reversible);
    }
  }
  bool reversible() const { return config_.reversible; }

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
      if (encoders_[i].mbconv) encoders_[i].mbconv->visit_params(prefixed(fn, prefix + "blocks."));
      if (encoders_[i].standard) {
        encoders_[i].standard->visit_params(prefixed(fn, prefix + "blocks."));
      }
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
  }

  void reset_parameters(Rng& rng) {
    for (auto& encoder : encoders_) {
      encoder.conv.reset_parameters(rng);
      if (encoder.mbconv) encoder.mbconv->reset_parameters(rng);
      if (encoder.standard) encoder.standard->reset_parameters(rng);
    }
    for (auto& decoder : decoders_) {
      decoder.reduce.reset_parameters(rng);
      for (auto& block : decoder.blocks) block.reset_parameters(rng);
    }
    head_.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("UNet", output_shape(x.shape), y.shape);
    const std::size_t levels = encoders_.size();
    std::vector<Tensor<T, Dev>> skips(levels);
    // Encoder. `pooled` is the current level's input for i > 0.
    Tensor<T, Dev> pooled;
    if (saved != nullptr) {
      *saved = Saved<Dev>{};
      saved->x = x;
      saved->encoders.resize(levels);
      saved->decoders.resize(levels - 1);
    }
    for (std::size_t i = 0; i < levels; ++i) {
      const Encoder& encoder = encoders_[i];
      const TensorView<const T> in = i == 0 ? x : pooled.cview();
      skips[i] = Tensor<T, Dev>(encoder.conv.output_shape(in.shape));
      encoder.conv.forward(dev, in, skips[i].view(), nullptr);
      pooled = Tensor<T, Dev>();
      run_sequence_forward(dev, encoder, skips[i].view(),
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
      ds.blocks.resize(decoder.blocks.size());
      for (std::size_t k = 0; k < decoder.blocks.size(); ++k) {
        const TensorView<const T> block_in = k == 0 ? ds.sum.cview() : ds.outputs.back().cview();
        Tensor<T, Dev> out(decoder.blocks[k].output_shape(block_in.shape));
        decoder.blocks[k].forward(dev, block_in, out.view(),
                                  saved != nullptr ? &ds.blocks[k] : nullptr);
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
    }
    head_.forward(dev, in, y, saved != nullptr ? &saved->head : nullptr);
    if (saved != nullptr) saved->skips = std::move(skips);
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const std::size_t levels = encoders_.size();
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
      for (std::size_t k = decoder.blocks.size(); k-- > 0;) {
        Tensor<T, Dev> din(k == 0 ? ds.sum.shape() : ds.outputs[k - 1].shape());
        decoder.blocks[k].backward(dev, ds.blocks[k], dout.cview(), din.view());
        dout = std::move(din);
      }
      // dout is now d(sum): the skip gets it unchanged, the upsampling its adjoint.
      Tensor<T, Dev> dreduced(ds.upsample.input_shape);
      upsample_.backward(dev, ds.upsample, dout.cview(), dreduced.view());
      dskips[level] = std::move(dout);
      const TensorView<const T> reduce_in =
          level + 2 == levels ? saved.skips[levels - 1].cview() : saved.decoders[level + 1].output();
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
      run_sequence_backward(dev, encoder, saved.encoders[i], dconv.cview(), dconv.view());
      saved.encoders[i] = EncoderSaved<Dev>{};
      saved.skips[i] = Tensor<T, Dev>();
      saved_t<PointwiseConv3d<T>, Dev> conv_saved{};
      if (i == 0) {
        conv_saved.x = saved.x;
        encoder.conv.backward(dev, conv_saved, dconv.cview(), dx);
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
    std::optional<MBConvSequence> mbconv;
    std::optional<StandardSequence> standard;
  };
  struct Decoder {
    PointwiseConv3d<T> reduce;
    std::vector<ConvBlock<T>> blocks;
  };

  template <class Fn>
  static auto prefixed(Fn& fn, std::string prefix) {
    return [&fn, prefix = std::move(prefix)](const std::string& name, Param<T>& p) {
      fn(prefix + name, p);
    };
  }

  template <class Dev>
  static void run_sequence_forward(const Dev& dev, const Encoder& encoder, TensorView<T> buffer,
                                   EncoderSaved<Dev>* saved) {
    if (encoder.mbconv) {
      encoder.mbconv->forward(dev, buffer, buffer, saved != nullptr ? &saved->mbconv : nullptr);
    } else {
      encoder.standard->forward(dev, buffer, buffer,
                                saved != nullptr ? &saved->standard : nullptr);
    }
  }

  template <class Dev>
  static void run_sequence_backward(const Dev& dev, Encoder& encoder, EncoderSaved<Dev>& saved,
                                    TensorView<const T> dy, TensorView<T> dx) {
    if (encoder.mbconv) {
      encoder.mbconv->backward(dev, saved.mbconv, dy, dx);
    } else {
      encoder.standard->backward(dev, saved.standard, dy, dx);
    }
  }

  UNetConfig config_;
  std::vector<Encoder> encoders_;
  std::vector<Decoder> decoders_;
  PointwiseConv3d<T> head_;
  MaxPool3d<T> pool_;
  UpsampleTrilinear<T> upsample_;
  Add<T> skip_add_;
};

}  // namespace revox
