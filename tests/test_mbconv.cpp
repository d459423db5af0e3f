#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "revox/layers/conv3d.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/testing/gradcheck.hpp"

using revox::MBConv;
using revox::Shape5;

TEST_CASE("MBConv parameters carry PyTorch names and shapes", "[layer][mbconv]") {
  MBConv<float> block(4, 6, 2, 2);
  CHECK(block.hidden_channels() == 8);
  std::vector<std::string> names;
  std::vector<revox::ParamShape> shapes;
  block.visit_params([&](const std::string& name, revox::Param<float>& p) {
    names.push_back(name);
    shapes.push_back(p.shape);
  });
  CHECK(names == std::vector<std::string>{"expand.weight", "expand_norm.weight", "expand_norm.bias",
                                          "depthwise.weight", "depthwise_norm.weight",
                                          "depthwise_norm.bias", "project.weight",
                                          "project_norm.weight", "project_norm.bias"});
  CHECK(shapes[0] == revox::ParamShape{8, 4, 1, 1, 1});
  CHECK(shapes[3] == revox::ParamShape{8, 1, 3, 3, 3});
  CHECK(shapes[6] == revox::ParamShape{6, 8, 1, 1, 1});
  CHECK(shapes[8] == revox::ParamShape{6});

  MBConv<float> plain(4, 4, 1, 4);
  names.clear();
  plain.visit_params([&](const std::string& name, revox::Param<float>&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"depthwise.weight", "depthwise_norm.weight",
                                          "depthwise_norm.bias", "project.weight",
                                          "project_norm.weight", "project_norm.bias"});
  CHECK(block.output_shape(Shape5{1, 4, 5, 6, 7}) == Shape5{1, 6, 5, 6, 7});
}

TEST_CASE("MBConv rejects bad configurations with readable errors", "[layer][mbconv]") {
  CHECK_THROWS_WITH(MBConv<float>(15, 15, 2, 8),
                    "MBConv: expanded channels (30 = 15 x expand_ratio 2) must be divisible by "
                    "num_groups (8)");
  CHECK_THROWS_WITH(MBConv<float>(16, 12, 2, 8),
                    "MBConv: out_channels (12) must be divisible by num_groups (8)");
  CHECK_THROWS_WITH(MBConv<float>(4, 4, 0, 2), Catch::Contains("expand_ratio must be at least 1, got 0"));
  CHECK_THROWS_WITH(MBConv<float>(0, 4, 2, 2), Catch::Contains("in_channels must be positive, got 0"));
  CHECK_THROWS_WITH(MBConv<float>(4, 4, 2, 0), Catch::Contains("num_groups must be positive, got 0"));
  MBConv<float> block(4, 4, 2, 2);
  CHECK_THROWS_WITH(block.output_shape(Shape5{1, 5, 3, 3, 3}),
                    "MBConv: input channels: expected 4, got 5");
}

TEST_CASE("MBConv gradients pass gradcheck, stored and lean", "[layer][mbconv][lean][gradcheck]") {
  struct Case {
    revox::index_t in, out, expand, groups;
    Shape5 shape;
  };
  const Case cases[] = {
      {4, 4, 2, 2, Shape5{1, 4, 5, 6, 7}},
      {4, 6, 2, 2, Shape5{2, 4, 3, 4, 5}},
      {3, 3, 1, 3, Shape5{1, 3, 4, 3, 5}},
      {2, 4, 4, 1, Shape5{1, 2, 3, 3, 3}},
  };
  // Both memory modes: stored, and lean (per-group recomputation in backward).
  for (const bool lean : {false, true}) {
    for (const Case& c : cases) {
      MBConv<double> block(c.in, c.out, c.expand, c.groups, lean);
      revox::Parameters<double> params(block);
      revox::testing::GradcheckOptions options;
      options.max_checks_per_tensor = 60;
      // GroupNorm's weight is kept away from 0 so the normalised signal is not degenerate.
      options.param_low = 0.2;
      options.param_high = 1.2;
      // ReLU6 is not differentiable at 0 and 6: inputs in a range where GroupNorm outputs
      // rarely land within the finite-difference step of a kink.
      const auto result = revox::testing::gradcheck(block, params, c.shape, options);
      INFO((lean ? "lean " : "") << "MBConv(" << c.in << " -> " << c.out << ", e=" << c.expand
                                 << ", groups=" << c.groups << ") at " << c.shape << "\n"
                                 << result.report);
      REQUIRE(result.passed);
    }
  }
}

TEST_CASE("Nested Sequential of library layers passes gradcheck", "[layer][sequential][gradcheck]") {
  using Inner = revox::Sequential<revox::PointwiseConv3d<double>, revox::GroupNorm<double>>;
  using Model = revox::Sequential<revox::Conv3d<double>, Inner, revox::LeakyReLU<double>,
                                  revox::MaxPool3d<double>, revox::UpsampleTrilinear<double>,
                                  revox::MBConv<double>>;
  Model model(revox::Conv3d<double>(2, 4, 3),
              Inner(revox::PointwiseConv3d<double>(4, 4), revox::GroupNorm<double>(2, 4)),
              revox::LeakyReLU<double>(0.1), revox::MaxPool3d<double>(),
              revox::UpsampleTrilinear<double>(), revox::MBConv<double>(4, 2, 2, 2));
  revox::Parameters<double> params(model);
  CHECK(params.entries()[2].name == "1.0.weight");
  CHECK(model.output_shape(Shape5{1, 2, 5, 6, 7}) == Shape5{1, 2, 4, 6, 6});
  revox::testing::GradcheckOptions options;
  options.max_checks_per_tensor = 40;
  options.param_low = 0.2;
  options.param_high = 1.2;
  for (const Shape5 shape : {Shape5{1, 2, 5, 6, 7}, Shape5{2, 2, 4, 4, 5}}) {
    const auto result = revox::testing::gradcheck(model, params, shape, options);
    INFO("input " << shape << "\n" << result.report);
    REQUIRE(result.passed);
  }
}

TEST_CASE("MBConv without saved keeps at most two expanded intermediates",
          "[layer][mbconv][memory]") {
  MBConv<float> block(8, 8, 4, 4);
  revox::Parameters<float> params(block);
  revox::Rng rng(5);
  block.reset_parameters(rng);
  const Shape5 shape{1, 8, 8, 8, 8};
  revox::Tensor<float> x(shape);
  revox::fill_uniform(x.view(), rng, -1, 1);
  revox::Tensor<float> y(shape);
  auto& allocator = revox::cpu_allocator();
  const std::size_t base = allocator.current_bytes();
  const std::size_t expanded_bytes = sizeof(float) * static_cast<std::size_t>(shape.numel()) * 4;
  allocator.reset_peak();
  block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
  CHECK(allocator.current_bytes() == base);
  // Two expanded tensors plus small scratch (GroupNorm statistics).
  CHECK(allocator.peak_bytes() - base <= 2 * expanded_bytes + 4096);

  allocator.reset_peak();
  revox::saved_t<MBConv<float>, revox::Cpu> saved;
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  const std::size_t kept = allocator.current_bytes() - base;
  CHECK(kept >= 6 * expanded_bytes);
  revox::Tensor<float> dx(shape);
  const std::size_t before_backward = allocator.current_bytes();
  block.backward(revox::Cpu{}, saved, y.cview(), dx.view());
  CHECK(allocator.current_bytes() <= before_backward - 6 * expanded_bytes);
}

// ---------------------------------------------------------------------------------------
// Lean mode: the same parameters, output and gradients as the stored mode, with a lower peak.

namespace {

template <class T>
struct MBConvStep {
  std::vector<T> y, dx, grads;
};

// One forward(saved) + backward of `block` in the given mode. The gradients start from the
// same non-zero values in both modes (they accumulate), dx from NaN (it is assigned).
template <class T>
MBConvStep<T> mbconv_step(MBConv<T>& block, revox::Parameters<T>& params, bool lean,
                          const revox::Tensor<T>& x, const revox::Tensor<T>& dy, bool want_dx) {
  block.set_lean(lean);
  revox::TensorView<T> grads = params.grads();
  for (revox::index_t i = 0; i < grads.numel(); ++i) grads[i] = T(0.25) + T(i % 7) / T(16);
  revox::Tensor<T> y = revox::Tensor<T>::full(block.output_shape(x.shape()),
                                              std::numeric_limits<T>::quiet_NaN());
  revox::Tensor<T> dx = revox::Tensor<T>::full(want_dx ? x.shape() : Shape5{},
                                               std::numeric_limits<T>::quiet_NaN());
  revox::saved_t<MBConv<T>, revox::Cpu> saved;
  block.forward(revox::Cpu{}, x.cview(), y.view(), &saved);
  block.backward(revox::Cpu{}, saved, dy.cview(), dx.view());
  MBConvStep<T> r;
  r.y.assign(y.data(), y.data() + y.numel());
  r.dx.assign(dx.data(), dx.data() + dx.numel());
  r.grads.assign(grads.data, grads.data + grads.numel());
  block.set_lean(false);
  return r;
}

// max |a - b| / max |b| over [begin, end); NaN gives infinity.
template <class T>
double max_relative_error(const std::vector<T>& a, const std::vector<T>& b, std::size_t begin,
                          std::size_t end) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = begin; i < end; ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

template <class T>
void check_lean_matches_stored(revox::index_t in, revox::index_t out, revox::index_t expand,
                               revox::index_t groups, Shape5 shape, double tolerance) {
  MBConv<T> block(in, out, expand, groups);
  revox::Parameters<T> params(block);
  revox::Rng rng(static_cast<std::uint64_t>(1000 + 97 * in + 31 * out + 7 * expand + groups));
  block.reset_parameters(rng);
  // GroupNorm's affine parameters away from their reset values (1 and 0).
  revox::fill_uniform(params.values(), rng, -0.8, 0.8);
  revox::Tensor<T> x(shape);
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  revox::Tensor<T> dy(block.output_shape(shape));
  revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
  for (const bool want_dx : {true, false}) {
    const MBConvStep<T> stored = mbconv_step(block, params, false, x, dy, want_dx);
    const MBConvStep<T> lean = mbconv_step(block, params, true, x, dy, want_dx);
    INFO("MBConv<" << (sizeof(T) == 4 ? "float" : "double") << ">(" << in << " -> " << out
                   << ", e=" << expand << ", groups=" << groups << ") at " << shape
                   << (want_dx ? ", with dx" : ", without dx"));
    CHECK(max_relative_error(lean.y, stored.y, 0, stored.y.size()) <= tolerance);
    CHECK(lean.dx.size() == stored.dx.size());
    if (want_dx) CHECK(max_relative_error(lean.dx, stored.dx, 0, stored.dx.size()) <= tolerance);
    for (const revox::ParamEntry& e : params.entries()) {
      INFO("gradient of " << e.name);
      const auto begin = static_cast<std::size_t>(e.offset);
      CHECK(max_relative_error(lean.grads, stored.grads, begin,
                               begin + static_cast<std::size_t>(e.shape.numel())) <= tolerance);
    }
  }
}

}  // namespace

TEST_CASE("MBConv lean mode: constructor flag, set_lean, same parameters",
          "[layer][mbconv][lean]") {
  MBConv<float> stored(4, 6, 2, 2);
  MBConv<float> lean(4, 6, 2, 2, true);
  CHECK_FALSE(stored.lean());
  CHECK(lean.lean());
  lean.set_lean(false);
  CHECK_FALSE(lean.lean());
  lean.set_lean(true);
  std::vector<std::string> names_stored, names_lean;
  stored.visit_params([&](const std::string& n, revox::Param<float>&) { names_stored.push_back(n); });
  lean.visit_params([&](const std::string& n, revox::Param<float>&) { names_lean.push_back(n); });
  CHECK(names_lean == names_stored);
  MBConv<float> copy = lean;  // copies keep the mode (the memory planner copies its layer)
  CHECK(copy.lean());
}

TEST_CASE("MBConv lean mode gives the stored mode's output and gradients",
          "[layer][mbconv][lean]") {
  struct Case {
    revox::index_t in, out, expand, groups;
    Shape5 shape;
  };
  const Case cases[] = {
      {4, 4, 2, 2, Shape5{1, 4, 5, 6, 7}},   // e = 2, 2 groups
      {4, 6, 2, 2, Shape5{2, 4, 5, 6, 7}},   // Cin != Cout, batch 2
      {4, 4, 2, 1, Shape5{1, 4, 5, 6, 7}},   // one group
      {4, 4, 2, 4, Shape5{2, 4, 3, 4, 5}},   // hidden 8, 4 groups
      {3, 3, 1, 3, Shape5{1, 3, 5, 6, 7}},   // e = 1, one channel per group
      {4, 2, 1, 2, Shape5{2, 4, 5, 6, 7}},   // e = 1, Cin != Cout, batch 2
      {4, 4, 1, 1, Shape5{1, 4, 5, 6, 7}},   // e = 1, one group
      {2, 4, 4, 1, Shape5{2, 2, 5, 6, 7}},   // e = 4, one group, batch 2
      {2, 2, 4, 2, Shape5{1, 2, 5, 6, 7}},   // e = 4, 2 groups
      {6, 2, 1, 2, Shape5{1, 6, 4, 4, 4}},   // e = 1, 3 channels per group
      {3, 6, 2, 6, Shape5{2, 3, 5, 6, 7}},   // hidden 6 in 6 groups: one channel per group
  };
  for (const Case& c : cases) {
    check_lean_matches_stored<float>(c.in, c.out, c.expand, c.groups, c.shape, 1e-5);
    check_lean_matches_stored<double>(c.in, c.out, c.expand, c.groups, c.shape, 1e-12);
  }
}

// The training step's tracked peak (revox::measure_layer_memory: parameters, Adam state,
// x, target, y, dy, then forward(saved) + backward) at (1, 15, 32, 32, 32), e = 2, 5 groups
// (hidden 30, chunks of 6 channels; one 15-channel float map is 1966080 bytes). Measured
// when lean mode was added: stored 37386128 bytes (19.0 maps), lean 13794088 bytes (7.0
// maps), of which x, target, y and dy are 4 maps: above them stored ~15 maps, lean ~3 (dx3
// and five 6-channel chunks in backward).
TEST_CASE("MBConv lean mode: training-step peak well below the stored mode's "
          "(1, 15, 32^3, e=2, 5 groups: stored 37386128 B, lean 13794088 B)",
          "[layer][mbconv][lean][memory]") {
  const Shape5 shape{1, 15, 32, 32, 32};
  const std::size_t map = sizeof(float) * static_cast<std::size_t>(shape.numel());
  const std::size_t stored = revox::measure_layer_memory(MBConv<float>(15, 15, 2, 5), shape);
  const std::size_t lean = revox::measure_layer_memory(MBConv<float>(15, 15, 2, 5, true), shape);
  std::printf("MBConv(15 -> 15, e=2, 5 groups) at (1, 15, 32, 32, 32), training-step peak: "
              "stored %zu bytes, lean %zu bytes (one 15-channel map: %zu bytes)\n",
              stored, lean, map);
  CHECK(lean < stored);
  // x, target, y, dy (4 maps) are resident in both; lean adds about 3 maps above them.
  CHECK(lean <= 8 * map);
  CHECK(stored >= 15 * map);
}

// Lean forward without saved runs the chunked code (its y must be forward(saved)'s bit for
// bit, for reversible blocks): x3, one sample's partial sum and 2 chunks. Below the stored
// forward's two intermediates in these cases; not in corner cases such as e = 1, one group,
// Cout = Cin (x3 + 2 hidden maps against 2 hidden maps).
TEST_CASE("MBConv lean forward without saved peaks below the stored one",
          "[layer][mbconv][lean][memory]") {
  struct Case {
    revox::index_t in, out, expand, groups;
    Shape5 shape;
  };
  const Case cases[] = {
      {8, 8, 4, 4, Shape5{1, 8, 8, 8, 8}},    {15, 15, 2, 5, Shape5{1, 15, 8, 8, 8}},
      {4, 6, 2, 1, Shape5{2, 4, 6, 7, 8}},    {4, 4, 1, 4, Shape5{2, 4, 6, 7, 8}},
      {8, 2, 1, 2, Shape5{1, 8, 8, 8, 8}},
  };
  auto& allocator = revox::cpu_allocator();
  for (const Case& c : cases) {
    std::size_t peaks[2] = {0, 0};
    std::vector<float> outputs[2];
    for (const bool lean : {false, true}) {
      MBConv<float> block(c.in, c.out, c.expand, c.groups, lean);
      revox::Parameters<float> params(block);
      revox::Rng rng(11);
      block.reset_parameters(rng);
      revox::Tensor<float> x(c.shape);
      revox::fill_uniform(x.view(), rng, -1, 1);
      revox::Tensor<float> y(block.output_shape(c.shape));
      const std::size_t base = allocator.current_bytes();
      allocator.reset_peak();
      block.forward(revox::Cpu{}, x.cview(), y.view(), nullptr);
      CHECK(allocator.current_bytes() == base);
      peaks[lean ? 1 : 0] = allocator.peak_bytes() - base;
      outputs[lean ? 1 : 0].assign(y.data(), y.data() + y.numel());
    }
    INFO("MBConv(" << c.in << " -> " << c.out << ", e=" << c.expand << ", groups=" << c.groups
                   << ") at " << c.shape << ": forward without saved, stored peak " << peaks[0]
                   << ", lean peak " << peaks[1]);
    CHECK(peaks[1] < peaks[0]);
    CHECK(max_relative_error(outputs[1], outputs[0], 0, outputs[0].size()) <= 1e-5);
  }
}
