#!/usr/bin/env bash
# The README's main job: install the dependencies, build revox in Release, generate a
# synthetic (phantom) BraTS dataset, train the "small" reversible MBConv U-Net preset on 2 CPU
# threads, predict and evaluate the held-out cases, and print the per-region Dice table and
# where everything is.
#
#   scripts/run-default.sh                 # everything, outputs under ./revox-default-run
#   REVOX_SKIP_DEPS=1 scripts/run-default.sh   # dependencies already installed
# Environment knobs: REVOX_RUN_DIR (output root), REVOX_BUILD_DIR (default build),
# REVOX_CASES (phantom cases, default 24), REVOX_SIZE ("W H D", default "64 64 48"),
# REVOX_EPOCHS (default: the preset's), REVOX_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN=${REVOX_RUN_DIR:-$ROOT/revox-default-run}
BUILD=${REVOX_BUILD_DIR:-$ROOT/build}
CASES=${REVOX_CASES:-24}
SIZE=${REVOX_SIZE:-"64 64 48"}
THREADS=${REVOX_THREADS:-2}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

if [ -z "${REVOX_SKIP_DEPS:-}" ]; then
  stamp "installing dependencies (scripts/install-deps.sh)"
  scripts/install-deps.sh
fi
stamp "building revox-brats (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DREVOX_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target revox-brats
BIN=$BUILD/examples/brats/revox-brats

if [ -e "$RUN" ]; then
  echo "run-default: $RUN already exists; remove it or set REVOX_RUN_DIR" >&2
  exit 1
fi
stamp "generating $CASES phantom cases of $SIZE (W H D) voxels"
# shellcheck disable=SC2086
"$BIN" phantom --out "$RUN/data" --cases "$CASES" --size $SIZE --seed 1

stamp "training the small preset on $THREADS threads"
EPOCH_ARGS=()
[ -n "${REVOX_EPOCHS:-}" ] && EPOCH_ARGS=(--epochs "$REVOX_EPOCHS")
"$BIN" train --data "$RUN/data" --preset small --out "$RUN/train" --threads "$THREADS" \
  "${EPOCH_ARGS[@]}"
train_end=$(date +%s)

stamp "predicting the hold-out cases ($RUN/train/holdout)"
"$BIN" predict --checkpoint "$RUN/train/best.safetensors" --data "$RUN/train/holdout" \
  --out "$RUN/predictions" --overlays --threads "$THREADS"
stamp "evaluating"
"$BIN" evaluate --pred "$RUN/predictions" --data "$RUN/train/holdout" \
  --csv "$RUN/evaluation.csv"

end=$(date +%s)
echo
echo "run-default: done in $(( end - start )) s (training $(( train_end - start )) s from the start)"
echo "  checkpoint:   $RUN/train/best.safetensors (latest: $RUN/train/latest.safetensors)"
echo "  training log: $RUN/train/log.csv, curve: $RUN/train/learning_curve.png"
echo "  predictions:  $RUN/predictions/*.nii.gz, pictures: $RUN/predictions/overlays/"
echo "  scores:       $RUN/evaluation.csv and $RUN/evaluation_summary.csv"
