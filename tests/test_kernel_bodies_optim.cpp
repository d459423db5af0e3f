// The CUDA kernel bodies of the Adam, AdamW and SGD steps (include/revox/ops/kernel_bodies/), run
// on the CPU with kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/optim/). Outputs are pre-filled with NaN so an element a body never writes fails;
// shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU runs the same bodies
// through cuda::for_each (the GPU part of tests/test_optim.cpp checks it on a GPU).
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/ops/kernel_bodies/optim.hpp"
#include "revox/optim/adam.hpp"
#include "revox/optim/sgd.hpp"
#include "support/kernel_bodies.hpp"
#include "support/odd_params.hpp"

namespace {

// Random parameter values (padding stays 0) and random gradients with garbage in the padding.
template <class T>
void fill_params(revox::Parameters<T>& params, revox::Rng& rng, bool values) {
  const std::vector<index_t> table = revox::optim::detail::parameter_range_table(params.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(params.entries().size()));
  TensorView<T> buffer = values ? params.values() : params.grads();
  for (index_t i = 0; i < buffer.numel(); ++i) {
    if (ranges.contains(i)) {
      buffer[i] = static_cast<T>(rng.uniform(-1.0, 1.0));
    } else if (!values) {
      buffer[i] = T(1e3);  // the optimizers must never read this
    }
  }
}

// Runs `steps` updates with the CPU optimizer and with the update bodies over every flat index
// (as the GPU does), and compares values and state bit for bit.
template <class T, class MakeOptimizer, class MakeUpdate>
void compare_optimizer(MakeOptimizer make_optimizer, MakeUpdate make_update, int state_buffers) {
  revox::Rng rng(108);
  OddParams<T> model_cpu, model_emulated;
  revox::Parameters<T> cpu(model_cpu);
  revox::Parameters<T> emulated(model_emulated);
  REQUIRE(cpu.size() > cpu.count());  // there is padding
  fill_params(cpu, rng, true);
  std::memcpy(emulated.values().data, cpu.values().data,
              static_cast<std::size_t>(cpu.size()) * sizeof(T));
  auto optimizer = make_optimizer(cpu);
  std::vector<Tensor<T>> state;
  for (int k = 0; k < 2; ++k) state.push_back(Tensor<T>::zeros(revox::flat_shape(cpu.size())));
  const std::vector<index_t> table =
      revox::optim::detail::parameter_range_table(emulated.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(emulated.entries().size()));
  for (int step = 1; step <= 4; ++step) {
    fill_params(cpu, rng, false);
    std::memcpy(emulated.grads().data, cpu.grads().data,
                static_cast<std::size_t>(cpu.size()) * sizeof(T));
    optimizer.step();
    const auto update = make_update(emulated, state[0].data(), state[1].data(), step);
    kernels::emulate_for_each(emulated.size(),
                              kernels::ParameterElements<std::decay_t<decltype(update)>>{
                                  update, ranges});
    INFO("step " << step);
    CHECK(optimizer.steps() == step);
    CHECK(std::memcmp(emulated.values().data, cpu.values().data,
                      static_cast<std::size_t>(cpu.size()) * sizeof(T)) == 0);
    int visited = 0;
    optimizer.visit_state([&](const char* name, TensorView<T> buffer) {
      INFO("state " << name);
      REQUIRE(visited < state_buffers);
      CHECK(std::memcmp(buffer.data, state[static_cast<std::size_t>(visited)].data(),
                        static_cast<std::size_t>(buffer.numel()) * sizeof(T)) == 0);
      ++visited;
    });
    CHECK(visited == state_buffers);
  }
  // The padding of the values and the state stayed exactly zero.
  index_t dirty = 0;
  for (index_t i = 0; i < emulated.size(); ++i) {
    if (ranges.contains(i)) continue;
    dirty += emulated.values()[i] != T(0);
    dirty += state[0][i] != T(0);
    dirty += state[1][i] != T(0);
  }
  CHECK(dirty == 0);
}

}  // namespace

TEST_CASE("emulated kernels: ParamRanges::contains finds exactly the parameter elements",
          "[cuda][emulated][optim]") {
  OddParams<float> model;
  revox::Parameters<float> params(model);
  const std::vector<index_t> table = revox::optim::detail::parameter_range_table(params.entries());
  const auto ranges = revox::optim::detail::param_ranges(
      table.data(), static_cast<index_t>(params.entries().size()));
  index_t inside = 0;
  for (index_t i = -3; i < params.size() + 20; ++i) {
    bool expected = false;
    for (const auto& entry : params.entries()) {
      expected = expected || (i >= entry.offset && i < entry.offset + entry.shape.numel());
    }
    if (ranges.contains(i) != expected) FAIL("ParamRanges::contains is wrong at " << i);
    inside += expected;
  }
  CHECK(inside == params.count());
  CHECK_FALSE(revox::optim::detail::param_ranges(table.data(), 0).contains(0));
}

TEMPLATE_TEST_CASE("emulated kernels: Adam, AdamW and SGD steps match the CPU optimizers",
                   "[cuda][emulated][optim]", float, double) {
  using T = TestType;
  namespace optim = revox::optim;
  SECTION("Adam with L2 weight decay") {
    const optim::AdamOptions options{2e-2, 0.8, 0.95, 1e-6, 0.1};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::Adam<T>(p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, false, step);
        },
        2);
  }
  SECTION("Adam without weight decay") {
    const optim::AdamOptions options{};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::Adam<T>(revox::Cpu{}, p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, false, step);
        },
        2);
  }
  SECTION("AdamW") {
    const optim::AdamWOptions options{1e-2, 0.9, 0.99, 1e-8, 0.05};
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::AdamW<T>(p, options); },
        [&](revox::Parameters<T>& p, T* m, T* v, int step) {
          return optim::detail::adam_update<T>(p.values().data, p.grads().data, m, v, options.lr,
                                               options.beta1, options.beta2, options.eps,
                                               options.weight_decay, true, step);
        },
        2);
  }
  for (const bool nesterov : {false, true}) {
    DYNAMIC_SECTION("SGD with momentum, nesterov " << nesterov) {
      optim::SGDOptions options;
      options.lr = 0.1;
      options.momentum = 0.9;
      options.dampening = nesterov ? 0.0 : 0.25;
      options.weight_decay = 0.01;
      options.nesterov = nesterov;
      compare_optimizer<T>(
          [&](revox::Parameters<T>& p) { return optim::SGD<T>(revox::Cpu{}, p, options); },
          [&](revox::Parameters<T>& p, T* b, T*, int step) {
            return optim::detail::sgd_update<T>(p.values().data, p.grads().data, b, options.lr,
                                                options, step == 1);
          },
          1);
    }
  }
  SECTION("SGD without momentum") {
    optim::SGDOptions options;
    options.lr = 0.05;
    compare_optimizer<T>(
        [&](revox::Parameters<T>& p) { return optim::SGD<T>(p, options); },
        [&](revox::Parameters<T>& p, T*, T*, int) {
          return optim::detail::sgd_update<T>(p.values().data, p.grads().data, nullptr,
                                              options.lr, options, false);
        },
        0);
  }
}
