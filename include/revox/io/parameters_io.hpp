// revox/io/parameters_io.hpp — saves and loads a model's Parameters as a safetensors file
// (revox/io/safetensors.hpp), readable by `safetensors.torch.load_file` and friends.
//
//   revox::io::save_parameters(path, params);               // atomic, F32 or F64 like T
//   revox::io::LoadReport r = revox::io::load_parameters(path, params);
//
// Tensor names are the names visit_params reports (what Parameters::entries() holds, e.g.
// "0.weight", "encoders.1.expand.weight"), shapes are PyTorch's (as Parameters records
// them), and the dtype is F32 for Parameters<float> and F64 for Parameters<double>.
//
// Options:
//   prefix    Saving writes prefix + name. Loading considers only the file's tensors whose
//             name starts with the prefix, and matches them with the prefix stripped; every
//             other tensor in the file is ignored (so "model." picks a model's weights out of
//             a checkpoint that holds other tensors too).
//   strict    (load, default true) Every parameter must be in the file with its shape and a
//             usable dtype, and every considered tensor must be a parameter. Otherwise the
//             load throws revox::Error naming the file and listing EVERY problem by tensor
//             name (missing, unexpected, shape mismatch, dtype mismatch; the first 20, then
//             a count of the rest), and leaves the parameters unchanged. With strict = false
//             the tensors that match are loaded and the problems are returned in the
//             LoadReport instead.
//   metadata  (save) string -> string entries written to the file's __metadata__; a load
//             returns the file's __metadata__ in LoadReport::metadata.
//
// Dtypes on load: F32, F16 and BF16 data is widened exactly into Parameters<double> (and F16
// and BF16 into Parameters<float>): every value converts without rounding. F64 data does
// not fit Parameters<float> without rounding, so it is a dtype mismatch unless
// LoadOptions::allow_narrowing is set (then each value is rounded to the nearest float).
// Integer and BOOL tensors are always a dtype mismatch.
//
// Writing goes through io::write_safetensors, which is atomic: a temporary file in the
// target's directory, fsync, read back and verified, renamed over the target. A failed save
// throws revox::Error naming the path (e.g. a missing or unwritable directory) and leaves a
// previous file at the path intact and no temporary file behind. A damaged or truncated file
// makes the load throw revox::Error naming the file and the problem.
//
// There are no overloads taking a layer: a layer's Params point into the buffers of the
// Parameters object bound to it, and that object (with its entries in visit_params order) is
// what is saved and loaded. Bind the layer first: `Parameters<float> params(model);`.
//
// For buffers laid out like a Parameters object (an optimizer's state, e.g. Adam's exp_avg),
// the flat forms add_parameter_tensors / load_parameter_tensors take the entries and a host
// pointer to the buffer; save_parameters and load_parameters are built on them.
//
// Only host-accessible Parameters (Cpu) can be saved or loaded directly; copy a device
// model's values to a host Parameters first.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/io/safetensors.hpp"

namespace revox::io {

struct SaveOptions {
  std::string prefix;                           // tensor names are prefix + parameter name
  std::map<std::string, std::string> metadata;  // written to __metadata__
};

struct LoadOptions {
  std::string prefix;             // only tensors named prefix + ... are considered
  bool strict = true;             // any problem throws (parameters left unchanged)
  bool allow_narrowing = false;   // F64 data may be rounded into Parameters<float>
};

// A tensor present on both sides that could not be loaded.
struct ParamMismatch {
  std::string name;     // parameter name (prefix stripped)
  std::string problem;  // e.g. "shape [4, 2, 3, 3, 3] in the file, [4, 2, 1, 1, 1] expected"
};

// What a load did. Names are parameter names, i.e. file names with the prefix stripped.
struct LoadReport {
  std::vector<std::string> loaded;        // parameters copied from the file
  std::vector<std::string> missing;       // parameters with no tensor in the file
  std::vector<std::string> unexpected;    // considered tensors that are no parameter
  std::vector<ParamMismatch> mismatched;  // shape or dtype does not fit; left unchanged
  std::map<std::string, std::string> metadata;  // the file's __metadata__

  // True when every parameter was loaded and nothing was left over.
  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};

namespace detail {

// The most problems a strict load lists in its message before "... and N more".
inline constexpr std::size_t kMaxListedProblems = 20;

inline std::vector<std::int64_t> param_dims(const ParamShape& shape) {
  return std::vector<std::int64_t>(shape.dims.begin(), shape.dims.begin() + shape.rank);
}

inline std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

template <class T>
constexpr const char* element_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

// Empty when a tensor of `dtype` can be copied into T under `options`, else the problem.
template <class T>
std::string dtype_problem(Dtype dtype, const LoadOptions& options) {
  const Dtype own = detail::dtype_of<T>();
  if (dtype == own || dtype == Dtype::F16 || dtype == Dtype::BF16) return {};
  if (std::is_same_v<T, double> && dtype == Dtype::F32) return {};
  if (std::is_same_v<T, float> && dtype == Dtype::F64) {
    if (options.allow_narrowing) return {};
    return "dtype F64 in the file, Parameters<float> needs F32 (F64 -> F32 rounds; set "
           "LoadOptions::allow_narrowing to allow it)";
  }
  return revox::detail::concat("dtype ", dtype_name(dtype), " in the file, Parameters<",
                               element_name<T>(), "> needs ", dtype_name(own));
}

}  // namespace detail

// Adds one tensor per entry, named prefix + entry.name, holding the entry's elements of
// `flat` (a host buffer laid out like the Parameters that `entries` come from).
template <class T>
void add_parameter_tensors(std::map<std::string, SafeTensor>& tensors,
                           const std::vector<ParamEntry>& entries, const T* flat,
                           const std::string& prefix = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "add_parameter_tensors: T must be float or double");
  for (const auto& entry : entries) {
    const T* begin = flat + entry.offset;
    const std::vector<T> values(begin, begin + entry.shape.numel());
    const bool added =
        tensors.emplace(prefix + entry.name,
                        make_safetensor<T>(detail::param_dims(entry.shape), values))
            .second;
    REVOX_CHECK(added, "add_parameter_tensors: tensor '", prefix, entry.name,
                "' is already in the map");
  }
}

// Copies the tensors of `file` named prefix + entry.name into `flat` (a host buffer laid out
// like the Parameters that `entries` come from), following `options` (see the top of this
// file). A strict load that finds any problem throws and leaves `flat` unchanged.
template <class T>
LoadReport load_parameter_tensors(const SafetensorsFile& file,
                                  const std::vector<ParamEntry>& entries, T* flat,
                                  const LoadOptions& options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "load_parameter_tensors: T must be float or double");
  LoadReport report;
  report.metadata = file.metadata;
  // Problems in the order they are found, for the strict message: full file names.
  std::vector<std::string> problems;
  std::vector<std::pair<const ParamEntry*, const SafeTensor*>> matched;
  std::map<std::string, bool> known;  // parameter names
  for (const auto& entry : entries) {
    known[entry.name] = true;
    const std::string name = options.prefix + entry.name;
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      report.missing.push_back(entry.name);
      problems.push_back(revox::detail::concat("missing tensor '", name, "' (shape ",
                                               entry.shape, ")"));
      continue;
    }
    const SafeTensor& tensor = it->second;
    std::string problem;
    if (tensor.shape != detail::param_dims(entry.shape)) {
      problem = revox::detail::concat("shape ", detail::dims_text(tensor.shape),
                                      " in the file, ", entry.shape, " expected");
    } else {
      problem = detail::dtype_problem<T>(tensor.dtype, options);
    }
    if (!problem.empty()) {
      problems.push_back("tensor '" + name + "': " + problem);
      report.mismatched.push_back(ParamMismatch{entry.name, std::move(problem)});
      continue;
    }
    matched.emplace_back(&entry, &tensor);
  }
  for (const auto& [name, tensor] : file.tensors) {
    if (name.compare(0, options.prefix.size(), options.prefix) != 0) continue;
    const std::string stripped = name.substr(options.prefix.size());
    if (known.count(stripped) != 0) continue;
    report.unexpected.push_back(stripped);
    problems.push_back(revox::detail::concat("unexpected tensor '", name, "' (",
                                             dtype_name(tensor.dtype), " ",
                                             detail::dims_text(tensor.shape),
                                             "): not a parameter"));
  }

  if (options.strict && !problems.empty()) {
    std::string message = revox::detail::concat(
        "load_parameters: '", file.path.string(), "' does not match the parameters",
        options.prefix.empty() ? std::string() : " under prefix '" + options.prefix + "'",
        " (", report.missing.size(), " missing, ", report.unexpected.size(), " unexpected, ",
        report.mismatched.size(), " mismatched):");
    for (std::size_t i = 0; i < problems.size() && i < detail::kMaxListedProblems; ++i) {
      message += "\n  " + problems[i];
    }
    if (problems.size() > detail::kMaxListedProblems) {
      message += revox::detail::concat("\n  ... and ", problems.size() - detail::kMaxListedProblems,
                                       " more");
    }
    throw Error(message);
  }

  for (const auto& [entry, tensor] : matched) {
    // Same dtype: the bits as stored; otherwise the conversion checked above.
    const std::vector<T> values = tensor->template values<T>();
    std::copy(values.begin(), values.end(), flat + entry->offset);
    report.loaded.push_back(entry->name);
  }
  return report;
}

// Writes every parameter of `params` to `path` (see the top of this file).
template <class T, class Device>
void save_parameters(const std::filesystem::path& path, const Parameters<T, Device>& params,
                     const SaveOptions& options = {}) {
  static_assert(DeviceTraits<Device>::host_accessible,
                "save_parameters: the Parameters must be in host memory (Cpu)");
  std::map<std::string, SafeTensor> tensors;
  add_parameter_tensors(tensors, params.entries(), params.values().data, options.prefix);
  write_safetensors(path, tensors, options.metadata);
}

// Loads the parameters from an already-read file (see the top of this file).
template <class T, class Device>
LoadReport load_parameters(const SafetensorsFile& file, Parameters<T, Device>& params,
                           const LoadOptions& options = {}) {
  static_assert(DeviceTraits<Device>::host_accessible,
                "load_parameters: the Parameters must be in host memory (Cpu)");
  return load_parameter_tensors(file, params.entries(), params.values().data, options);
}

// Reads `path` and loads the parameters from it (see the top of this file).
template <class T, class Device>
LoadReport load_parameters(const std::filesystem::path& path, Parameters<T, Device>& params,
                           const LoadOptions& options = {}) {
  return load_parameters(read_safetensors(path), params, options);
}

}  // namespace revox::io
