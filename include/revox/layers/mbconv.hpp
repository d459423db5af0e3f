// revox/layers/mbconv.hpp — MBConv<T>: the MobileNetV2 inverted bottleneck in 3D, as the
// paper uses it for F and G of its reversible blocks.
//
//   x (N, Cin, D, H, W)
//   -> expand:   1x1x1 conv Cin -> Cin*e (no bias) -> GroupNorm -> ReLU6
//   -> depthwise: 3x3x3 depthwise conv (no bias)   -> GroupNorm -> ReLU6
//   -> project:  1x1x1 conv Cin*e -> Cout (no bias) -> GroupNorm          (linear bottleneck)
//   y (N, Cout, D, H, W)
// With expand ratio e = 1 the expansion conv, its norm and its activation are absent, as in
// MobileNetV2. The convolutions have no bias because a GroupNorm follows each of them. There
// is no residual connection inside the block: in the reversible U-Net the coupling
// y1 = x1 + F(x2) provides it.
//
// Parameters (PyTorch state-dict names of the equivalent module): expand.weight
// [Cin*e, Cin, 1, 1, 1], expand_norm.{weight,bias}, depthwise.weight [Cin*e, 1, 3, 3, 3],
// depthwise_norm.{weight,bias}, project.weight [Cout, Cin*e, 1, 1, 1],
// project_norm.{weight,bias}. The sub-layers are named members (the expand stage, conv and
// norm, one optional member present when e > 1); visit_named is the one table that pairs
// each with its name, and visit_params and reset_parameters walk it, so the names and their
// order do not depend on the members' order (tests/test_parameter_names.cpp holds them).
//
// Two memory modes, with the same parameters, names, output and (up to rounding) gradients:
//
// Stored (lean = false, the default): the members run as a Sequential (conv, norm, ReLU6 per
// stage) through pointers to them; Saved holds that Sequential's Saved: the sub-layers' Saved
// and the intermediate activations (six of the seven are Cin*e channels wide); without
// `saved` at most two intermediates are alive.
//
// Lean (lean = true, or set_lean(true)): the hidden channels are processed in chunks of one
// GroupNorm group (Cg = Cin*e / num_groups channels) of one sample at a time. Expand, its
// norm, ReLU6, the depthwise conv, its norm and ReLU6 are independent across groups (the
// statistics are per (n, group), the depthwise conv per channel, the expand conv's weight
// rows of group g are contiguous); only the project conv mixes them, x3 = sum_g W3[:, group g]
// a2_g, so each group's columns of W3 are gathered (ops::copy per row) into a small
// [Cout, Cg] tensor and x3 is accumulated group by group.
//   Saved: a view of x, mean and rstd of the three norms per (n, group) (doubles, as
//   GroupNorm keeps them) and x3, the project conv's output before its norm (Cout channels).
//   backward: project_norm's backward gives dx3 and x3 is freed; then, per group and sample,
//   the expand and depthwise stages are RECOMPUTED from x (the extra compute of lean: one
//   more forward of expand conv, its norm, the depthwise conv and its norm per backward; the
//   project conv is not recomputed) and back-propagated at once. ReLU6's backward takes its
//   mask from the activation's output, computed in place (relu6(v) lies in (0, 6) exactly
//   when v does).
//   Tracked memory above the caller's buffers: forward x3 + one Cout-channel partial sum +
//   2 chunks; backward x3 + dx3 (Cout channels each) for project_norm, then dx3 + 5 chunks
//   (3 for e = 1), or dx3 + 1 chunk + one Cin-channel temporary for dx. E.g. (1, 15, 32^3), e = 2, 5 groups (chunks of
//   6 channels): the training step's tracked peak (tests/test_mbconv.cpp) is 37386128 bytes
//   stored, 13794088 lean, of which x, target, y and dy take 7864320 in both.
//   Forward without `saved` runs the same chunked code (x3, the partial sum and 2 chunks;
//   never a hidden-wide map), so that its y is bit for bit forward(saved)'s: a reversible
//   block recomputes F and G with `saved` in backward and relies on that. This is below the
//   stored forward's two intermediates (2 hidden maps, or a2 and x3) except in corner cases
//   such as e = 1 with one group and Cout = Cin (x3 + 2 hidden maps).
//   Lean costs more, smaller kernel launches than the stored mode, Cout small copies per
//   group for W3's columns (and their gradient's scatter-add), and the project conv's
//   partial sums added group by group.
// The mode is the layer's (copies keep it); backward follows the mode its forward ran in.
// backward: dx assigned, parameter gradients accumulated (the layer contract).
// Preconditions: Cin*e and Cout divisible by num_groups.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <variant>

#include "revox/layers/activations.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/ops/activations.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/copy.hpp"
#include "revox/ops/depthwise_conv3d.hpp"
#include "revox/ops/fill.hpp"
#include "revox/ops/group_norm.hpp"
#include "revox/ops/pointwise_conv3d.hpp"

namespace revox {

template <class T>
class MBConv {
  // A layer that runs one of MBConv's sub-layers through a pointer to it, so that the stored
  // mode can run the members as a Sequential (its memory schedule and its results) while the
  // members keep their names. Built from a const member it can only run forward (what
  // MBConv::forward, a const function, needs); built from a mutable one also backward. It
  // reports no parameters: the names come from MBConv::visit_named alone.
  template <class L>
  class Member {
    static_assert(!is_reversible_v<L> && !keeps_output_v<L>,
                  "MBConv::Member: for layers that keep neither input nor output only");

   public:
    using value_type = T;
    template <class Dev>
    using Saved = saved_t<L, Dev>;

    explicit Member(const L& layer) : layer_(&layer) {}
    explicit Member(L& layer) : layer_(&layer), mutable_layer_(&layer) {}

    Shape5 output_shape(Shape5 in) const { return layer_->output_shape(in); }
    template <class Fn>
    void visit_params(Fn&&) {}
    void reset_parameters(Rng&) {}

    template <class Dev>
    void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                 nondeduced_t<Saved<Dev>>* saved) const {
      layer_->forward(dev, x, y, saved);
    }
    template <class Dev>
    void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
      REVOX_ASSERT(mutable_layer_ != nullptr);
      mutable_layer_->backward(dev, saved, dy, dx);
    }

   private:
    const L* layer_ = nullptr;
    L* mutable_layer_ = nullptr;  // null when built from a const member (forward only)
  };

  // The stored mode's chains of the members, with and without the expand stage.
  using ExpandedChain =
      Sequential<Member<PointwiseConv3d<T>>, Member<GroupNorm<T>>, ReLU6<T>,
                 Member<DepthwiseConv3d<T>>, Member<GroupNorm<T>>, ReLU6<T>,
                 Member<PointwiseConv3d<T>>, Member<GroupNorm<T>>>;
  using PlainChain = Sequential<Member<DepthwiseConv3d<T>>, Member<GroupNorm<T>>, ReLU6<T>,
                                Member<PointwiseConv3d<T>>, Member<GroupNorm<T>>>;

 public:
  using value_type = T;

  // The expand stage (expand_ratio > 1 only): the 1x1x1 conv Cin -> Cin*e and its GroupNorm.
  struct ExpandStage {
    PointwiseConv3d<T> conv;
    GroupNorm<T> norm;
  };

  template <class Dev>
  struct Saved {
    // Stored mode: the chain's Saved (ExpandedChain's when expand_ratio > 1, PlainChain's
    // otherwise); monostate before a stored forward and in lean mode.
    std::variant<std::monostate, saved_t<ExpandedChain, Dev>, saved_t<PlainChain, Dev>> stored;
    // Lean mode only (empty in stored mode):
    bool lean = false;     // which mode's forward filled this
    TensorView<const T> x;  // the input (the caller keeps it alive and unchanged)
    // mean and rstd of expand_norm, depthwise_norm and project_norm, (N, G) each, in that
    // order: stats[k * N * G + n * G + g], k = 0..5 (expand_norm's unused when e == 1).
    Tensor<double, Dev> stats;
    Tensor<T, Dev> x3;  // the project conv's output before project_norm (N, Cout, D, H, W)
  };

  MBConv(index_t in_channels, index_t out_channels, index_t expand_ratio, index_t num_groups,
         bool lean = false)
      : in_channels_(validated(in_channels, out_channels, expand_ratio, num_groups)),
        out_channels_(out_channels),
        expand_ratio_(expand_ratio),
        num_groups_(num_groups),
        lean_(lean),
        depthwise_(in_channels * expand_ratio, false),
        depthwise_norm_(num_groups, in_channels * expand_ratio),
        project_(in_channels * expand_ratio, out_channels, false),
        project_norm_(num_groups, out_channels) {
    if (expand_ratio > 1) {
      expand_.emplace(ExpandStage{PointwiseConv3d<T>(in_channels, hidden_channels(), false),
                                  GroupNorm<T>(num_groups, hidden_channels())});
    }
  }

  index_t in_channels() const { return in_channels_; }
  index_t out_channels() const { return out_channels_; }
  index_t expand_ratio() const { return expand_ratio_; }
  index_t num_groups() const { return num_groups_; }
  index_t hidden_channels() const { return in_channels_ * expand_ratio_; }
  // The memory mode (see the top of this file). Switch it between steps, not between a
  // forward and its backward (backward follows the mode its forward ran in).
  bool lean() const { return lean_; }
  void set_lean(bool lean) { lean_ = lean; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.c == in_channels_, "MBConv: input channels: expected ", in_channels_,
                ", got ", in.c);
    return expand_ ? expanded_chain(*this).output_shape(in) : plain_chain(*this).output_shape(in);
  }

  // The one table of the sub-layers' names: fn(name, sub-layer) for each sub-layer with
  // parameters, in the checkpoint's order (expand and expand_norm only when e > 1). The
  // parameter names are "<name>.<the sub-layer's own name>" (visit_params), and
  // reset_parameters initialises the sub-layers in this order.
  template <class Fn>
  void visit_named(Fn&& fn) {
    if (expand_) {
      fn("expand", expand_->conv);
      fn("expand_norm", expand_->norm);
    }
    fn("depthwise", depthwise_);
    fn("depthwise_norm", depthwise_norm_);
    fn("project", project_);
    fn("project_norm", project_norm_);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    visit_named([&fn](const char* layer_name, auto& layer) {
      const std::string prefix = std::string(layer_name) + ".";
      layer.visit_params(
          [&fn, &prefix](const std::string& name, Param<T>& p) { fn(prefix + name, p); });
    });
  }

  void reset_parameters(Rng& rng) {
    visit_named([&rng](const char*, auto& layer) { layer.reset_parameters(rng); });
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("MBConv", output_shape(x.shape), y.shape);
    if (lean_) {
      lean_forward(dev, x, y, saved);
      return;
    }
    if (saved != nullptr) saved->lean = false;
    if (expand_) {
      stored_forward<1>(dev, expanded_chain(*this), x, y, saved);
    } else {
      stored_forward<2>(dev, plain_chain(*this), x, y, saved);
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    if (saved.lean) {
      lean_backward(dev, saved, dy, dx);
      return;
    }
    REVOX_CHECK(saved.stored.index() == (expand_ ? 1u : 2u),
                "MBConv::backward: nothing saved; run forward with `saved` before each backward");
    if (expand_) {
      expanded_chain(*this).backward(dev, std::get<1>(saved.stored), dy, dx);
    } else {
      plain_chain(*this).backward(dev, std::get<2>(saved.stored), dy, dx);
    }
  }

 private:
  static index_t validated(index_t in_channels, index_t out_channels, index_t expand_ratio,
                           index_t num_groups) {
    REVOX_CHECK(in_channels > 0, "MBConv: in_channels must be positive, got ", in_channels);
    REVOX_CHECK(out_channels > 0, "MBConv: out_channels must be positive, got ", out_channels);
    REVOX_CHECK(expand_ratio >= 1, "MBConv: expand_ratio must be at least 1, got ", expand_ratio);
    REVOX_CHECK(num_groups > 0, "MBConv: num_groups must be positive, got ", num_groups);
    const index_t hidden = in_channels * expand_ratio;
    REVOX_CHECK(hidden % num_groups == 0, "MBConv: expanded channels (", hidden, " = ",
                in_channels, " x expand_ratio ", expand_ratio,
                ") must be divisible by num_groups (", num_groups, ")");
    REVOX_CHECK(out_channels % num_groups == 0, "MBConv: out_channels (", out_channels,
                ") must be divisible by num_groups (", num_groups, ")");
    return in_channels;
  }

  // The members as the stored mode's chain: Self is MBConv (forward and backward) or
  // const MBConv (forward only).
  template <class Self>
  static ExpandedChain expanded_chain(Self& self) {
    return ExpandedChain(
        Member<PointwiseConv3d<T>>(self.expand_->conv), Member<GroupNorm<T>>(self.expand_->norm),
        ReLU6<T>(), Member<DepthwiseConv3d<T>>(self.depthwise_),
        Member<GroupNorm<T>>(self.depthwise_norm_), ReLU6<T>(),
        Member<PointwiseConv3d<T>>(self.project_), Member<GroupNorm<T>>(self.project_norm_));
  }
  template <class Self>
  static PlainChain plain_chain(Self& self) {
    return PlainChain(Member<DepthwiseConv3d<T>>(self.depthwise_),
                      Member<GroupNorm<T>>(self.depthwise_norm_), ReLU6<T>(),
                      Member<PointwiseConv3d<T>>(self.project_),
                      Member<GroupNorm<T>>(self.project_norm_));
  }

  template <std::size_t I, class Chain, class Dev>
  static void stored_forward(const Dev& dev, const Chain& chain, TensorView<const T> x,
                             TensorView<T> y, Saved<Dev>* saved) {
    chain.forward(dev, x, y, saved != nullptr ? &saved->stored.template emplace<I>() : nullptr);
  }

  // The sub-layers (expand_conv and expand_norm: e > 1 only).
  const PointwiseConv3d<T>& expand_conv() const { return expand_->conv; }
  const GroupNorm<T>& expand_norm() const { return expand_->norm; }
  const DepthwiseConv3d<T>& depthwise_conv() const { return depthwise_; }
  const GroupNorm<T>& depthwise_norm() const { return depthwise_norm_; }
  const PointwiseConv3d<T>& project_conv() const { return project_; }
  const GroupNorm<T>& project_norm() const { return project_norm_; }

  static constexpr index_t kDwTaps = DepthwiseConv3d<T>::kFanIn;  // weights per channel
  static TensorView<const T> cv(TensorView<T> v) { return v; }

  // out [rows, count] = w[:, first:first+count] of the row-major [rows, cols] matrix w: one
  // ops::copy per row, so it runs (and is planned) on every device.
  template <class Dev>
  static void gather_columns(const Dev& dev, const T* w, index_t rows, index_t cols,
                             index_t first, index_t count, TensorView<T> out) {
    for (index_t r = 0; r < rows; ++r) {
      ops::copy(dev, TensorView<const T>{w + r * cols + first, flat_shape(count)},
                TensorView<T>{out.data + r * count, flat_shape(count)});
    }
  }
  // w[:, first:first+count] += in [rows, count], the reverse of gather_columns.
  template <class Dev>
  static void scatter_add_columns(const Dev& dev, TensorView<const T> in, index_t rows,
                                  index_t cols, index_t first, index_t count, T* w) {
    for (index_t r = 0; r < rows; ++r) {
      ops::add_inplace(dev, TensorView<T>{w + r * cols + first, flat_shape(count)},
                       TensorView<const T>{in.data + r * count, flat_shape(count)});
    }
  }

  // Lean forward (see the top of the file): chunks of one group of one sample.
  template <class Dev>
  void lean_forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
                    Saved<Dev>* saved) const {
    const Shape5 s = x.shape;
    const index_t N = s.n, G = num_groups_, Cin = in_channels_, Cout = out_channels_;
    const index_t hidden = hidden_channels(), Cg = hidden / G;
    const bool expand = expand_.has_value();
    const Shape5 chunk{1, Cg, s.d, s.h, s.w};
    double* stats = nullptr;
    Tensor<T, Dev> local_x3;
    TensorView<T> x3;
    if (saved != nullptr) {
      *saved = Saved<Dev>{};
      saved->lean = true;
      saved->x = x;
      saved->stats = Tensor<double, Dev>(flat_shape(6 * N * G));
      stats = saved->stats.data();
      saved->x3 = Tensor<T, Dev>(y.shape);
      x3 = saved->x3.view();
    } else {
      local_x3 = Tensor<T, Dev>(y.shape);
      x3 = local_x3.view();
    }
    const auto stat = [&](index_t k, index_t n, index_t g) -> double* {
      return stats != nullptr ? stats + k * N * G + n * G + g : nullptr;
    };
    {
      // W3's columns of one group (W3 itself for one group).
      Tensor<T, Dev> w3_group(flat_shape(G > 1 ? Cout * Cg : 0));
      Tensor<T, Dev> a(chunk), b(chunk);  // expand: x1, then x2; a1, then a2
      Tensor<T, Dev> partial(G > 1 ? Shape5{1, Cout, s.d, s.h, s.w} : Shape5{});
      const PointwiseConv3d<T>& project = project_conv();
      const DepthwiseConv3d<T>& depthwise = depthwise_conv();
      const GroupNorm<T>& norm2 = depthwise_norm();
      for (index_t g = 0; g < G; ++g) {
        const T* w3 = project.weight().value;
        if (G > 1) {
          gather_columns(dev, w3, Cout, hidden, g * Cg, Cg, w3_group.view());
          w3 = w3_group.data();
        }
        for (index_t n = 0; n < N; ++n) {
          TensorView<const T> a1;  // the depthwise conv's input
          if (expand) {
            const GroupNorm<T>& norm1 = expand_norm();
            ops::pointwise_conv3d_forward(dev, x.channels(n, 0, Cin),
                                          expand_conv().weight().value + g * Cg * Cin, nullptr,
                                          a.view());
            ops::group_norm_forward(dev, a.cview(), 1, norm1.eps(),
                                    norm1.weight().value + g * Cg, norm1.bias().value + g * Cg,
                                    b.view(), stat(0, n, g), stat(1, n, g));
            ops::relu6(dev, b.cview(), b.view());
            a1 = b.cview();
          } else {
            a1 = x.channels(n, g * Cg, Cg);
          }
          ops::depthwise_conv3d_forward(dev, a1, depthwise.weight().value + g * Cg * kDwTaps,
                                        nullptr, a.view());
          ops::group_norm_forward(dev, a.cview(), 1, norm2.eps(), norm2.weight().value + g * Cg,
                                  norm2.bias().value + g * Cg, b.view(), stat(2, n, g),
                                  stat(3, n, g));
          ops::relu6(dev, b.cview(), b.view());
          const TensorView<T> x3_n = x3.channels(n, 0, Cout);
          if (g == 0) {
            ops::pointwise_conv3d_forward(dev, b.cview(), w3, nullptr, x3_n);
          } else {
            ops::pointwise_conv3d_forward(dev, b.cview(), w3, nullptr, partial.view());
            ops::add_inplace(dev, x3_n, partial.cview());
          }
        }
      }
    }
    const GroupNorm<T>& norm3 = project_norm();
    ops::group_norm_forward(dev, cv(x3), G, norm3.eps(), norm3.weight().value,
                            norm3.bias().value, y, stat(4, 0, 0), stat(5, 0, 0));
  }

  // Lean backward: dx3 from project_norm, then per group and sample the expand and depthwise
  // stages recomputed and back-propagated at once.
  template <class Dev>
  void lean_backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy,
                     TensorView<T> dx) {
    REVOX_CHECK(saved.x.data != nullptr && !saved.x3.empty() && !saved.stats.empty(),
                "MBConv::backward: nothing saved; run forward with `saved` before each backward");
    const TensorView<const T> x = saved.x;
    const Shape5 s = x.shape;
    const Shape5 out_shape = output_shape(s);
    REVOX_CHECK(dy.shape == out_shape, "MBConv::backward: dy shape ", dy.shape,
                " does not match the output shape ", out_shape);
    if (!dx.empty()) check_output_view("MBConv::backward (dx)", s, dx.shape);
    const index_t N = s.n, G = num_groups_, Cin = in_channels_, Cout = out_channels_;
    const index_t hidden = hidden_channels(), Cg = hidden / G;
    const bool expand = expand_.has_value();
    const Shape5 chunk{1, Cg, s.d, s.h, s.w};
    const double* stats = saved.stats.data();
    const auto stat = [&](index_t k, index_t n, index_t g) -> const double* {
      return stats + k * N * G + n * G + g;
    };

    const GroupNorm<T>& norm3 = project_norm();
    Tensor<T, Dev> dx3(out_shape);
    ops::group_norm_backward(dev, saved.x3.cview(), dy, G, stat(4, 0, 0), stat(5, 0, 0),
                             norm3.weight().value, dx3.view(), norm3.weight().grad,
                             norm3.bias().grad);
    saved.x3 = Tensor<T, Dev>();

    const PointwiseConv3d<T>& project = project_conv();
    const DepthwiseConv3d<T>& depthwise = depthwise_conv();
    const GroupNorm<T>& norm2 = depthwise_norm();
    Tensor<T, Dev> w3_group(flat_shape(G > 1 ? Cout * Cg : 0));
    Tensor<T, Dev> dw3_group(flat_shape(G > 1 ? Cout * Cg : 0));
    for (index_t g = 0; g < G; ++g) {
      const T* w3 = project.weight().value;
      T* dw3 = project.weight().grad;
      if (G > 1) {
        gather_columns(dev, w3, Cout, hidden, g * Cg, Cg, w3_group.view());
        ops::fill(dev, dw3_group.view(), T(0));
        w3 = w3_group.data();
        dw3 = dw3_group.data();
      }
      const T* w2 = depthwise.weight().value + g * Cg * kDwTaps;
      T* dw2 = depthwise.weight().grad + g * Cg * kDwTaps;
      for (index_t n = 0; n < N; ++n) {
        const TensorView<const T> x_n = x.channels(n, 0, Cin);
        const TensorView<const T> dx3_n = dx3.cview().channels(n, 0, Cout);
        // q: a1 = relu6(norm1(x1)), later dx1 (expand only; the depthwise input is x's
        // channels otherwise).
        Tensor<T, Dev> q(expand ? chunk : Shape5{});
        {
          Tensor<T, Dev> p(expand ? chunk : Shape5{});  // x1 = W1_g x_n
          TensorView<const T> a1;
          if (expand) {
            const GroupNorm<T>& norm1 = expand_norm();
            ops::pointwise_conv3d_forward(dev, x_n, expand_conv().weight().value + g * Cg * Cin,
                                          nullptr, p.view());
            ops::group_norm_forward(dev, p.cview(), 1, norm1.eps(),
                                    norm1.weight().value + g * Cg, norm1.bias().value + g * Cg,
                                    q.view(), nullptr, nullptr);
            ops::relu6(dev, q.cview(), q.view());
            a1 = q.cview();
          } else {
            a1 = x.channels(n, g * Cg, Cg);
          }
          Tensor<T, Dev> r(chunk), t(chunk), u(chunk);
          // r = x2, t = a2 = relu6(norm2(x2)).
          ops::depthwise_conv3d_forward(dev, a1, w2, nullptr, r.view());
          ops::group_norm_forward(dev, r.cview(), 1, norm2.eps(), norm2.weight().value + g * Cg,
                                  norm2.bias().value + g * Cg, t.view(), nullptr, nullptr);
          ops::relu6(dev, t.cview(), t.view());
          // Project: dW3_g += dx3_n a2^T; u = da2 = W3_g^T dx3_n, masked in place by ReLU6's
          // backward (relu6(v) lies in (0, 6) exactly when v does, so its output gives the
          // same mask as its input).
          ops::pointwise_conv3d_backward_weight(dev, t.cview(), dx3_n, dw3, nullptr);
          ops::pointwise_conv3d_backward_data(dev, dx3_n, w3, u.view());
          ops::relu6_backward(dev, t.cview(), u.cview(), u.view());
          // t = dx2 (norm2's backward); a2 is dead.
          ops::group_norm_backward(dev, r.cview(), u.cview(), 1, stat(2, n, g), stat(3, n, g),
                                   norm2.weight().value + g * Cg, t.view(),
                                   norm2.weight().grad + g * Cg, norm2.bias().grad + g * Cg);
          if (!expand) {
            // The depthwise conv's input is x: its dx is group g of dx, assigned.
            if (!dx.empty()) {
              ops::depthwise_conv3d_backward(dev, a1, t.cview(), w2, dx.channels(n, g * Cg, Cg),
                                             dw2, nullptr);
            } else {
              ops::depthwise_conv3d_backward_weight(dev, a1, t.cview(), dw2, nullptr);
            }
            continue;
          }
          // r = da1 (x2 is dead); u = ReLU6's backward of it (mask from a1, its output);
          // q = dx1 (norm1's backward; a1 is dead).
          ops::depthwise_conv3d_backward(dev, a1, t.cview(), w2, r.view(), dw2, nullptr);
          ops::relu6_backward(dev, a1, r.cview(), u.view());
          const GroupNorm<T>& norm1 = expand_norm();
          ops::group_norm_backward(dev, p.cview(), u.cview(), 1, stat(0, n, g), stat(1, n, g),
                                   norm1.weight().value + g * Cg, q.view(),
                                   norm1.weight().grad + g * Cg, norm1.bias().grad + g * Cg);
        }
        if (!expand) continue;
        // Expand: dW1 rows of group g += dx1 x_n^T; dx_n (+)= W1_g^T dx1.
        const PointwiseConv3d<T>& conv1 = expand_conv();
        ops::pointwise_conv3d_backward_weight(dev, x_n, q.cview(),
                                              conv1.weight().grad + g * Cg * Cin, nullptr);
        if (dx.empty()) continue;
        const T* w1 = conv1.weight().value + g * Cg * Cin;
        const TensorView<T> dx_n = dx.channels(n, 0, Cin);
        if (g == 0) {
          ops::pointwise_conv3d_backward_data(dev, q.cview(), w1, dx_n);
        } else {
          Tensor<T, Dev> part(Shape5{1, Cin, s.d, s.h, s.w});
          ops::pointwise_conv3d_backward_data(dev, q.cview(), w1, part.view());
          ops::add_inplace(dev, dx_n, part.cview());
        }
      }
      if (G > 1) {
        scatter_add_columns(dev, dw3_group.cview(), Cout, hidden, g * Cg, Cg,
                            project.weight().grad);
      }
    }
    saved = Saved<Dev>{};
  }

  index_t in_channels_;
  index_t out_channels_;
  index_t expand_ratio_;
  index_t num_groups_;
  bool lean_ = false;
  // The sub-layers. Their names are visit_named's, not their order here.
  std::optional<ExpandStage> expand_;  // e > 1 only
  DepthwiseConv3d<T> depthwise_;
  GroupNorm<T> depthwise_norm_;
  PointwiseConv3d<T> project_;
  GroupNorm<T> project_norm_;
};

}  // namespace revox
