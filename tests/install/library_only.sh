#!/usr/bin/env bash
# ctest install.library_only: the README's install command on a machine that has only the
# library's own dependencies (a compiler, CMake, OpenMP, nlohmann-json). Every optional
# package is hidden from CMake with CMAKE_DISABLE_FIND_PACKAGE_<Name>; then
#  1. the configure step must succeed and say, one line each, what it skips and what to install;
#  2. `cmake --install` must install the headers and the package config;
#  3. tests/consumer must configure against that install (revoxConfig.cmake must not ask for
#     the missing packages), build its revox::revox program, run it, and have no revox::nifti.
# Usage: library_only.sh <source dir> <work dir> <C++ compiler>
set -euo pipefail
src=$1
work=$2
cxx=$3

disabled=(RevoxNifti RevoxStb Catch2 CLI11 benchmark MPI Python3)
flags=()
for name in "${disabled[@]}"; do
  flags+=("-DCMAKE_DISABLE_FIND_PACKAGE_${name}=ON")
done

rm -rf "$work"
mkdir -p "$work"
# The README's install command, with the optional packages hidden.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DREVOX_BUILD_TESTS=OFF \
  -DCMAKE_CXX_COMPILER="$cxx" "${flags[@]}" >"$work/configure.log" 2>&1 || {
  cat "$work/configure.log"; echo "FAIL: configure without the optional packages" >&2; exit 1; }
grep "^-- revox:" "$work/configure.log"
expect() {
  if ! grep -qF -- "$1" "$work/configure.log"; then
    echo "FAIL: the configure output lacks the line: $1" >&2
    exit 1
  fi
}
expect "revox: NIfTI support OFF: nifti_clib not found, revox::nifti not defined (Debian: libnifti2-dev libznz-dev zlib1g-dev)"
expect "revox: skipping revox-brats (examples/brats): NIfTI (nifti_clib), stb, CLI11 not found (Debian: libnifti2-dev libznz-dev zlib1g-dev libstb-dev libcli11-dev;"
expect "revox: skipping bench_metrics, revox_bench and bench_data_pipeline (benchmarks/): Google Benchmark not found (Debian: libbenchmark-dev;"
expect "revox: skipping revox::mpi (data-parallel training under mpirun) and its tests: MPI (with a C compiler) not found (Debian: openmpi-bin libopenmpi-dev;"
cmake --install "$work/build" --prefix "$work/prefix" >"$work/install.log"
for f in include/revox/revox.hpp include/revox/layers/layer.hpp include/revox/layers/all.hpp \
         lib/cmake/revox/revoxConfig.cmake lib/cmake/revox/revoxTargets.cmake; do
  [[ -f "$work/prefix/$f" ]] || { echo "FAIL: $f was not installed" >&2; exit 1; }
done
if [[ -e "$work/prefix/lib/cmake/revox/revoxNiftiTargets.cmake" ]]; then
  echo "FAIL: revox::nifti was installed without nifti_clib" >&2
  exit 1
fi

# The consumer, with the same packages hidden: revoxConfig.cmake must not need them.
cmake -S "$src/tests/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$work/prefix" "${flags[@]}" \
  >"$work/consumer-configure.log" 2>&1 || {
  cat "$work/consumer-configure.log"; echo "FAIL: tests/consumer against the install" >&2; exit 1; }
cmake --build "$work/consumer" --target revox_consumer
if cmake --build "$work/consumer" --target help | grep -q revox_consumer_nifti; then
  echo "FAIL: revox::nifti is defined without nifti_clib" >&2
  exit 1
fi
"$work/consumer/revox_consumer"
echo "PASS: installed and used with the library's own dependencies only"
