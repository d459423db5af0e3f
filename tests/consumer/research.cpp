// What a researcher builds against an installed revox, from the guide only: a layer of their
// own, a reversible network inside Sequentials, a U-Net with their own encoder blocks,
// saving and loading its parameters, and planning its memory. Exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "revox/revox.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// y[n, c] = x[n, c] * (1 + gain[c]): a layer of the user's own, with its hand-written backward.
template <class T>
class ChannelGain {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::TensorView<const T> x;
  };
  explicit ChannelGain(revox::index_t channels) : channels_(channels), gain_({channels}) {}
  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK_EQ("ChannelGain: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("gain", gain_);
  }
  void reset_parameters(revox::Rng& rng) { revox::fill_uniform(gain_.value, channels_, rng, -0.1, 0.1); }
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    if constexpr (!revox::is_plan_v<Dev>) {  // host arithmetic: none when memory is planned
      for (revox::index_t n = 0; n < x.shape.n; ++n)
        for (revox::index_t c = 0; c < channels_; ++c)
          for (revox::index_t i = 0; i < x.shape.spatial(); ++i)
            y.channel(n, c)[i] = x.channel(n, c)[i] * (T(1) + gain_.value[c]);
    }
    if (saved != nullptr) saved->x = x;
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    if constexpr (!revox::is_plan_v<Dev>) {
      for (revox::index_t n = 0; n < dy.shape.n; ++n)
        for (revox::index_t c = 0; c < channels_; ++c)
          for (revox::index_t i = 0; i < dy.shape.spatial(); ++i) {
            const T g = dy.channel(n, c)[i];
            gain_.grad[c] += g * saved.x.channel(n, c)[i];
            if (!dx.empty()) dx.channel(n, c)[i] = g * (T(1) + gain_.value[c]);
          }
    }
  }

 private:
  revox::index_t channels_;
  revox::Param<T> gain_;
};
static_assert(revox::check_layer_contract<ChannelGain<float>>());

template <class T>
using MyBlock = revox::Sequential<revox::MBConv<T>, ChannelGain<T>>;

template <class T>
MyBlock<T> make_block(revox::index_t half) {
  return MyBlock<T>(revox::MBConv<T>(half, half, 2, 2), ChannelGain<T>(half));
}

// A reversible network inside Sequentials: reversible parts first, in the middle, last, and
// a reversible block whose F is itself a Sequential ending in a reversible block.
template <class T>
auto make_composed() {
  using Inner = revox::ReversibleBlock<ChannelGain<T>, revox::GroupNorm<T>>;
  using F = revox::Sequential<revox::PointwiseConv3d<T>, Inner>;
  using Outer = revox::ReversibleBlock<F, MyBlock<T>>;
  using Net = revox::Sequential<Outer, revox::PointwiseConv3d<T>,
                                revox::ReversibleSequence<revox::ReversibleBlock<MyBlock<T>, MyBlock<T>>>,
                                revox::GroupNorm<T>, Outer>;
  auto outer = [] {
    return Outer(F(revox::PointwiseConv3d<T>(4, 4), Inner(ChannelGain<T>(2), revox::GroupNorm<T>(1, 2))),
                 make_block<T>(4));
  };
  std::vector<revox::ReversibleBlock<MyBlock<T>, MyBlock<T>>> blocks;
  for (int k = 0; k < 2; ++k) blocks.emplace_back(make_block<T>(4), make_block<T>(4));
  return Net(outer(), revox::PointwiseConv3d<T>(8, 8),
             revox::ReversibleSequence<revox::ReversibleBlock<MyBlock<T>, MyBlock<T>>>(std::move(blocks)),
             revox::GroupNorm<T>(2, 8), outer());
}

}  // namespace

int main() {
  using namespace revox;

  {  // 1. The composition's gradients, against finite differences.
    auto net = make_composed<double>();
    Parameters<double> params(net);
    testing::GradcheckOptions options;
    options.max_checks_per_tensor = 6;
    const testing::GradcheckResult result = testing::gradcheck(net, params, Shape5{2, 8, 3, 4, 5}, options);
    expect(result.passed, "gradcheck of a reversible network inside Sequentials (" +
                              std::to_string(result.checked) + " entries)");
    if (!result.passed) std::printf("%s", result.report.c_str());
  }

  // 2. A U-Net with the user's own encoder blocks: train a few steps.
  UNetConfig config = unet_preset("tiny");
  auto factory = [](index_t half, index_t) { return make_block<float>(half); };
  using Net = UNet<float, MyBlock<float>>;
  Net net(config, factory);
  Parameters<float> params(net);
  Rng rng(5);
  net.reset_parameters(rng);
  const Shape5 input{1, config.in_channels, 16, 16, 16};
  Tensor<float> x(input);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> target(net.output_shape(input));
  for (index_t i = 0; i < target.numel(); ++i) target[i] = x[i % x.numel()] > 0 ? 1.0f : -1.0f;
  Tensor<float> y(target.shape());
  Tensor<float> dy(target.shape());
  optim::Adam<float> adam(params, optim::AdamOptions{3e-3});
  std::vector<double> losses_seen;
  for (int step = 0; step < 6; ++step) {
    saved_t<Net, Cpu> saved;
    net.forward(Cpu{}, x.cview(), y.view(), &saved);
    losses_seen.push_back(losses::mse_loss<float>(y.cview(), target.cview(), dy.view()));
    params.zero_grad();
    net.backward(Cpu{}, saved, dy.cview(), TensorView<float>{});
    adam.step();
  }
  expect(losses_seen.back() < losses_seen.front() && std::isfinite(losses_seen.back()),
         "UNet<float, MyBlock> trains: mse " + std::to_string(losses_seen.front()) + " -> " +
             std::to_string(losses_seen.back()));

  // 3. Save and load: a fresh model with the loaded parameters computes the same output.
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() / "revox_consumer_research.safetensors";
  io::save_parameters(file, params);
  Net copy(config, factory);
  Parameters<float> copy_params(copy);
  io::load_parameters(file, copy_params);
  std::filesystem::remove(file);
  Tensor<float> y1(target.shape());
  Tensor<float> y2(target.shape());
  net.forward(Cpu{}, x.cview(), y1.view(), nullptr);
  copy.forward(Cpu{}, x.cview(), y2.view(), nullptr);
  expect(std::memcmp(y1.data(), y2.data(), y1.bytes()) == 0,
         "save_parameters / load_parameters reproduce the model bit for bit");
  bool refused = false;
  try {
    UNetConfig other = config;
    other.widths = {8, 16};
    UNet<float, MyBlock<float>> smaller(other, factory);
    Parameters<float> smaller_params(smaller);
    io::save_parameters(file, params);
    io::load_parameters(file, smaller_params);
  } catch (const Error& e) {
    refused = std::string(e.what()).find("unexpected") != std::string::npos ||
              std::string(e.what()).find("missing") != std::string::npos;
  }
  std::filesystem::remove(file);
  expect(refused, "strict loading refuses a file of another architecture by name");

  // 4. Plan its memory and measure the same step.
  const MemoryPlan plan = plan_layer_memory(net, input);
  const std::size_t measured = measure_layer_memory(net, input);
  expect(plan.peak_bytes == measured, "plan_layer_memory " + std::to_string(plan.peak_bytes) +
                                          " B == measured " + std::to_string(measured) + " B");

  if (failures != 0) {
    std::printf("revox consumer (research): %d FAILED\n", failures);
    return 1;
  }
  std::printf("revox consumer (research): all checks passed\n");
  return 0;
}
