// The gradient checker must pass a correct layer and fail each kind of broken one; a
// checker that cannot fail proves nothing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "revox/testing/gradcheck.hpp"

namespace {

enum class Bug { none, wrong_dx, unwritten_dx, assigns_param_grad, wrong_param_grad,
                 unwritten_output, modifies_input, member_state, throws, reads_freed,
                 writes_freed };

// y[c] = scale[c] * x[c]^2 + shift[c], with an optional deliberate bug.
template <class T>
class ChannelQuadratic {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::TensorView<const T> x;
    revox::Tensor<T, Dev> copy;  // Bug::reads_freed / writes_freed: a copy of x
  };
  ChannelQuadratic(revox::index_t channels, Bug bug)
      : channels_(channels), bug_(bug), scale_({channels}), shift_({channels}) {}

  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK_EQ("ChannelQuadratic: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("scale", scale_);
    fn("shift", shift_);
  }
  void reset_parameters(revox::Rng&) {
    for (revox::index_t c = 0; c < channels_; ++c) {
      scale_.value[c] = 1;
      shift_.value[c] = 0;
    }
  }
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    const revox::index_t s = x.shape.spatial();
    for (revox::index_t n = 0; n < x.shape.n; ++n)
      for (revox::index_t c = 0; c < channels_; ++c)
        for (revox::index_t i = 0; i < s; ++i) {
          if (bug_ == Bug::unwritten_output && i == 1) continue;
          const T v = x.channel(n, c)[i];
          y.channel(n, c)[i] = scale_.value[c] * v * v + shift_.value[c];
        }
    if (bug_ == Bug::modifies_input) const_cast<T*>(x.data)[0] += 1;
    if (saved != nullptr) saved->x = x;
    if (saved != nullptr && bug_ == Bug::member_state) last_x_ = x;  // per-call state in a member
    if (saved != nullptr && (bug_ == Bug::reads_freed || bug_ == Bug::writes_freed)) {
      saved->copy = revox::Tensor<T, Dev>(x.shape);
      std::copy(x.data, x.data + x.numel(), saved->copy.data());
      saved->x = saved->copy.cview();
    }
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    const auto x = bug_ == Bug::member_state ? last_x_ : saved.x;
    if (bug_ == Bug::throws) throw revox::Error("ChannelQuadratic: a deliberate failure");
    if (bug_ == Bug::reads_freed || bug_ == Bug::writes_freed) {
      saved.copy = revox::Tensor<T, Dev>();  // released while x still points into it
      if (bug_ == Bug::writes_freed) const_cast<T*>(x.data)[3] = 0;
    }
    const revox::index_t s = x.shape.spatial();
    for (revox::index_t c = 0; c < channels_; ++c) {
      if (bug_ == Bug::assigns_param_grad) {
        scale_.grad[c] = 0;
        shift_.grad[c] = 0;
      }
    }
    for (revox::index_t n = 0; n < x.shape.n; ++n)
      for (revox::index_t c = 0; c < channels_; ++c)
        for (revox::index_t i = 0; i < s; ++i) {
          const T v = x.channel(n, c)[i];
          const T g = dy.channel(n, c)[i];
          if (!(bug_ == Bug::unwritten_dx && i == 2)) {
            dx.channel(n, c)[i] = 2 * scale_.value[c] * v * g * (bug_ == Bug::wrong_dx ? 1.01 : 1.0);
          }
          scale_.grad[c] += v * v * g * (bug_ == Bug::wrong_param_grad ? 0.99 : 1.0);
          shift_.grad[c] += g;
        }
  }

 private:
  revox::index_t channels_;
  Bug bug_;
  revox::Param<T> scale_;
  revox::Param<T> shift_;
  mutable revox::TensorView<const T> last_x_;
};

revox::testing::GradcheckResult check(Bug bug) {
  ChannelQuadratic<double> layer(3, bug);
  revox::Parameters<double> params(layer);
  return revox::testing::gradcheck(layer, params, revox::Shape5{2, 3, 2, 3, 4});
}

}  // namespace

TEST_CASE("gradcheck passes a correct layer", "[testing][gradcheck]") {
  const auto result = check(Bug::none);
  INFO(result.report);
  CHECK(result.passed);
  CHECK(result.checked == 2 * 3 * 24 + 3 + 3);
  CHECK(result.max_abs_error < 1e-7);
}

TEST_CASE("gradcheck fails each kind of broken layer", "[testing][gradcheck]") {
  const std::pair<Bug, const char*> cases[] = {
      {Bug::wrong_dx, "FAIL dx["},
      {Bug::unwritten_dx, "input-gradient entries unwritten"},
      {Bug::assigns_param_grad, "is not accumulated"},
      {Bug::wrong_param_grad, "FAIL dscale["},
      {Bug::unwritten_output, "outputs unwritten"},
      {Bug::modifies_input, "modified its input"},
      {Bug::member_state, "per-call state in members"},
      {Bug::throws, "the layer threw: ChannelQuadratic: a deliberate failure"},
      {Bug::reads_freed, "input-gradient entries unwritten or non-finite"},
      {Bug::writes_freed, "backward wrote to memory after freeing it"},
  };
  for (const auto& [bug, expected] : cases) {
    const auto result = check(bug);
    INFO(result.report);
    CHECK_FALSE(result.passed);
    CHECK_THAT(result.report, Catch::Contains(expected));
  }
}

TEST_CASE("the layer contract check accepts a conforming layer", "[testing][layer]") {
  STATIC_REQUIRE(revox::is_layer_v<ChannelQuadratic<double>>);
  STATIC_REQUIRE(!revox::is_layer_v<int>);
  STATIC_REQUIRE(revox::check_layer_contract<ChannelQuadratic<float>>());
}
