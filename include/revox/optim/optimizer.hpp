// revox/optim/optimizer.hpp — what every revox optimizer shares: the flat-buffer element
// ranges it updates, the learning rate and the step count.
//
// An optimizer works on a Parameters<T, Cpu> (one value buffer, one gradient buffer). It
// keeps views of the two buffers (which stay valid when the Parameters object is moved)
// and the element ranges of the parameters, so it updates parameter elements only: the
// zero padding between parameters stays zero whatever the gradient buffer holds there.
// The Parameters object must outlive the optimizer.
//
// Every optimizer provides
//   void step();                          one update from the current gradients
//   double lr() const; void set_lr(double);
//   std::int64_t steps() const;           updates done so far (PyTorch's state["step"])
//   void set_steps(std::int64_t);         with visit_state, restores a checkpoint
//   template <class Fn> void visit_state(Fn&& fn);   fn(const char* name, TensorView<T>)
//       for each state buffer, each as long as the flat buffers (padding included, zero).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"

namespace revox::optim {
namespace detail {

// Elements per OpenMP work item; the update is elementwise, so any split gives the same
// result.
inline constexpr index_t kOptimChunk = index_t{1} << 14;

struct Span {
  index_t begin = 0;
  index_t end = 0;
};

// The parameter elements of `entries`, padding excluded, cut into spans of at most
// kOptimChunk elements.
inline std::vector<Span> parameter_spans(const std::vector<ParamEntry>& entries) {
  std::vector<Span> spans;
  for (const auto& entry : entries) {
    const index_t end = entry.offset + entry.shape.numel();
    for (index_t begin = entry.offset; begin < end; begin += kOptimChunk) {
      spans.push_back(Span{begin, std::min(begin + kOptimChunk, end)});
    }
  }
  return spans;
}

inline void check_finite_non_negative(const char* optimizer, const char* what, double value) {
  REVOX_CHECK(std::isfinite(value) && value >= 0.0, optimizer, ": ", what,
              " must be finite and non-negative, got ", value);
}

inline void check_beta(const char* optimizer, const char* what, double value) {
  REVOX_CHECK(value >= 0.0 && value < 1.0, optimizer, ": ", what, " must be in [0, 1), got ",
              value);
}

// The shared part of every optimizer: buffer views, spans, lr and step count.
template <class T, class Device>
class OptimizerBase {
  static_assert(std::is_floating_point_v<T>, "optimizers update float or double parameters");
  static_assert(is_cpu_v<Device>,
                "revox::optim: no update kernel for this device yet (CUDA optimizers arrive "
                "with the CUDA backend)");

 public:
  double lr() const { return lr_; }
  void set_lr(double lr) {
    check_finite_non_negative(name_, "lr", lr);
    lr_ = lr;
  }
  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t steps) {
    REVOX_CHECK(steps >= 0, name_, ": steps must be non-negative, got ", steps);
    steps_ = steps;
  }

 protected:
  OptimizerBase(const char* name, Parameters<T, Device>& params, double lr)
      : name_(name),
        values_(params.values()),
        grads_(params.grads()),
        spans_(parameter_spans(params.entries())) {
    set_lr(lr);
  }

  // A zero buffer as long as the flat parameter buffer.
  Tensor<T, Device> zero_state() const { return Tensor<T, Device>::zeros(values_.shape); }

  // fn(i) for every parameter element i, in parallel.
  template <class Fn>
  void for_each_element(Fn&& fn) const {
    const auto count = static_cast<index_t>(spans_.size());
    const Span* spans = spans_.data();
#pragma omp parallel for schedule(static) if (values_.numel() > kOptimChunk)
    for (index_t s = 0; s < count; ++s) {
      for (index_t i = spans[s].begin; i < spans[s].end; ++i) fn(i);
    }
  }

  const char* name_;
  TensorView<T> values_;
  TensorView<T> grads_;
  std::vector<Span> spans_;
  double lr_ = 0.0;
  std::int64_t steps_ = 0;
};

}  // namespace detail
}  // namespace revox::optim
