// tests/dist/compare_checkpoints.cpp — compares the weights (model.*) and Adam state
// (optimizer.*) of two revox-brats checkpoints (examples/brats/checkpoint.hpp), for the
// data-parallel end-to-end test (tests/dist/brats_dist_e2e.sh).
//
//   compare_checkpoints A.safetensors B.safetensors RTOL
// Element x of A and y of B agree when |x - y| <= RTOL * max(|y|, 1e-3) (relative, with a
// floor for near-zero elements). Prints the largest difference of each kind; exit code 0
// when both files hold the same tensors and every element agrees, 1 otherwise, 2 on bad
// arguments or unreadable files.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "checkpoint.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: compare_checkpoints A.safetensors B.safetensors RTOL\n";
    return 2;
  }
  const double rtol = std::atof(argv[3]);
  try {
    const auto a = revox::brats::read_checkpoint(argv[1]);
    const auto b = revox::brats::read_checkpoint(argv[2]);
    int problems = 0;
    double worst[2] = {0, 0};  // model, optimizer
    long long compared[2] = {0, 0};
    for (const auto& [name, tensor] : a.file.tensors) {
      if (!b.file.contains(name)) {
        std::cerr << "'" << name << "' is in " << argv[1] << " but not in " << argv[2] << "\n";
        ++problems;
        continue;
      }
      const auto x = tensor.values<double>();
      const auto y = b.file.at(name).values<double>();
      if (x.size() != y.size()) {
        std::cerr << "'" << name << "': " << x.size() << " vs " << y.size() << " elements\n";
        ++problems;
        continue;
      }
      const int kind = name.rfind("optimizer.", 0) == 0 ? 1 : 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double diff = std::abs(x[i] - y[i]) / std::max(std::abs(y[i]), 1e-3);
        worst[kind] = std::max(worst[kind], diff);
        if (!(diff <= rtol)) {
          if (problems < 10) {
            std::fprintf(stderr, "'%s'[%zu]: %.9g vs %.9g (relative %.3g)\n", name.c_str(), i,
                         x[i], y[i], diff);
          }
          ++problems;
        }
      }
      compared[kind] += static_cast<long long>(x.size());
    }
    for (const auto& [name, tensor] : b.file.tensors) {
      (void)tensor;
      if (!a.file.contains(name)) {
        std::cerr << "'" << name << "' is in " << argv[2] << " but not in " << argv[1] << "\n";
        ++problems;
      }
    }
    if (compared[0] == 0) {
      std::cerr << "no model.* tensors compared\n";
      ++problems;
    }
    std::printf("compared %lld weights (largest relative difference %.3g) and %lld optimizer "
                "elements (%.3g); tolerance %.3g: %s\n",
                compared[0], worst[0], compared[1], worst[1], rtol,
                problems == 0 ? "same" : "DIFFERENT");
    return problems == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "compare_checkpoints: " << e.what() << "\n";
    return 2;
  }
}
