#!/usr/bin/env bash
# benchmarks/cuda/run_all.sh — everything revox checks on a GPU, in one run (< 8 minutes on
# one H100): build the CUDA tests, run them (ctest label `cuda`: every op against the CPU
# reference, the Cuda allocator, a whole reversible U-Net training step), run
# compute-sanitizer memcheck and racecheck over the op parity tests, build revox-brats and run
# its --device cuda end-to-end test (tests/e2e/brats_cuda_e2e.sh: train and predict on the GPU,
# CPU-trained checkpoints on the GPU and back, predictions compared with the CPU's) when its
# dependencies are there, and print a summary table last. Exit status 0 only when every step
# passed.
#
# On a GPU machine without Debian's packages or a network, first run here
#   bash scripts/gpu-deps.sh        (copies nlohmann_json into .gpu-deps/, and
#                                    CLI11, stb, NIfTI, zlib for revox-brats)
# and carry .gpu-deps along. Environment:
#   REVOX_GPU_BUILD   build folder (default: build-gpu)
#   REVOX_CUDA_ARCH   CUDA architecture (default: the GPU's compute capability, else 90)
#   OUT               when set, the full log is also written to $OUT/cuda_run_all.log
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${REVOX_GPU_BUILD:-$root/build-gpu}
log=/dev/null
if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT"; log=$OUT/cuda_run_all.log; fi
exec > >(tee "$log") 2>&1

export PATH=/usr/local/cuda/bin:$PATH
start_all=$(date +%s)
names=(); results=(); seconds=()
record() { names+=("$1"); results+=("$2"); seconds+=("$3"); }
step() {  # step NAME COMMAND...: runs, times and records one step
  local name=$1; shift
  echo; echo "=== $name: $*"
  local t0; t0=$(date +%s)
  if "$@"; then record "$name" PASS $(( $(date +%s) - t0 ));
  else record "$name" "FAIL($?)" $(( $(date +%s) - t0 )); fi
}

echo "revox run_all.sh at commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  have_gpu=1
else
  have_gpu=0
  echo "run_all: no GPU visible (nvidia-smi failed): the CUDA tests will report 'skipped'"
  cap=90
fi
arch=${REVOX_CUDA_ARCH:-$cap}
nvcc --version | tail -1

prefix_args=()
[[ -d $root/.gpu-deps/usr ]] && prefix_args=(-DCMAKE_PREFIX_PATH="$root/.gpu-deps/usr")
# revox-brats needs CLI11, stb and NIfTI: carried in .gpu-deps (brats-deps) or installed here.
brats=0
if [[ -f $root/.gpu-deps/brats-deps ]] ||
   [[ -e /usr/include/CLI/CLI.hpp && -e /usr/include/stb/stb_image_write.h &&
      -e /usr/include/nifti/nifti2_io.h ]]; then
  brats=1
fi
jobs=$(nproc 2>/dev/null || echo 4)

step configure cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DREVOX_BUILD_TESTS=OFF -DREVOX_BUILD_EXAMPLES=$([[ $brats == 1 ]] && echo ON || echo OFF) \
  -DREVOX_BUILD_BENCHMARKS=OFF \
  -DREVOX_BUILD_CUDA_TESTS=ON -DREVOX_INSTALL=OFF -DREVOX_WARNINGS_AS_ERRORS=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" "${prefix_args[@]}"
step build cmake --build "$build" -j "$jobs"
step "ctest -L cuda" ctest --test-dir "$build" -L cuda --output-on-failure --timeout 300

# compute-sanitizer over the op parity tests (their small shapes keep this quick).
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for test in test_activations test_add test_max_pool3d test_upsample_trilinear \
  test_group_norm test_instance_norm test_losses test_optim test_depthwise_conv3d \
  test_pointwise_conv3d test_conv3d test_cuda_context; do
  exe=$build/tests/cuda/revox_cuda_$test
  if [[ $have_gpu == 0 ]]; then record "sanitize $test" SKIPPED 0; continue; fi
  [[ -x $exe ]] || { record "sanitize $test" "MISSING" 0; continue; }
  for tool in memcheck racecheck; do
    step "$tool $test" "$sanitizer" --tool "$tool" --error-exitcode 99 "$exe"
  done
done

# revox-brats --device cuda end to end (a phantom, CPU and GPU training, predictions compared).
if [[ $brats == 0 ]]; then
  echo "run_all: revox-brats not built (no CLI11/stb/NIfTI: run scripts/gpu-deps.sh where they are)"
  record "brats --device cuda e2e" SKIPPED 0
elif [[ $have_gpu == 0 ]]; then
  record "brats --device cuda e2e" SKIPPED 0
else
  step "brats --device cuda e2e" bash "$root/tests/e2e/brats_cuda_e2e.sh" \
    "$build/examples/brats/revox-brats" cuda
fi

echo
echo "=== summary (total $(( $(date +%s) - start_all )) s)"
printf '%-34s %-10s %8s\n' step result seconds
failed=0
for i in "${!names[@]}"; do
  printf '%-34s %-10s %8s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
  [[ ${results[$i]} == PASS || ${results[$i]} == SKIPPED ]] || failed=1
done
[[ $have_gpu == 1 ]] || echo "NO GPU: nothing above ran on a GPU (the cuda tests were skipped)"
exit $failed
