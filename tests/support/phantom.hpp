// tests/support/phantom.hpp — what the phantom tests (tests/test_phantom.cpp, quick mode, and
// tests/test_phantom_realistic.cpp) share: the options of their small phantoms and the mean
// intensity of a tissue.
#pragma once

#include <cmath>
#include <cstdint>

#include "revox/data/phantom.hpp"

namespace revox::test {

// A phantom of width x height x depth voxels in `mode`, every other option at its default.
inline data::PhantomOptions phantom_options(data::PhantomMode mode, std::uint64_t seed,
                                            index_t width, index_t height, index_t depth) {
  data::PhantomOptions options;
  options.mode = mode;
  options.width = width;
  options.height = height;
  options.depth = depth;
  options.seed = seed;
  return options;
}

// The quick-mode phantom of the tests, 64 x 64 x 48 voxels unless given.
inline data::PhantomOptions small_options(std::uint64_t seed, index_t width = 64,
                                          index_t height = 64, index_t depth = 48) {
  return phantom_options(data::PhantomMode::quick, seed, width, height, depth);
}

// The realistic-mode phantom of the tests, 96 x 96 x 64 voxels unless given.
inline data::PhantomOptions realistic_options(std::uint64_t seed, index_t width = 96,
                                              index_t height = 96, index_t depth = 64) {
  return phantom_options(data::PhantomMode::realistic, seed, width, height, depth);
}

// Mean of modality c over voxels of a tissue (NaN when absent).
inline double tissue_mean(const data::PhantomCase& phantom, int c, data::Tissue tissue) {
  const index_t spatial = phantom.tissue.numel();
  double sum = 0.0;
  index_t count = 0;
  for (index_t i = 0; i < spatial; ++i) {
    if (phantom.tissue[i] != static_cast<std::uint8_t>(tissue)) continue;
    sum += phantom.image[c * spatial + i];
    ++count;
  }
  return count > 0 ? sum / static_cast<double>(count) : std::nan("");
}

}  // namespace revox::test
