// Runs a revox layer on a PyTorch reference fixture (tests/fixtures/*.safetensors, written by
// tests/fixtures/make_fixtures.py) and compares it tensor by tensor.
//
// A fixture holds input, output, grad_output, grad_input, and param.<name> / grad.<name> for
// every PyTorch state_dict name. run_torch_fixture builds nothing: the caller passes the
// revox layer (double); the runner binds it to Parameters, copies every param.<name> into
// the Param that visit_params reports under exactly that name (throwing revox::Error that
// lists every name missing on either side and every shape that differs), zeroes the
// gradients, runs forward (with saved) and backward on outputs poisoned with NaN, and
// compares output, grad_input and every grad.<name>.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/layers/layer.hpp"

namespace revox_test {

// |revox - torch| <= kFixtureRelTol * max(|torch|, 0.01 * max |torch over the tensor|):
// relative per element, with a floor so that entries that cancel to ~0 are not held to
// an absolute error of zero.
inline constexpr double kFixtureRelTol = 1e-10;

inline std::filesystem::path fixture_path(const std::string& name) {
  return std::filesystem::path(REVOX_FIXTURE_DIR) / (name + ".safetensors");
}

// The outcome of comparing one tensor.
struct TensorCheck {
  std::string label;  // "<fixture file>: <tensor name>"
  bool passed = true;
  std::string detail;
};

struct FixtureRun {
  std::filesystem::path path;
  std::vector<TensorCheck> checks;
  bool passed() const {
    return std::all_of(checks.begin(), checks.end(), [](const auto& c) { return c.passed; });
  }
};

namespace detail {

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  return out.str() + ']';
}

inline std::string index_string(std::int64_t flat, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> index(shape.size());
  for (std::size_t i = shape.size(); i-- > 0;) {
    index[i] = shape[i] > 0 ? flat % shape[i] : 0;
    flat = shape[i] > 0 ? flat / shape[i] : 0;
  }
  return shape_string(index);
}

inline std::vector<std::int64_t> param_dims(const revox::ParamShape& shape) {
  return std::vector<std::int64_t>(shape.dims.begin(), shape.dims.begin() + shape.rank);
}

inline revox::Tensor<double> load_tensor5(const revox::io::SafetensorsFile& file,
                                          const std::string& key) {
  const auto& t = file.at(key);
  REVOX_CHECK(t.shape.size() == 5, file.path.string(), ": tensor '", key,
              "' must have rank 5 (N, C, D, H, W), got shape ", shape_string(t.shape));
  revox::Tensor<double> out(revox::Shape5{t.shape[0], t.shape[1], t.shape[2], t.shape[3],
                                          t.shape[4]});
  const auto values = t.to_double();
  std::copy(values.begin(), values.end(), out.data());
  return out;
}

inline TensorCheck compare(const revox::io::SafetensorsFile& file, const std::string& key,
                           const double* actual, revox::index_t count) {
  const auto& ref = file.at(key);
  const auto expected = ref.to_double();
  REVOX_CHECK(static_cast<revox::index_t>(expected.size()) == count, file.path.string(),
              ": tensor '", key, "' has ", expected.size(), " elements, revox computed ", count);
  double scale = 0.0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  TensorCheck check;
  check.label = file.path.filename().string() + ": " + key;
  double worst_ratio = -1.0;
  std::size_t worst = 0;
  std::size_t failures = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double allowed = kFixtureRelTol * std::max(std::abs(expected[i]), 0.01 * scale);
    const double error = std::abs(actual[i] - expected[i]);
    const double ratio = std::isfinite(actual[i]) ? error / std::max(allowed, 1e-300)
                                                  : std::numeric_limits<double>::infinity();
    if (!(error <= allowed)) ++failures;
    if (ratio > worst_ratio || !(ratio == ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  check.passed = failures == 0;
  std::ostringstream out;
  out << check.label << " " << shape_string(ref.shape) << ": " << failures << " of "
      << expected.size() << " elements out of tolerance";
  if (!expected.empty()) {
    out.precision(17);
    out << "; worst at " << index_string(static_cast<std::int64_t>(worst), ref.shape)
        << ": revox " << actual[worst] << ", torch " << expected[worst] << ", |diff| "
        << std::abs(actual[worst] - expected[worst]);
    out.precision(3);
    out << " (" << worst_ratio << " x allowed)";
  }
  check.detail = out.str();
  return check;
}

}  // namespace detail

// Runs `layer` on fixture `name` (file tests/fixtures/<name>.safetensors) whose metadata
// "layer" must be `expected_layer`. `tamper` (tests of this runner only) may change the
// parameters after they are loaded.
template <class Layer>
FixtureRun run_torch_fixture(const std::string& name, const std::string& expected_layer,
                             Layer& layer,
                             const std::function<void(revox::Parameters<double>&)>& tamper = {}) {
  static_assert(std::is_same_v<typename Layer::value_type, double>,
                "fixtures are float64: instantiate the layer with double");
  const auto file = revox::io::read_safetensors(fixture_path(name));
  const std::string where = file.path.string();
  REVOX_CHECK(file.meta("layer") == expected_layer, where, ": fixture is for layer '",
              file.meta("layer"), "', the test runs ", expected_layer);

  revox::Parameters<double> params(layer);
  std::vector<std::string> problems;
  std::vector<std::string> names;
  layer.visit_params([&](const std::string& pname, revox::Param<double>& p) {
    names.push_back(pname);
    const std::string key = "param." + pname;
    if (!file.contains(key)) {
      problems.push_back("revox parameter '" + pname + "' has no '" + key + "' in the fixture");
      return;
    }
    const auto& ref = file.at(key);
    if (ref.shape != detail::param_dims(p.shape)) {
      problems.push_back("'" + pname + "': revox shape " + detail::shape_string(detail::param_dims(p.shape)) +
                         ", torch shape " + detail::shape_string(ref.shape));
      return;
    }
    const auto values = ref.to_double();
    std::copy(values.begin(), values.end(), p.value);
  });
  for (const auto& [key, tensor] : file.tensors) {
    for (const std::string prefix : {"param.", "grad."}) {
      if (key.rfind(prefix, 0) == 0 &&
          std::find(names.begin(), names.end(), key.substr(prefix.size())) == names.end()) {
        problems.push_back("fixture tensor '" + key + "' has no revox parameter '" +
                           key.substr(prefix.size()) + "'");
      }
    }
  }
  if (!problems.empty()) {
    std::string message = where + ": parameters do not match the PyTorch module (" +
                          file.meta("torch_module") + "):";
    for (const auto& p : problems) message += "\n  " + p;
    throw revox::Error(message);
  }
  if (tamper) tamper(params);
  params.zero_grad();  // gradients accumulate

  const auto x = detail::load_tensor5(file, "input");
  const auto dy = detail::load_tensor5(file, "grad_output");
  const revox::Shape5 out_shape = layer.output_shape(x.shape());
  REVOX_CHECK(out_shape == dy.shape(), where, ": revox output shape ", out_shape,
              " differs from torch's ", dy.shape());
  auto y = revox::Tensor<double>::full(out_shape, std::numeric_limits<double>::quiet_NaN());
  auto dx = revox::Tensor<double>::full(x.shape(), std::numeric_limits<double>::quiet_NaN());
  const revox::Cpu dev;
  revox::saved_t<Layer, revox::Cpu> saved{};
  layer.forward(dev, x.cview(), y.view(), &saved);
  layer.backward(dev, saved, dy.cview(), dx.view());

  FixtureRun run;
  run.path = file.path;
  run.checks.push_back(detail::compare(file, "output", y.data(), y.numel()));
  run.checks.push_back(detail::compare(file, "grad_input", dx.data(), dx.numel()));
  layer.visit_params([&](const std::string& pname, revox::Param<double>& p) {
    run.checks.push_back(detail::compare(file, "grad." + pname, p.grad, p.numel()));
  });
  return run;
}

}  // namespace revox_test
