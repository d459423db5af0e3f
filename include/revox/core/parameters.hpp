// revox/core/parameters.hpp — parameters and their gradients in two flat buffers.
//
// A layer declares its parameters as Param<T> members (PyTorch layout and name, e.g. a conv
// weight [Cout, Cin/groups, kD, kH, kW] called "weight") and lists them through
//   template <class Fn> void visit_params(Fn&& fn);   // fn(const std::string& name, Param<T>&)
// Parameters<T, Device> walks a model once, allocates one value buffer and one gradient
// buffer for all of it, and points every Param into them, so that an optimizer step, a
// checkpoint and a gradient all-reduce are each one loop over one buffer. Each parameter
// starts on a 16-element boundary; the padding between parameters is zero in both buffers.
//
// The layer keeps raw pointers into the buffers: the Parameters object must outlive every
// use of the layers bound to it (copies of a bound layer share its parameters).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox {

// The extents of one parameter in PyTorch's layout (rank 1 to 5).
struct ParamShape {
  int rank = 0;
  std::array<index_t, 5> dims{};

  ParamShape() = default;
  ParamShape(std::initializer_list<index_t> extents) {
    REVOX_CHECK(extents.size() >= 1 && extents.size() <= 5,
                "ParamShape: rank must be 1 to 5, got ", extents.size());
    for (index_t e : extents) dims[static_cast<std::size_t>(rank++)] = e;
  }
  index_t numel() const {
    index_t count = rank > 0 ? 1 : 0;
    for (int i = 0; i < rank; ++i) count *= dims[static_cast<std::size_t>(i)];
    return count;
  }
  friend bool operator==(const ParamShape& a, const ParamShape& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i) {
      if (a.dims[static_cast<std::size_t>(i)] != b.dims[static_cast<std::size_t>(i)]) return false;
    }
    return true;
  }
  friend std::ostream& operator<<(std::ostream& out, const ParamShape& s) {
    out << '[';
    for (int i = 0; i < s.rank; ++i) out << (i ? ", " : "") << s.dims[static_cast<std::size_t>(i)];
    return out << ']';
  }
};

template <class T>
struct Param {
  ParamShape shape;
  T* value = nullptr;  // device memory of the Parameters it is bound to
  T* grad = nullptr;

  Param() = default;
  explicit Param(ParamShape s) : shape(s) {}
  index_t numel() const { return shape.numel(); }
  bool bound() const { return value != nullptr; }
};

// Where one parameter lives in the flat buffers.
struct ParamEntry {
  std::string name;
  ParamShape shape;
  index_t offset = 0;
};

namespace detail {
inline constexpr index_t kParamAlignment = 16;
inline index_t align_up(index_t value, index_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}
}  // namespace detail

template <class T, class Device = Cpu>
class Parameters {
 public:
  template <class Layer>
  explicit Parameters(Layer& layer) {
    index_t total = 0;
    layer.visit_params([&](const std::string& name, Param<T>& p) {
      REVOX_CHECK(p.numel() > 0, "Parameters: parameter '", name, "' has no elements");
      total = detail::align_up(total, detail::kParamAlignment);
      entries_.push_back(ParamEntry{name, p.shape, total});
      total += p.numel();
    });
    values_ = Tensor<T, Device>::zeros(flat_shape(total));
    grads_ = Tensor<T, Device>::zeros(flat_shape(total));
    std::size_t next = 0;
    layer.visit_params([&](const std::string& name, Param<T>& p) {
      REVOX_ASSERT(next < entries_.size() && entries_[next].name == name);
      p.value = values_.data() + entries_[next].offset;
      p.grad = grads_.data() + entries_[next].offset;
      ++next;
    });
    REVOX_ASSERT(next == entries_.size());
  }

  Parameters(const Parameters&) = delete;
  Parameters& operator=(const Parameters&) = delete;
  // Moving keeps the buffers (and so the layers' pointers) valid.
  Parameters(Parameters&&) noexcept = default;
  Parameters& operator=(Parameters&&) noexcept = default;

  // Length of the flat buffers, padding included.
  index_t size() const { return values_.numel(); }
  // Number of parameter elements, padding excluded.
  index_t count() const {
    index_t n = 0;
    for (const auto& e : entries_) n += e.shape.numel();
    return n;
  }
  TensorView<T> values() { return values_.view(); }
  TensorView<const T> values() const { return values_.view(); }
  TensorView<T> grads() { return grads_.view(); }
  TensorView<const T> grads() const { return grads_.view(); }
  const std::vector<ParamEntry>& entries() const { return entries_; }

  void zero_grad() { DeviceTraits<Device>::zero(grads_.data(), grads_.bytes()); }

 private:
  Tensor<T, Device> values_;
  Tensor<T, Device> grads_;
  std::vector<ParamEntry> entries_;
};

// Total number of parameter elements of a layer (no buffers needed).
template <class Layer>
index_t param_count(Layer& layer) {
  index_t total = 0;
  layer.visit_params([&](const std::string&, auto& p) { total += p.numel(); });
  return total;
}

}  // namespace revox
