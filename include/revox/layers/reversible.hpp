// revox/layers/reversible.hpp — ReversibleBlock<F, G> and ReversibleSequence<Block>: the
// additive coupling of Gomez et al. (2017) that the paper builds its encoder from.
//
// ReversibleBlock<F, G> on C channels splits x along channels into halves x1 = x[:, :C/2],
// x2 = x[:, C/2:] and computes
//   forward:  y1 = x1 + F(x2);   y2 = x2 + G(y1)
//   inverse:  x2 = y2 - G(y1);   x1 = y1 - F(x2)
//   backward: dy1' = dy1 + G^T(dy2);  dx2 = dy2 + F^T(dy1');  dx1 = dy1'
// F and G are layers (revox/layers/layer.hpp) that map C/2 channels to C/2 channels and keep
// the spatial extent; each sample is processed on its own (every revox layer treats samples
// independently), so for batch N > 1 F and G run N times on batch-1 views.
//
// Two modes, same parameters, same outputs bit for bit:
//  * reversible (default): forward runs F and G WITHOUT `saved`, and Saved holds only a
//    mutable view of the output y. backward rebuilds the input from y IN y's MEMORY (after
//    backward the caller's y holds the block's input x), re-running F and G with their
//    Saved in scratch, one at a time, and back-propagates through them. Activation memory
//    is the output plus the scratch of one F or G.
//  * store_activations: the stored-activation twin, for comparisons and for switching the
//    memory saving off. Saved owns copies of F's input x2 and G's input y1 (and of F's or
//    G's output when that layer keeps its output, keeps_output_v) and keeps F's and G's
//    Saved from forward; backward rebuilds nothing and leaves y alone.
//
// Shapes:   x, y, dy, dx (N, C, D, H, W), C even; F, G: (1, C/2, D, H, W) -> same.
// Forward:  y ASSIGNED. y may be the very memory of x (in place); any other overlap throws.
// Backward: dx ASSIGNED (skipped when dx is empty, Gradients::params_only); parameter
//           gradients ACCUMULATE. dx may be the very memory of dy (in-place gradient
//           propagation, what keeps a chain's gradient memory flat); any other overlap of dx
//           and dy throws; dx and dy must not share memory with saved.y. backward
//           consumes `saved`: a second backward needs a new forward.
// Parameters: "f.<name>" then "g.<name>".
// Preconditions: F and G are deterministic (no dropout, no running statistics: the
//           recomputation must reproduce forward exactly) and never keep a view of their
//           input beyond their own backward. Nobody but the block itself may read the block's
//           input after forward in reversible mode: the memory is reused.
//
// ReversibleSequence<Block> runs ReversibleBlocks one after another in place on the output
// buffer (forward first copies x into y when they are different memory). Its Saved holds a
// mutable view of the final output (plus each block's stored state in store_activations
// mode); backward walks the blocks in reverse, each rebuilding its input in y's memory and
// propagating the gradient in place in ONE gradient buffer (dx, or one owned tensor when
// dx is empty), so activation memory does not grow with the number of blocks. Parameter
// names: "<index>.f.<name>", "<index>.g.<name>".
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/copy.hpp"

namespace revox {

template <class F, class G>
class ReversibleBlock;
template <class Block>
class ReversibleSequence;

namespace detail {
template <class L>
struct is_reversible_block : std::false_type {};
template <class F, class G>
struct is_reversible_block<ReversibleBlock<F, G>> : std::true_type {};
}  // namespace detail

namespace detail {

// L::value_type when L declares one, else void (so that a missing value_type is reported by
// check_layer_contract's sentence instead of a cascade of errors).
template <class L, class = void>
struct value_type_or_void {
  using type = void;
};
template <class L>
struct value_type_or_void<L, std::void_t<typename L::value_type>> {
  using type = typename L::value_type;
};

// Half `which` (0 or 1) of sample n: contiguous in NCDHW.
template <class U>
TensorView<U> sample_half(TensorView<U> v, index_t n, index_t which) {
  const index_t half = v.shape.c / 2;
  return TensorView<U>{v.channel(n, which * half), Shape5{1, half, v.shape.d, v.shape.h, v.shape.w}};
}

// Sample n of an (N, C', D, H, W) tensor, as a batch-1 view.
template <class U>
TensorView<U> sample_of(TensorView<U> v, index_t n) {
  return TensorView<U>{v.channel(n, 0), Shape5{1, v.shape.c, v.shape.d, v.shape.h, v.shape.w}};
}

inline constexpr const char* kReversibleNothingSaved =
    "nothing saved (forward ran without `saved`, or backward already consumed it)";

// y = x unless they are the very same memory; any partial overlap throws.
template <class Dev, class T>
void copy_into_output(const Dev& dev, const char* layer, TensorView<const T> x, TensorView<T> y) {
  check_sharing(layer, "forward", "x", x, "y", y, Sharing::same_or_disjoint, "run in place");
  if (!same_memory(x, y)) ops::copy(dev, x, y);
}

}  // namespace detail

template <class F, class G>
class ReversibleBlock {
  static_assert(check_layer_contract<F>(),
                "ReversibleBlock<F, G>: F must satisfy the revox layer contract "
                "(revox/layers/layer.hpp)");
  static_assert(check_layer_contract<G>(),
                "ReversibleBlock<F, G>: G must satisfy the revox layer contract "
                "(revox/layers/layer.hpp)");
  static_assert(std::is_same_v<typename detail::value_type_or_void<F>::type,
                               typename detail::value_type_or_void<G>::type>,
                "ReversibleBlock<F, G>: F and G must have the same value_type");

 public:
  using value_type = typename detail::value_type_or_void<F>::type;
  using T = value_type;
  using f_type = F;
  using g_type = G;

  template <class Dev>
  struct Saved {
    // The block's output; reversible backward rebuilds the input here.
    TensorView<T> y;
    // store_activations mode only, per sample: F's input x2, G's input y1 (N, C/2, D, H, W)
    // and F's and G's Saved from forward.
    Tensor<T, Dev> f_input;
    Tensor<T, Dev> g_input;
    // store_activations mode, for an F or G that keeps its output (keeps_output_v): their
    // outputs (N, C/2, D, H, W), which their Saved refers to.
    Tensor<T, Dev> f_output;
    Tensor<T, Dev> g_output;
    std::vector<saved_t<F, Dev>> f_saved;
    std::vector<saved_t<G, Dev>> g_saved;
  };

  ReversibleBlock(F f, G g, bool store_activations = false)
      : f_(std::move(f)), g_(std::move(g)), store_activations_(store_activations) {}

  F& f() { return f_; }
  const F& f() const { return f_; }
  G& g() { return g_; }
  const G& g() const { return g_; }
  bool store_activations() const { return store_activations_; }
  void set_store_activations(bool store) { store_activations_ = store; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "ReversibleBlock: input extents must be positive, got ", in);
    REVOX_CHECK(in.c % 2 == 0, "ReversibleBlock: channels (", in.c, ") must be even");
    const Shape5 half{1, in.c / 2, in.d, in.h, in.w};
    const Shape5 f_out = f_.output_shape(half);
    REVOX_CHECK(f_out == half, "ReversibleBlock: F must keep its input shape ", half,
                ", but gives ", f_out);
    const Shape5 g_out = g_.output_shape(half);
    REVOX_CHECK(g_out == half, "ReversibleBlock: G must keep its input shape ", half,
                ", but gives ", g_out);
    return in;
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    f_.visit_params([&fn](const std::string& name, auto& p) { fn("f." + name, p); });
    g_.visit_params([&fn](const std::string& name, auto& p) { fn("g." + name, p); });
  }

  void reset_parameters(Rng& rng) {
    f_.reset_parameters(rng);
    g_.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ReversibleBlock", output_shape(x.shape), y.shape);
    detail::copy_into_output(dev, "ReversibleBlock", x, y);
    const Shape5 half = half_shape(y.shape);
    const bool store = saved != nullptr && store_activations_;
    if (saved != nullptr) {
      saved->y = y;
      saved->f_input = store ? Tensor<T, Dev>(y.shape.with_channels(half.c)) : Tensor<T, Dev>();
      saved->g_input = store ? Tensor<T, Dev>(y.shape.with_channels(half.c)) : Tensor<T, Dev>();
      saved->f_output = store && keeps_output_v<F> ? Tensor<T, Dev>(y.shape.with_channels(half.c))
                                                   : Tensor<T, Dev>();
      saved->g_output = store && keeps_output_v<G> ? Tensor<T, Dev>(y.shape.with_channels(half.c))
                                                   : Tensor<T, Dev>();
      saved->f_saved = std::vector<saved_t<F, Dev>>(store ? static_cast<std::size_t>(y.shape.n) : 0);
      saved->g_saved = std::vector<saved_t<G, Dev>>(store ? static_cast<std::size_t>(y.shape.n) : 0);
    }
    Tensor<T, Dev> out(half);  // F's, then G's output
    for (index_t n = 0; n < y.shape.n; ++n) {
      const TensorView<T> y1 = detail::sample_half(y, n, 0);
      const TensorView<T> y2 = detail::sample_half(y, n, 1);
      const auto i = static_cast<std::size_t>(n);
      TensorView<T> f_out = out.view();  // where F's output goes (its own buffer when
      TensorView<T> g_out = out.view();  // stored and F keeps its output), same for G
      if (store) {
        const TensorView<T> f_in = detail::sample_of(saved->f_input.view(), n);
        copy_half(dev, y2, f_in);
        f_out = keeps_output_v<F> ? detail::sample_of(saved->f_output.view(), n) : out.view();
        f_.forward(dev, TensorView<const T>(f_in), f_out, &saved->f_saved[i]);
      } else {
        f_.forward(dev, TensorView<const T>(y2), out.view(), nullptr);
      }
      ops::add_inplace(dev, y1, TensorView<const T>(f_out));  // y1 = x1 + F(x2)
      if (store) {
        const TensorView<T> g_in = detail::sample_of(saved->g_input.view(), n);
        copy_half(dev, y1, g_in);
        g_out = keeps_output_v<G> ? detail::sample_of(saved->g_output.view(), n) : out.view();
        g_.forward(dev, TensorView<const T>(g_in), g_out, &saved->g_saved[i]);
      } else {
        g_.forward(dev, TensorView<const T>(y1), out.view(), nullptr);
      }
      ops::add_inplace(dev, y2, TensorView<const T>(g_out));  // y2 = x2 + G(y1)
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    detail::check_saved("ReversibleBlock", saved.y.data != nullptr,
                        detail::kReversibleNothingSaved);
    const Shape5 shape = saved.y.shape;
    const Gradients mode = detail::check_backward_shapes("ReversibleBlock", dy, shape, dx, shape,
                                                         {detail::Sharing::same_or_disjoint});
    const bool want_dx = mode == Gradients::input_and_params;
    REVOX_CHECK(!detail::views_share_memory(saved.y, dy) &&
                    !detail::views_share_memory(saved.y, dx),
                "ReversibleBlock::backward: dy and dx must not share memory with the saved "
                "output y (backward rebuilds the input there)");
    const bool in_place = want_dx && detail::same_memory(dy, dx);
    const bool stored = !saved.f_saved.empty();
    REVOX_CHECK(!stored || saved.f_saved.size() == static_cast<std::size_t>(shape.n),
                "ReversibleBlock::backward: saved state is for another batch size");

    const Shape5 half = half_shape(shape);
    Tensor<T, Dev> out(half);   // G's, then F's recomputed output
    Tensor<T, Dev> grad(half);  // G^T dy2, then F^T dy1'
    Tensor<T, Dev> mid;         // dy1' when dx is not wanted (else it lives in dx1)
    if (!want_dx) mid = Tensor<T, Dev>(half);
    for (index_t n = 0; n < shape.n; ++n) {
      const auto i = static_cast<std::size_t>(n);
      const TensorView<T> y1 = detail::sample_half(saved.y, n, 0);
      const TensorView<T> y2 = detail::sample_half(saved.y, n, 1);
      const TensorView<const T> dy1 = detail::sample_half(dy, n, 0);
      const TensorView<const T> dy2 = detail::sample_half(dy, n, 1);
      const TensorView<T> dy1_prime = want_dx ? detail::sample_half(dx, n, 0) : mid.view();

      {  // G: x2 = y2 - G(y1); grad = G^T dy2
        saved_t<G, Dev> recomputed{};
        saved_t<G, Dev>& g_saved = stored ? saved.g_saved[i] : recomputed;
        if (!stored) {
          g_.forward(dev, TensorView<const T>(y1), out.view(), &g_saved);
          ops::sub_inplace(dev, y2, out.cview());
        }
        revox::backward(g_, dev, g_saved, dy2, grad.view());
      }
      if (in_place) {  // dy1' = dy1 + G^T dy2
        ops::add_inplace(dev, dy1_prime, grad.cview());
      } else {
        ops::add(dev, dy1, grad.cview(), dy1_prime);
      }
      {  // F: x1 = y1 - F(x2); grad = F^T dy1'
        saved_t<F, Dev> recomputed{};
        saved_t<F, Dev>& f_saved = stored ? saved.f_saved[i] : recomputed;
        if (!stored) {
          f_.forward(dev, TensorView<const T>(y2), out.view(), &f_saved);
          ops::sub_inplace(dev, y1, out.cview());
        }
        revox::backward(f_, dev, f_saved, TensorView<const T>(dy1_prime), grad.view(), mode);
      }
      if (want_dx) {  // dx2 = dy2 + F^T dy1'; dx1 = dy1' is already in place
        const TensorView<T> dx2 = detail::sample_half(dx, n, 1);
        if (in_place) {
          ops::add_inplace(dev, dx2, grad.cview());
        } else {
          ops::add(dev, dy2, grad.cview(), dx2);
        }
      }
    }
    saved = Saved<Dev>{};
  }

  // Rebuilds the input from the output, in place: y_in_x_out holds y on entry, x on exit.
  template <class Dev>
  void inverse(const Dev& dev, TensorView<T> y_in_x_out) const {
    output_shape(y_in_x_out.shape);
    Tensor<T, Dev> out(half_shape(y_in_x_out.shape));
    for (index_t n = 0; n < y_in_x_out.shape.n; ++n) {
      const TensorView<T> y1 = detail::sample_half(y_in_x_out, n, 0);
      const TensorView<T> y2 = detail::sample_half(y_in_x_out, n, 1);
      g_.forward(dev, TensorView<const T>(y1), out.view(), nullptr);
      ops::sub_inplace(dev, y2, out.cview());  // x2 = y2 - G(y1)
      f_.forward(dev, TensorView<const T>(y2), out.view(), nullptr);
      ops::sub_inplace(dev, y1, out.cview());  // x1 = y1 - F(x2)
    }
  }

 private:
  static Shape5 half_shape(const Shape5& full) { return Shape5{1, full.c / 2, full.d, full.h, full.w}; }

  template <class Dev>
  static void copy_half(const Dev& dev, TensorView<T> from, TensorView<T> to) {
    ops::copy(dev, TensorView<const T>(from), to);
  }

  F f_;
  G g_;
  bool store_activations_;
};

template <class Block>
class ReversibleSequence {
  static_assert(detail::is_reversible_block<Block>::value,
                "ReversibleSequence<Block>: Block must be a ReversibleBlock<F, G>");

 public:
  using value_type = typename Block::value_type;
  using T = value_type;
  using block_type = Block;

  template <class Dev>
  struct Saved {
    TensorView<T> y;  // the final output; backward rebuilds the sequence's input here
    std::vector<saved_t<Block, Dev>> blocks;
  };

  explicit ReversibleSequence(std::vector<Block> blocks) : blocks_(std::move(blocks)) {
    REVOX_CHECK(!blocks_.empty(), "ReversibleSequence: needs at least one block, got 0");
  }
  ReversibleSequence(std::vector<Block> blocks, bool store_activations)
      : ReversibleSequence(std::move(blocks)) {
    set_store_activations(store_activations);
  }

  std::size_t size() const { return blocks_.size(); }
  Block& operator[](std::size_t i) { return blocks_[i]; }
  const Block& operator[](std::size_t i) const { return blocks_[i]; }
  bool store_activations() const { return blocks_.front().store_activations(); }
  void set_store_activations(bool store) {
    for (Block& block : blocks_) block.set_store_activations(store);
  }

  Shape5 output_shape(Shape5 in) const {
    for (const Block& block : blocks_) in = block.output_shape(in);
    return in;
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const std::string prefix = std::to_string(i) + ".";
      blocks_[i].visit_params(
          [&fn, &prefix](const std::string& name, auto& p) { fn(prefix + name, p); });
    }
  }

  void reset_parameters(Rng& rng) {
    for (Block& block : blocks_) block.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    check_output_view("ReversibleSequence", output_shape(x.shape), y.shape);
    detail::copy_into_output(dev, "ReversibleSequence", x, y);
    if (saved != nullptr) {
      saved->y = y;
      saved->blocks = std::vector<saved_t<Block, Dev>>(blocks_.size());
    }
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      blocks_[i].forward(dev, TensorView<const T>(y), y,
                         saved != nullptr ? &saved->blocks[i] : nullptr);
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    detail::check_saved("ReversibleSequence",
                        saved.y.data != nullptr && saved.blocks.size() == blocks_.size(),
                        detail::kReversibleNothingSaved);
    const Gradients mode =
        detail::check_backward_shapes("ReversibleSequence", dy, saved.y.shape, dx, saved.y.shape,
                                      {detail::Sharing::same_or_disjoint});
    // One gradient buffer, propagated in place: dx, or an owned one when dx is not wanted.
    Tensor<T, Dev> owned;
    TensorView<T> grad = dx;
    if (mode == Gradients::params_only) {
      owned = Tensor<T, Dev>(dy.shape);
      grad = owned.view();
    }
    if (!detail::same_memory(dy, grad)) ops::copy(dev, dy, grad);
    for (std::size_t k = blocks_.size(); k-- > 0;) {
      revox::backward(blocks_[k], dev, saved.blocks[k], TensorView<const T>(grad), grad,
                      k == 0 ? mode : Gradients::input_and_params);
    }
    saved = Saved<Dev>{};
  }

  // Rebuilds the input from the output, in place: y_in_x_out holds y on entry, x on exit.
  template <class Dev>
  void inverse(const Dev& dev, TensorView<T> y_in_x_out) const {
    output_shape(y_in_x_out.shape);
    for (std::size_t k = blocks_.size(); k-- > 0;) blocks_[k].inverse(dev, y_in_x_out);
  }

 private:
  std::vector<Block> blocks_;
};

}  // namespace revox
