// revox/core/tensor.hpp — Tensor<T, Device> (owning, move-only) and TensorView<T>
// (non-owning pointer + Shape5, passed to kernels by value).
//
// Layout is NCDHW and contiguous: one allocation per tensor, from the device's tracking
// allocator. A new tensor's contents are uninitialised; use zeros() or fill ops. Copies
// are explicit (clone()) so that a 2 GB activation is never duplicated by accident.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"

namespace revox {

template <class T>
struct TensorView {
  T* data = nullptr;
  Shape5 shape{};

  REVOX_HD constexpr index_t numel() const { return shape.numel(); }
  REVOX_HD constexpr bool empty() const { return data == nullptr || shape.numel() == 0; }
  REVOX_HD T& at(index_t n, index_t c, index_t d, index_t h, index_t w) const {
    return data[shape.offset(n, c, d, h, w)];
  }
  REVOX_HD T& operator[](index_t i) const { return data[i]; }
  // Pointer to the D*H*W block of (n, c).
  REVOX_HD T* channel(index_t n, index_t c) const {
    return data + (n * shape.c + c) * shape.spatial();
  }

  // A view is convertible to a view of const elements, never the other way round.
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  REVOX_HD operator TensorView<const U>() const {
    return TensorView<const U>{data, shape};
  }

  // Channels [first, first + count) of a batch-1 tensor, which are contiguous in NCDHW.
  // Throws for N > 1, where such a slice is not contiguous: take it per sample with
  // channels(n, first, count).
  TensorView channels(index_t first, index_t count) const {
    REVOX_CHECK(shape.n == 1, "TensorView::channels: a channel slice is contiguous only for "
                "batch 1, got N=", shape.n, "; use channels(n, first, count) for sample n");
    return channels(0, first, count);
  }
  // Channels [first, first + count) of sample n, for any batch size: a batch-1 view
  // (1, count, D, H, W), contiguous in NCDHW.
  TensorView channels(index_t n, index_t first, index_t count) const {
    REVOX_CHECK(n >= 0 && n < shape.n, "TensorView::channels: sample ", n,
                " out of range for N=", shape.n);
    REVOX_CHECK(first >= 0 && count >= 0 && first + count <= shape.c,
                "TensorView::channels: channels [", first, ", ", first + count,
                ") out of range for C=", shape.c);
    return TensorView{data + (n * shape.c + first) * shape.spatial(),
                      Shape5{1, count, shape.d, shape.h, shape.w}};
  }
  // Sample n as a batch-1 view (1, C, D, H, W).
  TensorView sample(index_t n) const { return channels(n, 0, shape.c); }
};

template <class T, class Device = Cpu>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>,
                "Tensor elements must be trivially copyable (float, double, integers)");

 public:
  using value_type = T;
  using device_type = Device;

  Tensor() = default;
  // Uninitialised contents.
  explicit Tensor(Shape5 shape) : shape_(shape) {
    REVOX_CHECK(shape.n >= 0 && shape.c >= 0 && shape.d >= 0 && shape.h >= 0 && shape.w >= 0,
                "Tensor: extents must be non-negative, got ", shape);
    data_ = static_cast<T*>(allocator().allocate(bytes()));
  }
  ~Tensor() { release(); }

  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), shape_(std::exchange(other.shape_, {})) {}
  Tensor& operator=(Tensor&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      shape_ = std::exchange(other.shape_, {});
    }
    return *this;
  }

  static Tensor zeros(Shape5 shape) {
    Tensor t(shape);
    DeviceTraits<Device>::zero(t.data_, t.bytes());
    return t;
  }
  // Host-accessible devices only; other devices fill through ops::fill.
  static Tensor full(Shape5 shape, T value) {
    static_assert(DeviceTraits<Device>::host_accessible,
                  "Tensor::full writes through host pointers; use ops::fill on this device");
    Tensor t(shape);
    std::fill(t.data_, t.data_ + t.numel(), value);
    return t;
  }

  Tensor clone() const {
    Tensor t(shape_);
    DeviceTraits<Device>::copy(t.data_, data_, bytes());
    return t;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const Shape5& shape() const { return shape_; }
  index_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
  bool empty() const { return numel() == 0; }

  TensorView<T> view() { return TensorView<T>{data_, shape_}; }
  TensorView<const T> view() const { return TensorView<const T>{data_, shape_}; }
  TensorView<const T> cview() const { return TensorView<const T>{data_, shape_}; }

  T& operator[](index_t i) { return data_[i]; }
  const T& operator[](index_t i) const { return data_[i]; }

  static TrackingAllocator& allocator() { return DeviceTraits<Device>::allocator(); }

 private:
  void release() noexcept {
    allocator().deallocate(data_, bytes());
    data_ = nullptr;
  }

  T* data_ = nullptr;
  Shape5 shape_{};
};

// A 1-D tensor of `count` elements, stored as shape (1, 1, 1, 1, count).
inline Shape5 flat_shape(index_t count) { return Shape5{1, 1, 1, 1, count}; }

}  // namespace revox
