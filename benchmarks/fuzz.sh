#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang -fsanitize=fuzzer,address,undefined and
# runs each for SECONDS (default 30) on a fresh copy of its seed corpus fuzz/corpus/<target>/.
#   bash benchmarks/fuzz.sh [SECONDS]
# Environment:
#   FUZZ_TARGETS  targets to run (default: "nifti safetensors config brats")
#   FUZZ_BUILD    build folder (default: build-fuzz); binaries in $FUZZ_BUILD/bin
#   FUZZ_JOBS     parallel compiler processes (default: nproc)
#   CXX           clang++ to use (default: clang++)
#   FUZZ_ARGS     extra libFuzzer flags, e.g. "-max_len=8192"
# Needs clang and its fuzzer runtime (Debian 12: bash scripts/install-deps.sh --fuzz), and
# nifti_clib, zlib and nlohmann-json like the tests.
#
# Prints per target the executions, exec/s, coverage reached (libFuzzer's cov: edges and
# ft: features) and whether it found anything. A finding (crash, sanitizer report, leak,
# timeout > 10 s, > 2 GB memory, or an exception other than revox::Error) leaves the input in
# $FUZZ_BUILD/findings/<target>/ (crash-<sha1>, leak-..., timeout-..., oom-...) and its log
# beside it; the script then exits 1. Reproduce with $FUZZ_BUILD/bin/fuzz_<target> <file>.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
targets=(${FUZZ_TARGETS:-nifti safetensors config brats})
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc)}
cxx=${CXX:-clang++}
[[ "$cxx" == *clang* ]] || cxx=clang++

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found; install clang and its fuzzer runtime" \
       "(Debian 12: bash scripts/install-deps.sh --fuzz)" >&2
  exit 2
fi

# Without -fopenmp (clang's libomp is not needed), OpenMP pragmas are ignored and a few
# variables only they use are unused: hence the two -Wno-.
flags=(-std=c++17 -O1 -gline-tables-only -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-unused-variable
       -Iinclude -Ifuzz -Iexamples/brats -I/usr/include/nifti)
libs=(-lnifti2 -lznz -lz -lm)

mkdir -p "$build/bin" "$build/logs"
# Rebuild a target when its binary is older than any source it may include.
build_one() {
  local t=$1 bin="$build/bin/fuzz_$1"
  if [[ -x "$bin" ]] && [[ -z "$(find include fuzz examples/brats/run_config.hpp \
        benchmarks/fuzz.sh -newer "$bin" -type f -print -quit)" ]]; then
    return 0
  fi
  if ! "$cxx" "${flags[@]}" "fuzz/fuzz_$t.cpp" -o "$bin.tmp" "${libs[@]}" \
       > "$build/logs/build_$t.log" 2>&1; then
    cat "$build/logs/build_$t.log" >&2
    if grep -q "libclang_rt.fuzzer\|fsanitize=fuzzer" "$build/logs/build_$t.log"; then
      echo "fuzz.sh: the fuzzer runtime is missing (Debian 12: bash scripts/install-deps.sh" \
           "--fuzz installs clang and libclang-rt-14-dev)" >&2
    fi
    return 1
  fi
  mv "$bin.tmp" "$bin"
}
export -f build_one
export build cxx
export flags_str="${flags[*]}" libs_str="${libs[*]}"
t0=$(date +%s)
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c \
  'flags=($flags_str); libs=($libs_str); build_one "$@"' _ {}
echo "fuzz.sh: built ${#targets[@]} targets with $("$cxx" --version | head -n 1)" \
     "in $(( $(date +%s) - t0 )) s"

status=0
summary=()
for t in "${targets[@]}"; do
  work="$build/work/$t" findings="$build/findings/$t" log="$build/logs/run_$t.log"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings"
  cp -r "fuzz/corpus/$t/." "$work/"
  echo "fuzz.sh: running fuzz_$t for $seconds s on $(ls "$work" | wc -l) seeds"
  rc=0
  # -timeout: one input running > 10 s is a hang; -rss_limit_mb: > 2 GB is a finding.
  "$build/bin/fuzz_$t" "$work" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" ${FUZZ_ARGS:-} > "$log" 2>&1 || rc=$?
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  found=$(ls "$findings")
  if [[ $rc -ne 0 || -n "$found" ]]; then
    status=1
    cp "$log" "$findings/log.txt"
    result="FINDING (exit $rc): $(echo $found) in $findings/"
    grep -E 'ERROR: |FINDING: |SUMMARY: |runtime error' "$log" | head -n 5 | sed 's/^/    /' >&2 || true
  else
    result="no finding"
  fi
  line=$(printf '%-12s execs %-9s exec/s %-6s cov %-5s ft %-6s %s' "$t" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result")
  echo "  $line"
  summary+=("$line")
done
echo
echo "fuzz.sh: $seconds s per target"
printf '  %s\n' "${summary[@]}"
exit $status
