// revox/optim/optimizer.hpp — what every revox optimizer shares: the flat-buffer element
// ranges it updates, the learning rate, the step count and the device it runs on.
//
// An optimizer works on a Parameters<T, Device> (one value buffer, one gradient buffer), on
// the CPU or on a GPU (Device = Cuda). It keeps views of the two buffers (which stay valid
// when the Parameters object is moved) and the element ranges of the parameters, so it updates
// parameter elements only: the zero padding between parameters stays zero whatever the
// gradient buffer holds there. The Parameters object must outlive the optimizer.
//
// Every optimizer provides
//   void step();                          one update from the current gradients
//   double lr() const; void set_lr(double);
//   std::int64_t steps() const;           updates done so far (PyTorch's state["step"])
//   void set_steps(std::int64_t);         with visit_state, restores a checkpoint
//   template <class Fn> void visit_state(Fn&& fn);   fn(const char* name, TensorView<T>)
//       for each state buffer, each as long as the flat buffers (padding included, zero),
//       in the Parameters' device memory.
// Construction: Optimizer(params, options) on the CPU; Optimizer(dev, params, options) on
// any device. step() runs the update body of ops/kernel_bodies/optim.hpp through
// OptimKernels<Device> with the optimizer's copy of the parameter ranges: on the CPU over
// chunks of the flat buffers with OpenMP (ops/cpu/optim.hpp); on Cuda, with the state buffers
// on the GPU, over every flat index, asynchronously on dev.stream (ops/cuda/optim.cuh).
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
#include "revox/ops/kernel_bodies/optim.hpp"

namespace revox::ops {
// What an optimizer runs on its device: upload_parameter_ranges(dev, dst, host_src, count)
// and for_each_parameter_element(dev, flat_size, ranges, update). OptimKernels<Cpu> is in
// ops/cpu/optim.hpp (included below), OptimKernels<Cuda> in ops/cuda/optim.cuh (included
// below when nvcc compiles).
template <class Dev>
struct OptimKernels {
  static_assert(::revox::detail::always_false_v<Dev>,
                "revox::optim has no kernels for this device: a CUDA translation unit must "
                "include revox/ops/cuda/optim.cuh (or revox/revox.cuh)");
};
}  // namespace revox::ops

namespace revox::optim {
namespace detail {

// The [begin, end) element range of every parameter, in buffer order: `count` begins, then
// `count` ends (the layout kernels::ParamRanges reads).
inline std::vector<index_t> parameter_range_table(const std::vector<ParamEntry>& entries) {
  const auto count = entries.size();
  std::vector<index_t> table(2 * count);
  for (std::size_t k = 0; k < count; ++k) {
    table[k] = entries[k].offset;
    table[count + k] = entries[k].offset + entries[k].shape.numel();
  }
  return table;
}

inline kernels::ParamRanges param_ranges(const index_t* table, index_t count) {
  return kernels::ParamRanges{table, table + count, count};
}

inline void check_finite_non_negative(const char* optimizer, const char* what, double value) {
  REVOX_CHECK(std::isfinite(value) && value >= 0.0, optimizer, ": ", what,
              " must be finite and non-negative, got ", value);
}

inline void check_beta(const char* optimizer, const char* what, double value) {
  REVOX_CHECK(value >= 0.0 && value < 1.0, optimizer, ": ", what, " must be in [0, 1), got ",
              value);
}

// The shared part of every optimizer: device, buffer views, parameter ranges, lr and step
// count.
template <class T, class Device>
class OptimizerBase {
  static_assert(std::is_floating_point_v<T>, "optimizers update float or double parameters");
  static_assert(is_cpu_v<Device> || is_cuda_v<Device>,
                "revox::optim: optimizers run on Cpu or Cuda parameters");

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
  OptimizerBase(const char* name, const Device& dev, Parameters<T, Device>& params, double lr)
      : name_(name),
        device_(dev),
        values_(params.values()),
        grads_(params.grads()) {
    set_lr(lr);
    const std::vector<index_t> table = parameter_range_table(params.entries());
    range_count_ = static_cast<index_t>(params.entries().size());
    if constexpr (is_cpu_v<Device>) {
      range_table_.resize(table.size());
    } else {
      range_table_ = Tensor<index_t, Device>(flat_shape(static_cast<index_t>(table.size())));
    }
    ops::OptimKernels<Device>::upload_parameter_ranges(device_, range_table_.data(),
                                                       table.data(),
                                                       static_cast<index_t>(table.size()));
  }

  // A zero buffer as long as the flat parameter buffer.
  Tensor<T, Device> zero_state() const { return Tensor<T, Device>::zeros(values_.shape); }

  // update.update(i) for every parameter element i (padding skipped), on the device:
  // OptimKernels<Device> (ops/cpu/optim.hpp, ops/cuda/optim.cuh).
  template <class Update>
  void apply(const Update& update) const {
    ops::OptimKernels<Device>::for_each_parameter_element(
        device_, values_.numel(), param_ranges(range_table_.data(), range_count_), update);
  }

  const char* name_;
  Device device_;
  TensorView<T> values_;
  TensorView<T> grads_;
  // parameter_range_table on the device: on the CPU a plain vector, bookkeeping that the
  // tracking allocator and the memory planner do not count (models/memory_planner.hpp).
  std::conditional_t<is_cpu_v<Device>, std::vector<index_t>, Tensor<index_t, Device>>
      range_table_;
  index_t range_count_ = 0;
  double lr_ = 0.0;
  std::int64_t steps_ = 0;
};

}  // namespace detail
}  // namespace revox::optim

#include "revox/ops/cpu/optim.hpp"
#ifdef __CUDACC__
#include "revox/ops/cuda/optim.cuh"
#endif
