// revox/ops/kernel_bodies/optim.hpp — the element updates of revox's optimizers (optim/adam.hpp,
// optim/sgd.hpp) and the parameter-range test that keeps them off the padding of the flat
// buffers; REVOX_HD so that the CPU optimizers and the GPU kernels (ops/cuda/optim.cuh) run
// the very same arithmetic.
//
//   AdamUpdate<T>::update(i)   Adam / AdamW on element i of p, g, m, v (formulas in
//                              optim/adam.hpp; scalars precomputed per step by the optimizer)
//   SgdUpdate<T>::update(i)    SGD with optional momentum / Nesterov (optim/sgd.hpp)
//   ParamRanges                the sorted, disjoint [begin, end) element ranges of the
//                              parameters in the flat buffers; contains(i) by binary search
//   ParameterElements<U>       the GPU body: called for every flat index i, updates i only
//                              when it lies in a parameter (padding is never read or written)
#pragma once

#include <cmath>

#include "revox/core/config.hpp"

namespace revox::kernels {

struct ParamRanges {
  const index_t* begin = nullptr;  // ascending
  const index_t* end = nullptr;    // end[k] <= begin[k + 1]
  index_t count = 0;

  REVOX_HD bool contains(index_t i) const {
    // The last range with begin <= i, if any.
    index_t low = 0, high = count;
    while (low < high) {
      const index_t mid = low + (high - low) / 2;
      if (begin[mid] <= i) {
        low = mid + 1;
      } else {
        high = mid;
      }
    }
    return low > 0 && i < end[low - 1];
  }
};

template <class T>
struct AdamUpdate {
  T* p;        // values
  const T* g;  // gradients, read only
  T* m;        // exp_avg
  T* v;        // exp_avg_sq
  T neg_step_size;          // -lr / (1 - beta1^t)
  T bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  T beta1;
  T beta2;
  T one_minus_beta1;
  T one_minus_beta2;
  T eps;
  T l2;     // Adam's weight decay, added to the gradient
  T decay;  // AdamW's 1 - lr * weight_decay
  bool decay_params;  // AdamW with weight decay
  bool decay_grads;   // Adam with weight decay

  REVOX_HD void update(index_t i) const {
    if (decay_params) p[i] = p[i] * decay;
    const T grad = decay_grads ? g[i] + l2 * p[i] : g[i];
    m[i] = m[i] * beta1 + one_minus_beta1 * grad;
    v[i] = v[i] * beta2 + one_minus_beta2 * grad * grad;
    const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
    p[i] = p[i] + neg_step_size * (m[i] / denom);
  }
};

template <class T>
struct SgdUpdate {
  T* p;
  const T* g;
  T* b;  // momentum buffer; unused (may be null) when has_momentum is false
  T neg_lr;
  T weight_decay;
  T momentum;
  T one_minus_dampening;
  bool decay;         // weight_decay != 0
  bool has_momentum;  // momentum != 0
  bool first;         // the first step: b <- d
  bool nesterov;

  REVOX_HD void update(index_t i) const {
    T d = decay ? g[i] + weight_decay * p[i] : g[i];
    if (has_momentum) {
      b[i] = first ? d : b[i] * momentum + one_minus_dampening * d;
      d = nesterov ? d + momentum * b[i] : b[i];
    }
    p[i] = p[i] + neg_lr * d;
  }
};

template <class Update>
struct ParameterElements {
  Update update;
  ParamRanges ranges;
  REVOX_HD void operator()(index_t i) const {
    if (ranges.contains(i)) update.update(i);
  }
};

}  // namespace revox::kernels
