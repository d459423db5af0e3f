// revox/layers/concat.hpp — Concat<A, B>: two parallel branches on the same input, their
// outputs concatenated along channels: y = cat(A(x), B(x), dim=1).
//
// This is the single-input "parallel branches" container (Inception-style blocks, a
// convolution next to a pooled path); it satisfies the layer contract, so it nests in
// Sequential, Residual and ReversibleBlock. (A U-Net-style concatenation of two different
// tensors is a binary op, like revox::Add, and is not what this layer does.)
//
// Shapes:   A and B map x (N, C, D, H, W) to (N, Ca, D', H', W') and (N, Cb, D', H', W'): the
//           same batch and spatial extent (revox::Error naming both shapes otherwise);
//           y is (N, Ca + Cb, D', H', W').
// Batches:  a channel slice of an NCDHW tensor is contiguous only within one sample, so A and
//           B run once per sample on batch-1 views (every revox layer treats samples
//           independently; the branches must too), writing straight into their channels of
//           y: no copy of the output for ordinary branches.
// Forward:  y ASSIGNED; x and y must not share memory. A branch that keeps its output
//           (keeps_output_v: reversible blocks, containers ending in one) gets, with `saved`,
//           an output buffer owned by Saved, kept alive and unread until that branch's
//           backward; its channels of y are copied from it. Without `saved` every branch
//           writes straight into y.
// Backward: dx = A^T(dy[:, :Ca]) + B^T(dy[:, Ca:]) ASSIGNED (skipped when dx is empty; the
//           parameter gradients of both branches still ACCUMULATE), with one sample of
//           scratch for B's part; dx must not share memory with dy. backward consumes
//           `saved`: run forward again before another backward.
// Parameters: A's named "0.<name>", then B's "1.<name>" — the state_dict names of the
//           PyTorch twin `class Concat(nn.ModuleList)` with forward
//           `torch.cat([m(x) for m in self], dim=1)`.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/copy.hpp"

namespace revox {

template <class A, class B>
class Concat {
  static_assert(check_layer_contract<A>(),
                "Concat<A, B>: A must satisfy the revox layer contract (revox/layers/layer.hpp)");
  static_assert(check_layer_contract<B>(),
                "Concat<A, B>: B must satisfy the revox layer contract (revox/layers/layer.hpp)");
  static_assert(std::is_same_v<typename A::value_type, typename B::value_type>,
                "Concat<A, B>: A and B must have the same value_type");

 public:
  using value_type = typename A::value_type;
  using T = value_type;

  template <class Dev>
  struct Saved {
    // Per sample: each branch's Saved from forward.
    std::vector<saved_t<A, Dev>> a;
    std::vector<saved_t<B, Dev>> b;
    // A branch's own output (N, Ca or Cb, D', H', W'), only when it keeps its output.
    Tensor<T, Dev> a_output;
    Tensor<T, Dev> b_output;
    index_t a_channels = 0;  // Ca: where B's channels start
  };

  Concat(A a, B b) : a_(std::move(a)), b_(std::move(b)) {}

  A& first() { return a_; }
  const A& first() const { return a_; }
  B& second() { return b_; }
  const B& second() const { return b_; }

  Shape5 output_shape(Shape5 in) const {
    REVOX_CHECK(in.valid(), "Concat: input extents must be positive, got ", in);
    const Shape5 sa = a_.output_shape(in);
    const Shape5 sb = b_.output_shape(in);
    REVOX_CHECK(sa.n == in.n && sb.n == in.n && sa.d == sb.d && sa.h == sb.h && sa.w == sb.w,
                "Concat: the branches must give the same batch and spatial extent to be "
                "concatenated along channels, got ", sa, " and ", sb, " for input ", in);
    return sa.with_channels(sa.c + sb.c);
  }

  template <class Fn>
  void visit_params(Fn&& fn) {
    a_.visit_params([&fn](const std::string& name, auto& p) { fn("0." + name, p); });
    b_.visit_params([&fn](const std::string& name, auto& p) { fn("1." + name, p); });
  }

  void reset_parameters(Rng& rng) {
    a_.reset_parameters(rng);
    b_.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
               nondeduced_t<Saved<Dev>>* saved) const {
    const Shape5 out = output_shape(x.shape);
    check_output_view("Concat", out, y.shape);
    detail::check_sharing("Concat", "forward", "x", x, "y", y, detail::Sharing::disjoint);
    const index_t ca = a_.output_shape(x.shape).c;
    const index_t cb = out.c - ca;
    if (saved != nullptr) {
      saved->a.clear();
      saved->b.clear();
      saved->a.resize(static_cast<std::size_t>(x.shape.n));
      saved->b.resize(static_cast<std::size_t>(x.shape.n));
      saved->a_channels = ca;
      if constexpr (keeps_output_v<A>) saved->a_output = Tensor<T, Dev>(out.with_channels(ca));
      if constexpr (keeps_output_v<B>) saved->b_output = Tensor<T, Dev>(out.with_channels(cb));
    }
    for (index_t n = 0; n < x.shape.n; ++n) {
      const TensorView<const T> xn = x.sample(n);
      run_branch(dev, a_, xn, y.channels(n, 0, ca), saved, n, &Saved<Dev>::a,
                 &Saved<Dev>::a_output);
      run_branch(dev, b_, xn, y.channels(n, ca, cb), saved, n, &Saved<Dev>::b,
                 &Saved<Dev>::b_output);
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, TensorView<T> dx) {
    const index_t batch = dy.shape.n;
    detail::check_saved("Concat",
                        batch > 0 && saved.a.size() == static_cast<std::size_t>(batch) &&
                            saved.b.size() == static_cast<std::size_t>(batch),
                        "nothing saved for a batch of ", batch);
    const index_t split = saved.a_channels;
    REVOX_CHECK(split > 0 && split < dy.shape.c, "Concat::backward: dy must have more "
                "channels than branch A's ", split, ", got ", dy.shape.c);
    const Gradients mode = gradients_for(dx);
    const bool want_dx = mode == Gradients::input_and_params;
    Tensor<T, Dev> scratch;  // one sample of B's input gradient
    if (want_dx) {
      REVOX_CHECK(dx.shape.n == batch, "Concat::backward: dx batch ", dx.shape.n,
                  " does not match the dy batch ", batch);
      detail::check_sharing("Concat", "backward", "dx", dx, "dy", dy, detail::Sharing::disjoint);
      scratch = Tensor<T, Dev>(dx.sample(0).shape);
    }
    for (index_t n = 0; n < batch; ++n) {
      const auto k = static_cast<std::size_t>(n);
      const TensorView<T> dxn = want_dx ? dx.sample(n) : TensorView<T>{};
      revox::backward(a_, dev, saved.a[k], dy.channels(n, 0, split), dxn, mode);
      revox::backward(b_, dev, saved.b[k], dy.channels(n, split, dy.shape.c - split),
                      scratch.view(), mode);
      if (want_dx) ops::add_inplace(dev, dxn, scratch.cview());
    }
    // The branches' backward consumed their Saved (and overwrote any owned output).
    saved.a.clear();
    saved.b.clear();
    saved.a_output = Tensor<T, Dev>();
    saved.b_output = Tensor<T, Dev>();
    saved.a_channels = 0;
  }

 private:
  template <class Dev, class L, class SavedVec>
  static void run_branch(const Dev& dev, const L& layer, TensorView<const T> xn,
                         TensorView<T> y_channels, Saved<Dev>* saved, index_t n,
                         SavedVec Saved<Dev>::*saved_list,
                         Tensor<T, Dev> Saved<Dev>::*owned_output) {
    if (saved == nullptr) {
      layer.forward(dev, xn, y_channels, nullptr);
      return;
    }
    auto* layer_saved = &(saved->*saved_list)[static_cast<std::size_t>(n)];
    if constexpr (keeps_output_v<L>) {
      const TensorView<T> own = (saved->*owned_output).view().sample(n);
      layer.forward(dev, xn, own, layer_saved);
      ops::copy(dev, TensorView<const T>(own), y_channels);
    } else {
      (void)owned_output;
      layer.forward(dev, xn, y_channels, layer_saved);
    }
  }

  A a_;
  B b_;
};

}  // namespace revox
