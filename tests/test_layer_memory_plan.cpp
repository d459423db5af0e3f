// The generic memory planner (plan_layer_memory, revox/models/memory_planner.hpp) and the
// planning device it runs on (revox/core/plan.hpp): for containers, revox layers and a
// layer written here, the plan of one training step must equal, to the byte, the tracking
// allocator's peak when measure_layer_memory runs the same step on the CPU.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/plan.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/models/unet.hpp"
#include "revox/models/unet_config.hpp"
#include "revox/ops/add.hpp"
#include "revox/ops/fill.hpp"

#include "support/layer_memory_plan.hpp"
#include "support/unet_memory.hpp"

using revox::index_t;
using revox::MemoryPlan;
using revox::MemoryPlanOptions;
using revox::Shape5;
using revox_test::check_layer;

namespace {

// A layer of the user's own, built from revox layers with its own intermediates:
// y = x + GroupNorm(Conv3d(ReLU(x))).
template <class T>
class ResidualUnit {
 public:
  using value_type = T;

  template <class Dev>
  struct Saved {
    revox::saved_t<revox::ReLU<T>, Dev> relu;
    revox::saved_t<revox::Conv3d<T>, Dev> conv;
    revox::saved_t<revox::GroupNorm<T>, Dev> norm;
    revox::Tensor<T, Dev> activated;  // ReLU(x): the conv's input
    revox::Tensor<T, Dev> convolved;  // the norm's input
  };

  ResidualUnit(index_t channels, index_t groups)
      : conv_(channels, channels, 3), norm_(groups, channels) {}

  Shape5 output_shape(Shape5 in) const { return norm_.output_shape(conv_.output_shape(in)); }

  template <class Fn>
  void visit_params(Fn&& fn) {
    conv_.visit_params([&](const std::string& name, revox::Param<T>& p) { fn("conv." + name, p); });
    norm_.visit_params([&](const std::string& name, revox::Param<T>& p) { fn("norm." + name, p); });
  }
  void reset_parameters(revox::Rng& rng) {
    conv_.reset_parameters(rng);
    norm_.reset_parameters(rng);
  }

  template <class Dev>
  void forward(const Dev& dev, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    revox::Tensor<T, Dev> activated(x.shape);
    relu_.forward(dev, x, activated.view(), saved != nullptr ? &saved->relu : nullptr);
    revox::Tensor<T, Dev> convolved(x.shape);
    conv_.forward(dev, activated.cview(), convolved.view(),
                  saved != nullptr ? &saved->conv : nullptr);
    if (saved == nullptr) activated = revox::Tensor<T, Dev>();
    norm_.forward(dev, convolved.cview(), y, saved != nullptr ? &saved->norm : nullptr);
    revox::ops::add_inplace(dev, y, x);
    if (saved != nullptr) {
      saved->activated = std::move(activated);
      saved->convolved = std::move(convolved);
    }
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    revox::Tensor<T, Dev> dconvolved(dy.shape);
    norm_.backward(dev, saved.norm, dy, dconvolved.view());
    saved.convolved = revox::Tensor<T, Dev>();
    revox::Tensor<T, Dev> dactivated(dy.shape);
    conv_.backward(dev, saved.conv, dconvolved.cview(), dactivated.view());
    dconvolved = revox::Tensor<T, Dev>();
    saved.activated = revox::Tensor<T, Dev>();
    if (!dx.empty()) {
      relu_.backward(dev, saved.relu, dactivated.cview(), dx);
      revox::ops::add_inplace(dev, dx, dy);
    }
    saved = Saved<Dev>{};
  }

 private:
  revox::ReLU<T> relu_;
  revox::Conv3d<T> conv_;
  revox::GroupNorm<T> norm_;
};

std::size_t floats(const Shape5& s) { return static_cast<std::size_t>(s.numel()) * sizeof(float); }

}  // namespace

TEST_CASE("plan device: fake, distinct addresses, counted bytes, no host memory",
          "[memory_planner][plan]") {
  revox::TrackingAllocator& plan_allocator = revox::DeviceTraits<revox::Plan>::allocator();
  const std::size_t cpu_before = revox::cpu_allocator().current_bytes();
  const std::size_t plan_before = plan_allocator.current_bytes();
  {
    revox::Tensor<float, revox::Plan> a(Shape5{1, 2, 64, 64, 64});
    revox::Tensor<float, revox::Plan> b = revox::Tensor<float, revox::Plan>::zeros(Shape5{1, 1, 1, 1, 3});
    REQUIRE(a.data() != nullptr);
    REQUIRE(b.data() != nullptr);
    const auto a_begin = reinterpret_cast<std::uintptr_t>(a.data());
    const auto b_begin = reinterpret_cast<std::uintptr_t>(b.data());
    CHECK((a_begin + a.bytes() <= b_begin || b_begin + b.bytes() <= a_begin));
    CHECK(plan_allocator.current_bytes() - plan_before == a.bytes() + b.bytes());
    CHECK(revox::plan_record().current_bytes == plan_allocator.current_bytes());
    CHECK(revox::cpu_allocator().current_bytes() == cpu_before);
  }
  CHECK(plan_allocator.current_bytes() == plan_before);
}

TEST_CASE("layer memory plan: Sequential<Conv3d, GroupNorm, ReLU> matches the measured peak",
          "[memory_planner][plan]") {
  using Seq = revox::Sequential<revox::Conv3d<float>, revox::GroupNorm<float>, revox::ReLU<float>>;
  const Seq small(revox::Conv3d<float>(4, 8, 3), revox::GroupNorm<float>(2, 8), revox::ReLU<float>());
  const Shape5 input{1, 4, 16, 16, 16};
  const MemoryPlan plan = check_layer("Sequential 4->8 16^3", small, input);
  // What forward keeps, by hand: the conv's and the norm's outputs and the norm's mean and
  // rstd (N x G doubles each).
  CHECK(plan.saved_bytes == 2 * floats(input.with_channels(8)) + 2 * 1 * 2 * sizeof(double));
  // Parameters: weight 8x4x27 (864) and bias 8 (at 864, 16-aligned) + GroupNorm 8 + 8.
  CHECK(plan.parameter_count == 864 + 8 + 8 + 8);
  CHECK(plan.parameter_buffer_elements == 864 + 16 + 16 + 8);
  CHECK(plan.input_target_bytes == floats(input) + floats(input.with_channels(8)));
  CHECK(plan.output_bytes == 2 * floats(input.with_channels(8)));

  // Larger, batch 2, with dx: the conv's column (im2col) path and its backward-data scratch.
  const Seq wide(revox::Conv3d<float>(16, 16, 3), revox::GroupNorm<float>(4, 16),
                 revox::ReLU<float>());
  MemoryPlanOptions options;
  options.input_gradient = true;
  check_layer("Sequential 16->16 batch 2 24^3 with dx", wide, Shape5{2, 16, 24, 24, 24}, options);
  options.optimizer = "sgd";
  check_layer("Sequential 16->16 32^3 with dx, sgd", wide, Shape5{1, 16, 32, 32, 32}, options);
}

TEST_CASE("layer memory plan: every other layer kind matches the measured peak",
          "[memory_planner][plan]") {
  using Seq = revox::Sequential<revox::PointwiseConv3d<float>, revox::ReLU6<float>,
                                revox::DepthwiseConv3d<float>, revox::LeakyReLU<float>,
                                revox::MaxPool3d<float>, revox::UpsampleTrilinear<float>,
                                revox::Conv3d<float>>;
  const Seq net(revox::PointwiseConv3d<float>(4, 8, true), revox::ReLU6<float>(),
                revox::DepthwiseConv3d<float>(8), revox::LeakyReLU<float>(0.1),
                revox::MaxPool3d<float>(), revox::UpsampleTrilinear<float>(),
                revox::Conv3d<float>(8, 4, 1));
  MemoryPlanOptions options;
  options.input_gradient = true;
  const Shape5 input{2, 4, 16, 16, 16};
  const MemoryPlan plan = check_layer("Sequential of every other layer kind", net, input, options);
  // Forward keeps the six intermediates (five full-size, the pooled one an eighth) and the
  // max pool's argmax, one byte per pooled element.
  const Shape5 pooled{2, 8, 8, 8, 8};
  CHECK(plan.saved_bytes == 5 * floats(input.with_channels(8)) + floats(pooled) +
                                static_cast<std::size_t>(pooled.numel()));
  // ops::fill on Plan does nothing and allocates nothing.
  revox::Tensor<float, revox::Plan> t(input);
  const std::size_t before = revox::plan_record().current_bytes;
  revox::ops::fill(revox::Plan{}, t.view(), 1.0f);
  CHECK(revox::plan_record().current_bytes == before);
}

TEST_CASE("layer memory plan: a user-defined layer matches the measured peak",
          "[memory_planner][plan]") {
  const ResidualUnit<float> unit(8, 2);
  MemoryPlanOptions options;
  options.input_gradient = true;
  const Shape5 input{1, 8, 16, 16, 16};
  const MemoryPlan plan = check_layer("ResidualUnit with dx", unit, input, options);
  // Forward keeps its two intermediates and the norm's statistics.
  CHECK(plan.saved_bytes == 2 * floats(input) + 2 * 2 * sizeof(double));
  options.input_gradient = false;
  options.optimizer = "none";
  check_layer("ResidualUnit without dx, no optimizer", unit, Shape5{2, 8, 24, 16, 16}, options);
  // Nested in a Sequential with revox layers.
  using Seq = revox::Sequential<ResidualUnit<float>, revox::ConvBlock<float>>;
  check_layer("Sequential<ResidualUnit, ConvBlock>",
              Seq(ResidualUnit<float>(8, 2), revox::ConvBlock<float>(8, 4, 2)), input);
}

TEST_CASE("layer memory plan: the UNet planner is plan_layer_memory of the UNet",
          "[memory_planner][plan][unet]") {
  for (bool reversible : {true, false}) {
    revox::UNetConfig config = revox::unet_preset("tiny");
    config.reversible = reversible;
    const Shape5 input{1, 4, 16, 16, 16};
    const MemoryPlan via_config = revox::plan_training_memory(config, input);
    const MemoryPlan via_layer =
        revox::plan_layer_memory(revox::UNet<float>(config), input, MemoryPlanOptions{});
    CHECK(via_config.peak_bytes == via_layer.peak_bytes);
    CHECK(via_config.saved_bytes == via_layer.saved_bytes);
    CHECK(via_config.peak_at == via_layer.peak_at);
    CHECK(via_layer.peak_bytes == revox::measure_layer_memory(revox::UNet<float>(config), input));
  }
}

TEST_CASE("layer memory plan: the caller's layer keeps its own parameters",
          "[memory_planner][plan]") {
  revox::ConvBlock<float> block(4, 8, 2);
  revox::Parameters<float> params(block);
  std::vector<float*> before;
  block.visit_params([&](const std::string&, revox::Param<float>& p) { before.push_back(p.value); });
  revox::plan_layer_memory(block, Shape5{1, 4, 8, 8, 8});
  revox::measure_layer_memory(block, Shape5{1, 4, 8, 8, 8});
  std::vector<float*> after;
  block.visit_params([&](const std::string&, revox::Param<float>& p) { after.push_back(p.value); });
  CHECK(before == after);
  CHECK(revox::plan_record().current_bytes == 0);
}

TEST_CASE("layer memory plan: a 160x256x256 MBConv-Base U-Net plans without allocating it",
          "[memory_planner][plan][unet]") {
  revox::TrackingAllocator& cpu = revox::cpu_allocator();
  const std::size_t before = cpu.current_bytes();
  cpu.reset_peak();
  const revox::UNetConfig config = revox::unet_preset("mbconv-base");
  const MemoryPlan plan = revox::plan_training_memory(config, Shape5{1, 4, 160, 256, 256});
  std::cout << "mbconv-base 160x256x256: planned peak " << plan.peak_bytes << " B; peak at "
            << plan.peak_at << "\n";
  // Tens of GB planned; the CPU allocator did not grow by even the parameters' size.
  CHECK(plan.peak_bytes > (std::size_t{4} << 30));
  CHECK(cpu.peak_bytes() - before <= plan.parameter_bytes);
  CHECK(cpu.current_bytes() == before);
}

TEST_CASE("layer memory plan: errors name the problem", "[memory_planner][plan][errors]") {
  using Catch::Contains;
  const revox::MBConv<float> mbconv(8, 8, 2, 2);
  CHECK_THROWS_WITH(revox::plan_layer_memory(mbconv, Shape5{1, 6, 8, 8, 8}), Contains("channels"));
  MemoryPlanOptions options;
  options.optimizer = "lion";
  CHECK_THROWS_WITH(revox::plan_layer_memory(mbconv, Shape5{1, 8, 8, 8, 8}, options),
                    Contains("plan_layer_memory: unknown optimizer 'lion'"));
  CHECK(revox::plan_record().current_bytes == 0);
}
