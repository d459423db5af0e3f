// revox/layers/layer.hpp — the layer contract, and the compile-time check of it.
//
// A layer is a value type templated on its element type T. Its kinds of sub-layers are
// fixed at compile time; its sizes (channels, groups, expand ratio) are set at run time in
// its constructor, which throws revox::Error on nonsense (wrong channel counts, groups not
// dividing channels, non-positive sizes). Every layer provides:
//
//   using value_type = T;
//   Shape5 output_shape(Shape5 in) const;
//       The output extent for an input extent; throws revox::Error naming the layer, the
//       expected and the actual value when `in` does not fit the layer.
//   template <class Fn> void visit_params(Fn&& fn);
//       Calls fn(const std::string& name, Param<param_t<T>>&) for each parameter, in a fixed
//       order (param_t<T>, core/precision.hpp: T, or float for bfloat16 activations),
//       with PyTorch's names and layouts. Parameter-free layers call nothing.
//   void reset_parameters(Rng& rng);
//       PyTorch's default initialisation, written through host pointers.
//   template <class Dev> struct Saved;
//       What forward keeps for backward. It may hold a view of the input x: the caller
//       keeps x alive and unchanged until backward has run.
//   template <class Dev>
//   void forward(const Dev& dev, TensorView<const T> x, TensorView<T> y,
//                nondeduced_t<Saved<Dev>>* saved) const;
//       (nondeduced_t lets callers pass a plain nullptr: Dev comes from `dev` alone.)
//       y = f(x), every element of y ASSIGNED. y.shape == output_shape(x.shape). With
//       saved == nullptr (inference, or inside a reversible block) nothing is kept.
//   template <class Dev>
//   void backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy,
//                 TensorView<T> dx);
//       dx = (df/dx)^T dy is ASSIGNED; parameter gradients ACCUMULATE (+=) into each
//       Param's grad. dx is an empty view when the caller does not need the input gradient
//       (Gradients::params_only): the layer then only accumulates its parameter gradients.
//       backward may release what `saved` holds, so run forward again before another
//       backward.
//
// Callers name the gradients they want instead of building an empty view (below):
//   revox::backward(layer, dev, saved, dy, dx);             dx and the parameter gradients
//   revox::backward_params_only(layer, dev, saved, dy);     the parameter gradients only
//   revox::backward(layer, dev, saved, dy, dx, mode);       either, by Gradients mode
// A layer's own backward reads the mode with gradients_for(dx) (revox/layers/checks.hpp,
// where the checks every revox layer runs — output shape, parameters bound, something saved,
// dy and dx shapes, dx and dy memory — are written once, open to users' layers too).
//
// Layers must be deterministic functions of (x, parameters): no dropout and no running
// statistics, so that a reversible block can recompute them exactly.
//
// Reversible layers (revox/layers/reversible.hpp: ReversibleBlock<F, G>, ReversibleSequence,
// or your own) follow the same contract with two differences a container must respect:
// their Saved holds a MUTABLE view of the output y instead of anything about x, and backward
// rebuilds the input in y's memory (after backward the caller's y holds x). They may run in
// place (y the very memory of x), their backward may propagate the gradient in place (dx the
// very memory of dy) — they must accept both — and
//   template <class Dev> void inverse(const Dev& dev, TensorView<T> y_in_x_out) const;
// turns y back into x. A layer is reversible (is_reversible_v<L>) when it has that inverse()
// member; nothing has to be registered. So a container keeps no input for them, runs them in
// place on their input's buffer where it owns that buffer, and nothing else may read their
// input or rely on y after their backward.
//
// More generally, a layer whose Saved refers to its OUTPUT y and whose backward overwrites y
// "keeps its output" (keeps_output_v<L>): every reversible layer, and a container whose last
// layer keeps its output (Sequential<PointwiseConv3d<T>, ReversibleSequence<...>>). A
// non-reversible layer opts in with `static constexpr bool keeps_output = true;`. The caller
// of such a layer keeps y alive and unchanged until its backward and does not rely on y
// afterwards; every revox container does this for its sub-layers.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "revox/core/device.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/checks.hpp"

namespace revox {

// The Saved type of layer L on device Dev.
template <class L, class Dev>
using saved_t = typename L::template Saved<Dev>;

namespace detail {

template <class L, class = void>
struct has_value_type : std::false_type {};
template <class L>
struct has_value_type<L, std::void_t<typename L::value_type>> : std::true_type {};

template <class L, class = void>
struct has_output_shape : std::false_type {};
template <class L>
struct has_output_shape<
    L, std::enable_if_t<std::is_same_v<
           decltype(std::declval<const L&>().output_shape(std::declval<Shape5>())), Shape5>>>
    : std::true_type {};

struct ParamVisitorProbe {
  template <class P>
  void operator()(const std::string&, P&) const {}
};
template <class L, class = void>
struct has_visit_params : std::false_type {};
template <class L>
struct has_visit_params<
    L, std::void_t<decltype(std::declval<L&>().visit_params(ParamVisitorProbe{}))>>
    : std::true_type {};

template <class L, class = void>
struct has_reset_parameters : std::false_type {};
template <class L>
struct has_reset_parameters<
    L, std::void_t<decltype(std::declval<L&>().reset_parameters(std::declval<Rng&>()))>>
    : std::true_type {};

template <class L, class Dev, class = void>
struct has_saved : std::false_type {};
template <class L, class Dev>
struct has_saved<L, Dev, std::void_t<typename L::template Saved<Dev>>> : std::true_type {};

template <class L, class Dev, class = void>
struct has_forward_with_saved : std::false_type {};
template <class L, class Dev>
struct has_forward_with_saved<
    L, Dev,
    std::void_t<decltype(std::declval<const L&>().forward(
        std::declval<const Dev&>(), std::declval<TensorView<const typename L::value_type>>(),
        std::declval<TensorView<typename L::value_type>>(),
        std::declval<typename L::template Saved<Dev>*>()))>> : std::true_type {};

// Callers (containers, reversible blocks, inference) pass a plain nullptr for `saved`, which
// a deduced `Saved<Dev>*` parameter cannot take: the contract needs both calls to work.
template <class L, class Dev, class = void>
struct has_forward_with_nullptr : std::false_type {};
template <class L, class Dev>
struct has_forward_with_nullptr<
    L, Dev,
    std::void_t<decltype(std::declval<const L&>().forward(
        std::declval<const Dev&>(), std::declval<TensorView<const typename L::value_type>>(),
        std::declval<TensorView<typename L::value_type>>(), nullptr))>> : std::true_type {};

template <class L, class Dev>
struct has_forward : std::bool_constant<has_forward_with_saved<L, Dev>::value &&
                                        has_forward_with_nullptr<L, Dev>::value> {};

template <class L, class Dev, class = void>
struct has_backward : std::false_type {};
template <class L, class Dev>
struct has_backward<
    L, Dev,
    std::void_t<decltype(std::declval<L&>().backward(
        std::declval<const Dev&>(), std::declval<typename L::template Saved<Dev>&>(),
        std::declval<TensorView<const typename L::value_type>>(),
        std::declval<TensorView<typename L::value_type>>()))>> : std::true_type {};

template <class L, class = void>
struct has_inverse : std::false_type {};
template <class L>
struct has_inverse<L, std::void_t<decltype(std::declval<const L&>().inverse(
                          std::declval<const Cpu&>(),
                          std::declval<TensorView<typename L::value_type>>()))>>
    : std::true_type {};

template <class L, class = void>
struct declares_keeps_output : std::false_type {};
template <class L>
struct declares_keeps_output<L, std::void_t<decltype(L::keeps_output)>>
    : std::bool_constant<static_cast<bool>(L::keeps_output)> {};

}  // namespace detail

// True for layers that rebuild their input from their output: detected from an
// `inverse(const Dev&, TensorView<T>) const` member (see above). Specialise is_reversible
// only to switch the detection off or on for a type you cannot change.
template <class L>
struct is_reversible : std::bool_constant<detail::has_inverse<L>::value> {};
template <class L>
inline constexpr bool is_reversible_v = is_reversible<std::decay_t<L>>::value;

// True for layers whose Saved refers to their output and whose backward overwrites it.
template <class L>
struct keeps_output
    : std::bool_constant<is_reversible_v<L> || detail::declares_keeps_output<L>::value> {};
template <class L>
inline constexpr bool keeps_output_v = keeps_output<std::decay_t<L>>::value;

// True when L satisfies the layer contract on device Dev.
template <class L, class Dev = Cpu>
inline constexpr bool is_layer_v =
    detail::has_value_type<L>::value && detail::has_output_shape<L>::value &&
    detail::has_visit_params<L>::value && detail::has_reset_parameters<L>::value &&
    detail::has_saved<L, Dev>::value && detail::has_forward<L, Dev>::value &&
    detail::has_backward<L, Dev>::value;

// Fails compilation with one readable sentence per missing piece of the contract.
// Returns true so it can sit inside a static_assert or a constexpr variable.
template <class L, class Dev = Cpu>
constexpr bool check_layer_contract() {
  static_assert(detail::has_value_type<L>::value,
                "revox layer contract: the layer must declare `using value_type = T;`");
  static_assert(detail::has_output_shape<L>::value,
                "revox layer contract: the layer must provide "
                "`Shape5 output_shape(Shape5 in) const`");
  static_assert(detail::has_visit_params<L>::value,
                "revox layer contract: the layer must provide "
                "`template <class Fn> void visit_params(Fn&& fn)` (empty for no parameters)");
  static_assert(detail::has_reset_parameters<L>::value,
                "revox layer contract: the layer must provide "
                "`void reset_parameters(Rng& rng)`");
  static_assert(detail::has_saved<L, Dev>::value,
                "revox layer contract: the layer must declare "
                "`template <class Dev> struct Saved` (empty when nothing is saved)");
  if constexpr (detail::has_value_type<L>::value && detail::has_saved<L, Dev>::value) {
    static_assert(detail::has_forward_with_saved<L, Dev>::value,
                  "revox layer contract: the layer must provide `template <class Dev> void "
                  "forward(const Dev& dev, TensorView<const T> x, TensorView<T> y, "
                  "nondeduced_t<Saved<Dev>>* saved) const`");
    if constexpr (detail::has_forward_with_saved<L, Dev>::value) {
      static_assert(detail::has_forward_with_nullptr<L, Dev>::value,
                    "revox layer contract: forward must accept a plain nullptr for `saved`: "
                    "declare the parameter as `nondeduced_t<Saved<Dev>>* saved` (a deduced "
                    "`Saved<Dev>* saved` cannot take nullptr)");
    }
    static_assert(detail::has_backward<L, Dev>::value,
                  "revox layer contract: the layer must provide `template <class Dev> void "
                  "backward(const Dev& dev, Saved<Dev>& saved, TensorView<const T> dy, "
                  "TensorView<T> dx)`");
  }
  return true;
}

namespace detail {
// The parameter-free layers' visit_params (visits nothing) and reset_parameters (does nothing).
struct NoParameters {
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(Rng&) {}
};
}  // namespace detail

// Backward with both the input gradient (dx ASSIGNED, a non-empty view of the input's shape)
// and the parameter gradients (ACCUMULATED).
template <class L, class Dev>
void backward(L& layer, const Dev& dev, saved_t<L, Dev>& saved,
              TensorView<const typename L::value_type> dy,
              TensorView<typename L::value_type> dx) {
  REVOX_CHECK(!dx.empty(), "revox::backward: dx is empty; call revox::backward_params_only "
              "when the input gradient is not wanted");
  layer.backward(dev, saved, dy, dx);
}

// Backward for the parameter gradients only (ACCUMULATED): the layer receives an empty dx.
template <class L, class Dev>
void backward_params_only(L& layer, const Dev& dev, saved_t<L, Dev>& saved,
                          TensorView<const typename L::value_type> dy) {
  layer.backward(dev, saved, dy, TensorView<typename L::value_type>{});
}

// Backward in the given mode; dx is not touched (nor read) for Gradients::params_only.
template <class L, class Dev>
void backward(L& layer, const Dev& dev, saved_t<L, Dev>& saved,
              TensorView<const typename L::value_type> dy, TensorView<typename L::value_type> dx,
              Gradients mode) {
  if (mode == Gradients::params_only) {
    backward_params_only(layer, dev, saved, dy);
  } else {
    backward(layer, dev, saved, dy, dx);
  }
}

}  // namespace revox
