// revox/core/precision.hpp — the types that go with an activation type T in mixed precision.
//
//   param_t<T>   parameters, their gradients and the optimizer's state: float for bfloat16
//                activations (float32 master weights), T itself for float and double.
//
// The convolution ops take weights and biases as param_t<T> pointers, so that a bfloat16
// activation meets its float32 weight in the kernel, which rounds the weight to bfloat16 for
// the products and accumulates in float32 (ops/cpu/gemm_bf16.hpp).
#pragma once

namespace revox {

struct bfloat16;  // revox/core/bfloat16.hpp

template <class T>
struct param_type {
  using type = T;
};
template <>
struct param_type<bfloat16> {
  using type = float;
};
template <>
struct param_type<const bfloat16> {
  using type = const float;
};

template <class T>
using param_t = typename param_type<T>::type;

}  // namespace revox
