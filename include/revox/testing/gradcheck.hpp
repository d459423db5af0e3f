// revox/testing/gradcheck.hpp — checks any layer's hand-written backward against central
// finite differences, in double precision. Downstream users point it at their own layers.
//
//   MyLayer<double> layer(...);
//   revox::Parameters<double> params(layer);
//   auto result = revox::testing::gradcheck(layer, params, revox::Shape5{1, 4, 5, 6, 7});
//   REQUIRE(result.passed);   // result.report says what was compared and what failed
//
// What it checks, on the CPU:
//  * forward ASSIGNS every output element (y is poisoned with NaN first), gives the same y
//    with and without `saved`, and leaves x untouched;
//  * backward ASSIGNS every element of dx (poisoned with NaN first) and dx matches
//    d<y, g>/dx by central differences for a random upstream gradient g;
//  * every parameter gradient matches d<y, g>/dparam by central differences and is
//    ACCUMULATED: grads start from random values, and a second forward/backward adds the
//    same amount again;
//  * everything a call needs lives in its Saved, not in the layer: forward at x, then
//    forward at another input x', then backward of the first must still give x's gradients
//    (a layer that keeps per-call state in mutable members fails here);
//  * memory: the forward and backward passes run under the CPU allocator's quarantine
//    (core/memory.hpp), so a layer that reads memory it already freed sees NaN (reported as
//    non-finite results) and one that writes to it is reported, instead of corrupting the
//    heap; a layer that throws is reported too. gradcheck reports, it does not crash.
// Parameters are set to random values first (options.randomize_parameters) so that special
// initial values (GroupNorm's weight 1, bias 0) cannot hide errors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/memory.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/layer.hpp"

namespace revox::testing {

struct GradcheckOptions {
  std::uint64_t seed = 1234;
  double step = 1e-6;  // central-difference step
  double rtol = 1e-5;  // |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
  double atol = 1e-7;
  double input_low = -1.0;  // random input range (the Shape5 overload)
  double input_high = 1.0;
  bool randomize_parameters = true;
  double param_low = -1.0;
  double param_high = 1.0;
  // Check at most this many elements per tensor, chosen at random (0 = all of them).
  index_t max_checks_per_tensor = 0;
};

struct GradcheckResult {
  bool passed = true;
  index_t checked = 0;           // number of gradient entries compared
  double max_abs_error = 0.0;    // over all compared entries
  std::string report;            // one line per checked tensor, then every failure
};

namespace detail {

inline void poison(TensorView<double> v) {
  std::fill(v.data, v.data + v.numel(), std::numeric_limits<double>::quiet_NaN());
}

inline index_t count_non_finite(TensorView<const double> v) {
  index_t bad = 0;
  for (index_t i = 0; i < v.numel(); ++i) bad += std::isfinite(v[i]) ? 0 : 1;
  return bad;
}

inline std::vector<index_t> pick_indices(index_t count, index_t limit, Rng& rng) {
  std::vector<index_t> indices(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) indices[static_cast<std::size_t>(i)] = i;
  if (limit > 0 && limit < count) {
    for (index_t i = 0; i < limit; ++i) {  // partial Fisher-Yates
      const auto j = i + static_cast<index_t>(rng.below(static_cast<std::uint64_t>(count - i)));
      std::swap(indices[static_cast<std::size_t>(i)], indices[static_cast<std::size_t>(j)]);
    }
    indices.resize(static_cast<std::size_t>(limit));
    std::sort(indices.begin(), indices.end());
  }
  return indices;
}

class Comparer {
 public:
  Comparer(const GradcheckOptions& options, GradcheckResult& result)
      : options_(options), result_(result) {}

  void begin(const std::string& tensor) {
    tensor_ = tensor;
    worst_ = 0.0;
    count_ = 0;
    failures_ = 0;
  }
  void compare(index_t index, double analytic, double numeric) {
    const double error = std::abs(analytic - numeric);
    const double allowed =
        options_.atol + options_.rtol * std::max(std::abs(analytic), std::abs(numeric));
    ++count_;
    ++result_.checked;
    worst_ = std::max(worst_, error);
    result_.max_abs_error = std::max(result_.max_abs_error, error);
    if (!(error <= allowed)) {  // NaN fails too
      result_.passed = false;
      if (++failures_ <= 5) {
        failure_lines_ << "  FAIL " << tensor_ << "[" << index << "]: analytic " << analytic
                       << ", numeric " << numeric << ", |diff| " << error << " > allowed "
                       << allowed << "\n";
      }
    }
  }
  void end() {
    std::ostringstream line;
    line << "  " << tensor_ << ": " << count_ << " entries, max |diff| " << worst_
         << (failures_ ? ", " + std::to_string(failures_) + " FAILED" : std::string()) << "\n";
    result_.report += line.str();
  }
  void fail(const std::string& message) {
    result_.passed = false;
    failure_lines_ << "  FAIL " << message << "\n";
  }
  std::string failures() const { return failure_lines_.str(); }
  bool has_failures() const { return !failure_lines_.str().empty(); }

 private:
  const GradcheckOptions& options_;
  GradcheckResult& result_;
  std::string tensor_;
  double worst_ = 0.0;
  index_t count_ = 0;
  index_t failures_ = 0;
  std::ostringstream failure_lines_;
};

// Runs the CPU allocator's quarantine for its lifetime and reports writes after free.
class QuarantineGuard {
 public:
  QuarantineGuard(Comparer& comparer, const char* phase) : comparer_(comparer), phase_(phase) {
    cpu_allocator().begin_quarantine();
  }
  QuarantineGuard(const QuarantineGuard&) = delete;
  QuarantineGuard& operator=(const QuarantineGuard&) = delete;
  ~QuarantineGuard() {
    const QuarantineReport report = cpu_allocator().end_quarantine();
    if (report.written_after_free != 0) {
      comparer_.fail(std::string(phase_) + " wrote to memory after freeing it (" +
                     std::to_string(report.written_after_free) + " of " +
                     std::to_string(report.blocks) + " freed blocks changed): a container or "
                     "layer releases a buffer that is still in use");
    }
  }

 private:
  Comparer& comparer_;
  const char* phase_;
};

template <class Layer>
void gradcheck_body(Layer& layer, Parameters<double>& params, const Tensor<double>& input,
                    const GradcheckOptions& options, GradcheckResult& result,
                    Comparer& comparer);

}  // namespace detail

// Checks `layer` (value_type double, bound to `params`) at the given input.
template <class Layer>
GradcheckResult gradcheck(Layer& layer, Parameters<double>& params, const Tensor<double>& input,
                          const GradcheckOptions& options = {}) {
  static_assert(check_layer_contract<Layer, Cpu>());
  static_assert(std::is_same_v<typename Layer::value_type, double>,
                "gradcheck runs in double precision: instantiate the layer with double");
  GradcheckResult result;
  detail::Comparer comparer(options, result);
  try {
    detail::gradcheck_body(layer, params, input, options, result, comparer);
  } catch (const std::exception& e) {
    comparer.fail(std::string("the layer threw: ") + e.what());
  } catch (...) {
    comparer.fail("the layer threw an exception that is not a std::exception");
  }
  result.report = (result.passed ? "gradcheck passed\n" : "gradcheck FAILED\n") + result.report +
                  comparer.failures();
  return result;
}

namespace detail {

template <class Layer>
void gradcheck_body(Layer& layer, Parameters<double>& params, const Tensor<double>& input,
                    const GradcheckOptions& options, GradcheckResult& result,
                    Comparer& comparer) {
  (void)result;
  Rng rng(options.seed);
  const Cpu dev;

  if (options.randomize_parameters) {
    for (const auto& entry : params.entries()) {
      fill_uniform(params.values().data + entry.offset, entry.shape.numel(), rng,
                   options.param_low, options.param_high);
    }
  }
  Tensor<double> x = input.clone();
  const Shape5 out_shape = layer.output_shape(x.shape());
  const std::size_t x_bytes = x.bytes();

  // Upstream gradient g; the scalar checked is L = <y, g>.
  Tensor<double> g(out_shape);
  fill_uniform(g.view(), rng, -1.0, 1.0);
  auto loss = [&]() {
    Tensor<double> y(out_shape);
    layer.forward(dev, x.cview(), y.view(), nullptr);
    double sum = 0.0;
    for (index_t i = 0; i < y.numel(); ++i) sum += y[i] * g[i];
    return sum;
  };

  // Forward: every element written, same with and without saved, x untouched.
  Tensor<double> y_saved(out_shape);
  Tensor<double> y_plain(out_shape);
  poison(y_saved.view());
  poison(y_plain.view());
  saved_t<Layer, Cpu> saved{};
  {
    QuarantineGuard quarantine(comparer, "forward");
    layer.forward(dev, x.cview(), y_saved.view(), &saved);
    layer.forward(dev, x.cview(), y_plain.view(), nullptr);
  }
  if (const index_t bad = count_non_finite(y_saved.cview()); bad != 0) {
    comparer.fail("forward left " + std::to_string(bad) + " of " +
                  std::to_string(y_saved.numel()) + " outputs unwritten or non-finite");
  }
  if (std::memcmp(y_saved.data(), y_plain.data(), y_saved.bytes()) != 0) {
    comparer.fail("forward with saved and forward without saved give different outputs");
  }
  if (std::memcmp(x.data(), input.data(), x_bytes) != 0) {
    comparer.fail("forward modified its input x");
  }

  // Backward with random prior gradients, to see that parameter gradients accumulate.
  Tensor<double> prior(params.grads().shape);
  fill_uniform(prior.view(), rng, -1.0, 1.0);
  for (const auto& entry : params.entries()) {
    std::memcpy(params.grads().data + entry.offset, prior.data() + entry.offset,
                static_cast<std::size_t>(entry.shape.numel()) * sizeof(double));
  }
  Tensor<double> dx(x.shape());
  poison(dx.view());
  {
    QuarantineGuard quarantine(comparer, "backward");
    layer.backward(dev, saved, g.cview(), dx.view());
    saved = saved_t<Layer, Cpu>{};
  }
  if (const index_t bad = count_non_finite(dx.cview()); bad != 0) {
    comparer.fail("backward left " + std::to_string(bad) + " of " + std::to_string(dx.numel()) +
                  " input-gradient entries unwritten or non-finite");
  }
  if (std::memcmp(x.data(), input.data(), x_bytes) != 0) {
    comparer.fail("backward modified the input x");
  }
  Tensor<double> param_grad(params.grads().shape);
  for (index_t i = 0; i < param_grad.numel(); ++i) {
    param_grad[i] = params.grads()[i] - prior[i];
  }

  // Input gradient against central differences.
  comparer.begin("dx");
  for (index_t i : pick_indices(x.numel(), options.max_checks_per_tensor, rng)) {
    const double original = x[i];
    x[i] = original + options.step;
    const double plus = loss();
    x[i] = original - options.step;
    const double minus = loss();
    x[i] = original;
    comparer.compare(i, dx[i], (plus - minus) / (2.0 * options.step));
  }
  comparer.end();

  // Parameter gradients against central differences.
  double* values = params.values().data;
  for (const auto& entry : params.entries()) {
    comparer.begin("d" + entry.name);
    for (index_t i : pick_indices(entry.shape.numel(), options.max_checks_per_tensor, rng)) {
      double& v = values[entry.offset + i];
      const double original = v;
      v = original + options.step;
      const double plus = loss();
      v = original - options.step;
      const double minus = loss();
      v = original;
      comparer.compare(i, param_grad[entry.offset + i], (plus - minus) / (2.0 * options.step));
    }
    comparer.end();
  }

  // Accumulation: a second forward/backward adds the same gradient again. Per-call state:
  // a forward at another input runs between this forward and its backward, so a layer that
  // keeps what backward needs in members instead of Saved gives x' gradients here.
  {
    QuarantineGuard quarantine(comparer, "a second forward/backward");
    saved_t<Layer, Cpu> saved_again{};
    Tensor<double> y_again(out_shape);
    layer.forward(dev, x.cview(), y_again.view(), &saved_again);
    Tensor<double> x_other(x.shape());
    fill_uniform(x_other.view(), rng, options.input_low, options.input_high);
    saved_t<Layer, Cpu> saved_other{};
    Tensor<double> y_other(out_shape);
    layer.forward(dev, x_other.cview(), y_other.view(), &saved_other);
    Tensor<double> dx_again(x.shape());
    layer.backward(dev, saved_again, g.cview(), dx_again.view());
    saved_again = saved_t<Layer, Cpu>{};
    for (const auto& entry : params.entries()) {
      for (index_t i = 0; i < entry.shape.numel(); ++i) {
        const index_t k = entry.offset + i;
        const double expected = prior[k] + 2.0 * param_grad[k];
        const double actual = params.grads()[k];
        const double error = std::abs(actual - expected);
        if (!(error <= 1e-12 * (1.0 + std::abs(expected)))) {
          comparer.fail("parameter gradient " + entry.name + "[" + std::to_string(i) +
                        "] is not accumulated: after two backward passes it is " +
                        std::to_string(actual) + ", expected prior + 2 * gradient = " +
                        std::to_string(expected));
          break;
        }
      }
    }
    if (std::memcmp(dx_again.data(), dx.data(), dx.bytes()) != 0) {
      comparer.fail("a second backward at the same point gives a different dx (with a forward "
                    "at another input in between: does the layer keep per-call state in "
                    "members instead of its Saved?)");
    }
    // The other input's backward, so that its Saved is consumed as a caller would.
    Tensor<double> dx_other(x.shape());
    layer.backward(dev, saved_other, g.cview(), dx_other.view());
  }
}

}  // namespace detail

// Checks `layer` at a random input of the given shape, drawn from
// U[options.input_low, options.input_high).
template <class Layer>
GradcheckResult gradcheck(Layer& layer, Parameters<double>& params, Shape5 input_shape,
                          const GradcheckOptions& options = {}) {
  Rng rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
  Tensor<double> input(input_shape);
  fill_uniform(input.view(), rng, options.input_low, options.input_high);
  return gradcheck(layer, params, input, options);
}

}  // namespace revox::testing
