#!/usr/bin/env bash
# The test command of README.md: installs the build dependencies, builds revox's tests in
# Release and runs them with ctest. Extra arguments go to CMake's configure step, e.g.
#   scripts/test.sh -DCMAKE_BUILD_TYPE=Debug -DREVOX_SANITIZE=address,undefined
# BUILD_DIR (default: build) picks the build directory; JOBS (default: nproc) the parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"

# nvcc is optional; the CUDA toolkit's usual location is not always on PATH.
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

bash scripts/install-deps.sh
# Every optional part ON: a dependency that is missing here fails the configure step loudly
# instead of being skipped (the AUTO default). Later arguments ("$@") override these.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DREVOX_WARNINGS_AS_ERRORS=ON \
  -DREVOX_BUILD_TESTS=ON -DREVOX_BUILD_EXAMPLES=ON -DREVOX_BUILD_BENCHMARKS=ON \
  -DREVOX_WITH_MPI=ON "$@"
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
