// What the U-Net tests share (test_unet*.cpp, test_unet_custom_block*.cpp): one forward and
// backward of any U-Net-like layer with its results kept, and the comparison of two runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/testing/gradcheck.hpp"

namespace revox_test {

// A small U-Net configuration: `block` ("mbconv" or "standard"), the level widths, GroupNorm
// groups and blocks per level; expand ratio 2, everything else UNetConfig's default.
inline revox::UNetConfig small_config(const std::string& block,
                                      std::vector<revox::index_t> widths,
                                      revox::index_t num_groups,
                                      revox::index_t blocks_per_level = 1) {
  revox::UNetConfig c;
  c.widths = std::move(widths);
  c.num_groups = num_groups;
  c.block = block;
  c.blocks_per_level = blocks_per_level;
  c.expand_ratio = 2;
  return c;
}

template <class T>
struct Run {
  revox::Tensor<T> y;
  revox::Tensor<T> dx;
  std::vector<T> grads;
};

// One forward (with saved) and backward at fixed x and dy on the CPU; grads start from zero.
template <class Net, class T = typename Net::value_type>
Run<T> forward_backward(Net& net, revox::Parameters<T>& params, const revox::Tensor<T>& x,
                        const revox::Tensor<T>& dy) {
  const revox::Cpu dev;
  Run<T> run{revox::Tensor<T>(net.output_shape(x.shape())), revox::Tensor<T>(x.shape()), {}};
  params.zero_grad();
  typename Net::template Saved<revox::Cpu> saved;
  net.forward(dev, x.cview(), run.y.view(), &saved);
  net.backward(dev, saved, dy.cview(), run.dx.view());
  run.grads.assign(params.grads().data, params.grads().data + params.size());
  return run;
}

// max |a - b| over max |a| (or the plain max |a - b| when a is all zero).
template <class T>
double max_rel_diff(const T* a, const T* b, revox::index_t count) {
  double worst = 0.0;
  double scale = 0.0;
  for (revox::index_t i = 0; i < count; ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  }
  for (revox::index_t i = 0; i < count; ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return scale > 0.0 ? worst / scale : worst;
}

// Gradcheck of a double-precision U-Net-like layer at `input` with the U-Net tests' tolerances
// (rtol 1e-5, atol 1e-6), at most `max_checks` entries per tensor; the caller asserts on it.
template <class Net>
revox::testing::GradcheckResult unet_gradcheck(Net& net, revox::Shape5 input,
                                               revox::index_t max_checks) {
  revox::Parameters<double> params(net);
  revox::testing::GradcheckOptions options;
  options.max_checks_per_tensor = max_checks;
  options.rtol = 1e-5;
  options.atol = 1e-6;
  return revox::testing::gradcheck(net, params, input, options);
}

}  // namespace revox_test
