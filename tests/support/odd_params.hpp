// tests/support/odd_params.hpp — a model whose parameters have odd sizes, so the flat
// buffers of Parameters have padding between them: the optimizer tests (on the CPU, the
// emulated kernel bodies and the GPU) step it.
#pragma once

#include "revox/core/parameters.hpp"

namespace revox::test {

// Parameters of odd sizes, so the flat buffers have padding between them.
template <class T>
struct OddParams {
  revox::Param<T> weight{revox::ParamShape{3, 2, 1, 1, 3}};
  revox::Param<T> bias{revox::ParamShape{5}};
  revox::Param<T> norm{revox::ParamShape{17}};
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("weight", weight);
    fn("bias", bias);
    fn("norm", norm);
  }
};

}  // namespace revox::test
