// fuzz/fuzz_safetensors.cpp — libFuzzer target for the safetensors reader
// (include/revox/io/safetensors.hpp) and checkpoint loading (include/revox/io/parameters_io.hpp).
//
// Input: the bytes of a .safetensors file. The target reads the header alone, then every
// tensor, then loads the file into the Parameters of a small Conv3d -> GroupNorm -> ReLU model
// (float and double, strict and lenient, with a prefix). revox::Error is the expected outcome
// for bad input; a successful read must return tensors whose byte counts match dtype x shape.
// Anything else is a finding (see fuzz_common.hpp).
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "revox/core/parameters.hpp"
#include "revox/io/parameters_io.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/sequential.hpp"

namespace {

template <class T>
using Model = revox::Sequential<revox::Conv3d<T>, revox::GroupNorm<T>, revox::ReLU<T>>;

template <class T>
void load_into_model(const revox::io::SafetensorsFile& file) {
  Model<T> model(revox::Conv3d<T>(2, 4, 3), revox::GroupNorm<T>(2, 4), revox::ReLU<T>());
  revox::Parameters<T> params(model);
  revox_fuzz::expect_only_revox_errors("load_parameters (strict)", [&] {
    revox::io::load_parameters(file, params);
  });
  revox_fuzz::expect_only_revox_errors("load_parameters (lenient)", [&] {
    revox::io::LoadOptions options;
    options.strict = false;
    options.allow_narrowing = true;
    revox::io::load_parameters(file, params, options);
  });
  revox_fuzz::expect_only_revox_errors("load_parameters (prefix)", [&] {
    revox::io::LoadOptions options;
    options.prefix = "model.";
    options.strict = false;
    revox::io::load_parameters(file, params, options);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = revox_fuzz::scratch() / "x.safetensors";
  revox_fuzz::write_file(path, data, size);
  revox_fuzz::expect_only_revox_errors("read_safetensors_header", [&] {
    revox::io::read_safetensors_header(path);
  });
  revox_fuzz::expect_only_revox_errors("read_safetensors", [&] {
    const auto file = revox::io::read_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) {
      std::uint64_t numel = 1;
      for (auto extent : tensor.shape) {
        if (extent < 0) revox_fuzz::finding("tensor '" + name + "' has a negative extent");
        numel *= static_cast<std::uint64_t>(extent);
      }
      if (tensor.bytes.size() != numel * revox::io::dtype_size(tensor.dtype)) {
        revox_fuzz::finding("tensor '" + name + "' byte count does not match its shape");
      }
    }
    load_into_model<float>(file);
    load_into_model<double>(file);
  });
  return 0;
}
