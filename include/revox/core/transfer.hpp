// revox/core/transfer.hpp — tensors between the host and a device, for every device through
// the host <-> device copies of DeviceTraits (revox/core/device.hpp). Needs no CUDA header:
// a Cuda tensor's copy is instantiated where revox/core/cuda.hpp is included.
//
//   Tensor<T, Cpu> h = to_host(dev, t);        t: a Tensor<T, Dev>; ordered on dev's queue
//                                              (a Cuda's stream), returns once h is filled
//   Tensor<T, Dev> d = to_device(dev, host);   host: a Tensor<T, Cpu>; on dev's queue
//   to_host(t), to_device<Dev>(host)           the same, synchronous (on a GPU: the legacy
//                                              default stream, which waits for the work
//                                              queued on a CudaContext's stream)
// On the CPU each is a copy.
#pragma once

#include <cstddef>

#include "revox/core/device.hpp"
#include "revox/core/tensor.hpp"

namespace revox {

template <class Dev, class T>
Tensor<T, Cpu> to_host(const Dev& dev, const Tensor<T, Dev>& t) {
  Tensor<T, Cpu> host(t.shape());
  DeviceTraits<Dev>::copy_to_host(dev, host.data(), t.data(), t.bytes());
  return host;
}

template <class Dev, class T>
Tensor<T, Dev> to_device(const Dev& dev, const Tensor<T, Cpu>& host) {
  Tensor<T, Dev> t(host.shape());
  DeviceTraits<Dev>::copy_from_host(dev, t.data(), host.data(), host.bytes());
  return t;
}

template <class T, class Dev>
Tensor<T, Cpu> to_host(const Tensor<T, Dev>& t) {
  Tensor<T, Cpu> host(t.shape());
  DeviceTraits<Dev>::copy_to_host(host.data(), t.data(), t.bytes());
  return host;
}

template <class Dev, class T>
Tensor<T, Dev> to_device(const Tensor<T, Cpu>& host) {
  Tensor<T, Dev> t(host.shape());
  DeviceTraits<Dev>::copy_from_host(t.data(), host.data(), host.bytes());
  return t;
}

}  // namespace revox
