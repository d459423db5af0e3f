// A minimal check harness for the CUDA tests: Catch2 v2 is not built for nvcc, and these
// tests must tell "skipped: no GPU" (exit 77) apart from "passed".
#pragma once

#include <cstdio>
#include <cstdlib>

#include "revox/core/cuda.hpp"

namespace revox_cuda_test {

inline int failures = 0;
inline int checks = 0;

#define CUDA_TEST_CHECK(condition)                                                 \
  do {                                                                             \
    ++::revox_cuda_test::checks;                                                   \
    if (!(condition)) {                                                            \
      ++::revox_cuda_test::failures;                                               \
      std::printf("FAILED: %s at %s:%d\n", #condition, __FILE__, __LINE__);        \
    }                                                                              \
  } while (false)

// Exits 77 (skipped) when no GPU is usable.
inline void require_gpu(const char* test_name) {
  if (revox::cuda_device_count() == 0) {
    std::printf("%s: SKIPPED, no CUDA device available on this machine\n", test_name);
    std::exit(77);
  }
}

inline int finish(const char* test_name) {
  std::printf("%s: %d passed, %d failed\n", test_name, checks - failures, failures);
  return failures == 0 ? 0 : 1;
}

// A test's main: exits 77 (skipped) without a GPU, runs `body`, waits for the device and
// reports; a revox::Error escaping `body` fails the test.
template <class Body>
int run_test(const char* test_name, Body&& body) {
  require_gpu(test_name);
  try {
    body();
    REVOX_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return finish(test_name);
}

}  // namespace revox_cuda_test
