#!/usr/bin/env bash
# The CPU kernel table of docs/results.md ("CPU kernels"), in one command: builds revox_bench
# (Release, -march=native, oneDNN peer rows when oneDNN is installed), runs it, runs the
# PyTorch peer at the same thread count, and writes the comparison table and the roofline
# plot. Run it on a quiet machine: every number is a median of repetitions, but nothing can
# correct for another job sharing the cores.
#   bash benchmarks/run_cpu_table.sh [OUT_DIR]       (default: bench-out/)
# Environment: THREADS (default: nproc), REPS (default 3), BUILD_DIR (default build-bench),
# PYTHON (default /usr/bin/python3 if it exists: Debian's python3-torch), SKIP_TORCH=1.
# Writes OUT_DIR/{machine.txt, revox.json, revox.txt, torch.json, table.md, roofline.png}.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "${1:-bench-out}" && cd "${1:-bench-out}" && pwd)
threads=${THREADS:-$(nproc)}
reps=${REPS:-3}
build=${BUILD_DIR:-$root/build-bench}
python=${PYTHON:-python3}
[[ -z ${PYTHON:-} && -x /usr/bin/python3 ]] && python=/usr/bin/python3

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DREVOX_BUILD_BENCHMARKS=ON \
  -DREVOX_BUILD_TESTS=OFF -DREVOX_BUILD_CUDA_TESTS=OFF -DREVOX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target revox_bench

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (with uncommitted changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cores: $(nproc); threads used: $threads; repetitions: $reps"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"

echo "== revox_bench ($(date -u +%H:%M))"
OMP_NUM_THREADS=$threads "$build/benchmarks/revox_bench" --benchmark_repetitions="$reps" \
  --benchmark_out="$out/revox.json" --benchmark_out_format=json | tee "$out/revox.txt"

if [[ ${SKIP_TORCH:-0} != 1 ]] && "$python" -c "import torch" 2>/dev/null; then
  echo "== PyTorch peer ($(date -u +%H:%M))"
  OMP_NUM_THREADS=$threads "$python" "$root/benchmarks/torch_cpu_peer.py" run \
    --threads "$threads" --repetitions "$reps" --out "$out/torch.json"
  python3 "$root/benchmarks/torch_cpu_peer.py" compare --revox "$out/revox.json" \
    --torch "$out/torch.json" --markdown | tee "$out/table.md"
else
  echo "== PyTorch peer skipped (SKIP_TORCH=1 or no torch for $python)"
  python3 "$root/benchmarks/torch_cpu_peer.py" compare --revox "$out/revox.json" \
    --markdown | tee "$out/table.md"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

if python3 -c "import matplotlib" 2>/dev/null; then
  python3 "$root/benchmarks/plot_roofline.py" --revox "$out/revox.json" --out "$out/roofline.png"
else
  echo "matplotlib not installed: no roofline plot (pip install matplotlib)"
fi
echo "== done ($(date -u +%H:%M)): $out"
