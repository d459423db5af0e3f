// GPU parity of the Adam, AdamW and SGD steps: each runs through its dispatcher on Cuda and on
// Cpu from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77
// (skipped) without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_optim.cpp.
//
// Tolerance after 3 steps: float 1e-5, double 1e-12 (FMA contraction on the GPU).
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "../support/odd_params.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/cuda/optim.cuh"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"

using revox_cuda_test::elementwise::tolerance;

namespace {

template <class T>
Tensor<T> host_copy(TensorView<const T> device) {
  Tensor<T> host(device.shape);
  REVOX_CUDA_CHECK(cudaMemcpy(host.data(), device.data, host.bytes(), cudaMemcpyDeviceToHost));
  return host;
}

// Three steps on the CPU and on the GPU from the same values and gradients (garbage in the
// gradient padding); values and every state buffer compared, padding checked to stay zero.
template <class T, class Optimizer, class Make>
void compare_optimizer(const Cuda& dev, const std::string& name, Make make) {
  revox::Rng rng(207);
  OddParams<T> model_cpu, model_dev;
  revox::Parameters<T> cpu(model_cpu);
  revox::Parameters<T, Cuda> gpu(model_dev);
  for (index_t i = 0; i < cpu.size(); ++i) cpu.values()[i] = static_cast<T>(rng.uniform(-1, 1));
  std::vector<bool> is_param(static_cast<std::size_t>(cpu.size()), false);
  for (const auto& entry : cpu.entries()) {
    for (index_t i = entry.offset; i < entry.offset + entry.shape.numel(); ++i) {
      is_param[static_cast<std::size_t>(i)] = true;
    }
  }
  for (index_t i = 0; i < cpu.size(); ++i) {
    if (!is_param[static_cast<std::size_t>(i)]) cpu.values()[i] = T(0);
  }
  REVOX_CUDA_CHECK(cudaMemcpy(gpu.values().data, cpu.values().data, cpu.size() * sizeof(T),
                              cudaMemcpyHostToDevice));
  Optimizer opt_cpu = make(Cpu{}, cpu);
  auto opt_dev = make(dev, gpu);
  for (int step = 1; step <= 3; ++step) {
    for (index_t i = 0; i < cpu.size(); ++i) {
      cpu.grads()[i] = is_param[static_cast<std::size_t>(i)] ? static_cast<T>(rng.uniform(-1, 1))
                                                             : T(1e3);
    }
    REVOX_CUDA_CHECK(cudaMemcpy(gpu.grads().data, cpu.grads().data, cpu.size() * sizeof(T),
                                cudaMemcpyHostToDevice));
    opt_cpu.step();
    opt_dev.step();
  }
  CUDA_TEST_CHECK(opt_dev.steps() == 3);
  const Tensor<T> values = host_copy<T>(gpu.values());
  check_close(name + " values",
              max_error_same_nonfinite(values.data(), cpu.values().data, cpu.size()),
              tolerance<T>());
  std::vector<Tensor<T>> state_cpu;
  opt_cpu.visit_state([&](const char*, TensorView<T> buffer) {
    Tensor<T> copy(buffer.shape);
    std::memcpy(copy.data(), buffer.data, copy.bytes());
    state_cpu.push_back(std::move(copy));
  });
  std::size_t k = 0;
  index_t dirty = 0;
  opt_dev.visit_state([&](const char* state, TensorView<T> buffer) {
    CUDA_TEST_CHECK(k < state_cpu.size());
    if (k >= state_cpu.size()) return;
    const Tensor<T> host = host_copy<T>(buffer);
    check_close(name + " state " + state, max_error_same_nonfinite(host, state_cpu[k]),
                tolerance<T>());
    for (index_t i = 0; i < host.numel(); ++i) {
      dirty += !is_param[static_cast<std::size_t>(i)] && host[i] != T(0);
    }
    ++k;
  });
  CUDA_TEST_CHECK(k == state_cpu.size());
  for (index_t i = 0; i < values.numel(); ++i) {
    dirty += !is_param[static_cast<std::size_t>(i)] && values[i] != T(0);
  }
  CUDA_TEST_CHECK(dirty == 0);
}

template <class T>
void test_optimizers(const Cuda& dev) {
  namespace optim = revox::optim;
  const std::string prefix = std::string("optim<") + type_name<T>() + ">: ";
  const optim::AdamOptions adam{2e-2, 0.8, 0.95, 1e-6, 0.1};
  compare_optimizer<T, optim::Adam<T>>(dev, prefix + "Adam", [&](const auto& d, auto& p) {
    return optim::Adam<T, std::decay_t<decltype(d)>>(d, p, adam);
  });
  const optim::AdamWOptions adamw{1e-2, 0.9, 0.99, 1e-8, 0.05};
  compare_optimizer<T, optim::AdamW<T>>(dev, prefix + "AdamW", [&](const auto& d, auto& p) {
    return optim::AdamW<T, std::decay_t<decltype(d)>>(d, p, adamw);
  });
  for (const bool nesterov : {false, true}) {
    optim::SGDOptions sgd;
    sgd.lr = 0.1;
    sgd.momentum = 0.9;
    sgd.dampening = nesterov ? 0.0 : 0.25;
    sgd.weight_decay = 0.01;
    sgd.nesterov = nesterov;
    compare_optimizer<T, optim::SGD<T>>(
        dev, prefix + (nesterov ? "SGD Nesterov" : "SGD momentum"),
        [&](const auto& d, auto& p) {
          return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, sgd);
        });
  }
  optim::SGDOptions plain;
  plain.lr = 0.05;
  compare_optimizer<T, optim::SGD<T>>(dev, prefix + "SGD", [&](const auto& d, auto& p) {
    return optim::SGD<T, std::decay_t<decltype(d)>>(d, p, plain);
  });
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_optim", [](const Cuda& dev, auto t) {
    test_optimizers<decltype(t)>(dev);
  });
}
