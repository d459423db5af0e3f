// fuzz/fuzz_common.hpp — shared by the libFuzzer targets in fuzz/ (see fuzz/README.md).
//
// A target's LLVMFuzzerTestOneInput feeds the input to a revox reader. revox::Error is the
// expected outcome for bad input; any other exception is a finding and aborts (so libFuzzer
// saves the input), as do crashes, leaks, hangs and sanitizer reports.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "revox/core/error.hpp"

namespace revox_fuzz {

// One scratch folder per process (parallel fuzzing jobs do not collide), removed at exit.
// In /dev/shm when it exists: the targets write a file or a tree per input.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec)
                                     ? std::filesystem::path("/dev/shm")
                                     : std::filesystem::temp_directory_path();
    auto d = base / ("revox_fuzz_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::remove_all(d, ec);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch(), ignored);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, const std::uint8_t* data,
                       std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// A violated property of a reader's result: a finding.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "FINDING: %s\n", what.c_str());
  std::abort();
}

// REVOX_FUZZ_VERBOSE=1 prints each call's outcome (e.g. to see what the seeds exercise:
// REVOX_FUZZ_VERBOSE=1 build-fuzz/bin/fuzz_nifti fuzz/corpus/nifti/*).
inline bool verbose() {
  static const bool on = std::getenv("REVOX_FUZZ_VERBOSE") != nullptr;
  return on;
}

// Runs `body`; revox::Error is fine, anything else is a finding.
template <class Body>
void expect_only_revox_errors(const char* what, Body&& body) {
  try {
    body();
    if (verbose()) std::fprintf(stderr, "  %s: ok\n", what);
  } catch (const revox::Error& e) {
    // the documented outcome for bad input
    if (verbose()) std::fprintf(stderr, "  %s: revox::Error: %s\n", what, e.what());
  } catch (const std::exception& e) {
    finding(std::string(what) + ": unexpected exception (not revox::Error): " + e.what());
  } catch (...) {
    finding(std::string(what) + ": unexpected non-std exception");
  }
}

}  // namespace revox_fuzz
