// revox/layers/checks.hpp — the run-time checks of the layer contract (revox/layers/layer.hpp),
// written once for every revox layer and container, with one wording:
//
//   "<Layer>: output shape A does not match the expected B"             check_output_view
//   "<Layer>: input extents must be positive, got A"                     detail::check_input
//   "<Layer>: input channels: expected C, got c"                         detail::check_input
//   "<Layer>::<call>: parameters are not bound; construct ..."           detail::check_bound
//   "<Layer>::backward: nothing saved; run forward with `saved` ..."     detail::check_saved
//   "<Layer>::backward: dy shape A does not match the output shape B"    detail::check_backward
//   "<Layer>::backward: dx shape A does not match the input shape B"     detail::check_backward
//   "<Layer>::<call>: dx and dy must not share memory"                   detail::check_sharing
//
// A few older layers keep the wording their tests (and users' logs) know: the parameter-free
// layers say "input shape A must have all extents positive" and "nothing was saved";
// DepthwiseConv3d and GroupNorm report a wrong dx as "<Layer>::backward (dx): output shape".
//
// Gradients names what a backward is asked for; the contract's way of asking for the
// parameter gradients only is an empty dx, and gradients_for(dx) reads that.
#pragma once

#include <cstdint>

#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"
#include "revox/core/tensor.hpp"

namespace revox {

// What a backward computes: the input gradient dx (ASSIGNED) and the parameter gradients
// (ACCUMULATED), or the parameter gradients only (the layer receives an empty dx).
enum class Gradients { input_and_params, params_only };

// The mode a layer's backward(dev, saved, dy, dx) was called in: an empty dx asks for the
// parameter gradients only.
template <class T>
Gradients gradients_for(TensorView<T> dx) {
  return dx.empty() ? Gradients::params_only : Gradients::input_and_params;
}

// Shared by layers (and open to users' own): checks that y has the shape the layer produces.
inline void check_output_view(const char* layer, const Shape5& expected, const Shape5& actual) {
  REVOX_CHECK(expected == actual, layer, ": output shape ", actual,
              " does not match the expected ", expected);
}

namespace detail {

// True when the memory of a and b intersects (empty views share nothing).
template <class A, class B>
bool views_share_memory(TensorView<A> a, TensorView<B> b) {
  if (a.empty() || b.empty()) return false;
  const auto a_begin = reinterpret_cast<std::uintptr_t>(a.data);
  const auto b_begin = reinterpret_cast<std::uintptr_t>(b.data);
  const auto a_end = a_begin + static_cast<std::uintptr_t>(a.numel()) * sizeof(A);
  const auto b_end = b_begin + static_cast<std::uintptr_t>(b.numel()) * sizeof(B);
  return a_begin < b_end && b_begin < a_end;
}

// True when a and b are the very same memory with the same shape.
template <class A, class B>
bool same_memory(TensorView<A> a, TensorView<B> b) {
  return static_cast<const void*>(a.data) == static_cast<const void*>(b.data) &&
         a.shape == b.shape;
}

// What two views of one call (x and y, dx and dy) may share.
enum class Sharing {
  any,               // the layer runs in place or on any overlap
  same_or_disjoint,  // the very same memory (in place) or none; a partial overlap throws
  disjoint,          // no memory at all
};

// `in_place` completes "pass the very same memory to ..." for Sharing::same_or_disjoint.
template <class A, class B>
void check_sharing(const char* layer, const char* call, const char* a_name, TensorView<A> a,
                   const char* b_name, TensorView<B> b, Sharing rule,
                   const char* in_place = "run in place") {
  if (rule == Sharing::disjoint) {
    REVOX_CHECK(!views_share_memory(a, b), layer, "::", call, ": ", a_name, " and ", b_name,
                " must not share memory");
  } else if (rule == Sharing::same_or_disjoint) {
    REVOX_CHECK(same_memory(a, b) || !views_share_memory(a, b), layer, "::", call, ": ",
                a_name, " and ", b_name, " partially overlap; pass the very same memory to ",
                in_place);
  }
}

// Every extent positive, and (channels >= 0) the expected number of channels.
inline void check_input(const char* layer, const Shape5& in, index_t channels = -1) {
  REVOX_CHECK(in.valid(), layer, ": input extents must be positive, got ", in);
  REVOX_CHECK(channels < 0 || in.c == channels, layer, ": input channels: expected ", channels,
              ", got ", in.c);
}

// The parameter-free layers' wording of check_input.
inline void check_input_shape(const char* layer, const Shape5& in) {
  REVOX_CHECK(in.valid(), layer, ": input shape ", in, " must have all extents positive");
}

// `what` is the call ("forward", "backward", "reset_parameters").
inline void check_bound(const char* layer, const char* what, bool bound) {
  REVOX_CHECK(bound, layer, "::", what,
              ": parameters are not bound; construct a revox::Parameters from the layer (or "
              "the model holding it) first");
}

// `nothing` says what is missing: "nothing saved" unless given.
template <class... Nothing>
void check_saved(const char* layer, bool present, const Nothing&... nothing) {
  if constexpr (sizeof...(Nothing) == 0) {
    REVOX_CHECK(present, layer, "::backward: nothing saved; run forward with `saved` before "
                "each backward");
  } else {
    REVOX_CHECK(present, layer, "::backward: ", nothing...,
                "; run forward with `saved` before each backward");
  }
}

// How a backward is checked beyond the shapes.
struct BackwardRules {
  Sharing dx_dy = Sharing::any;                // what dx may share with dy
  const char* nothing_saved = "nothing saved";  // the missing-forward wording
  bool dx_as_output_view = false;  // a wrong dx reads "<Layer>::backward (dx): output shape"
};

// dy against the output shape, then (when wanted) dx against the input shape and dx against dy.
// Returns the gradients asked for.
template <class T>
Gradients check_backward_shapes(const char* layer, TensorView<const T> dy, const Shape5& output,
                                TensorView<T> dx, const Shape5& input,
                                const BackwardRules& rules = {}) {
  REVOX_CHECK(dy.shape == output, layer, "::backward: dy shape ", dy.shape,
              " does not match the output shape ", output);
  const Gradients mode = gradients_for(dx);
  if (mode == Gradients::params_only) return mode;
  if (rules.dx_as_output_view) {
    REVOX_CHECK(dx.shape == input, layer, "::backward (dx): output shape ", dx.shape,
                " does not match the expected ", input);
  } else {
    REVOX_CHECK(dx.shape == input, layer, "::backward: dx shape ", dx.shape,
                " does not match the input shape ", input);
  }
  check_sharing(layer, "backward", "dx", dx, "dy", dy, rules.dx_dy,
                "propagate the gradient in place");
  return mode;
}

// The whole backward check of a layer whose Saved records its input shape: something saved,
// then dy against layer.output_shape(input) and dx against input.
template <class L, class T>
Gradients check_backward(const char* name, const L& layer, bool saved_present,
                         const Shape5& input, TensorView<const T> dy, TensorView<T> dx,
                         const BackwardRules& rules = {}) {
  check_saved(name, saved_present, rules.nothing_saved);
  return check_backward_shapes(name, dy, layer.output_shape(input), dx, input, rules);
}

}  // namespace detail
}  // namespace revox
