#!/usr/bin/env bash
# The README's main job: install the dependencies, build revox in Release, generate a
# realistic synthetic (phantom) BraTS dataset and a test set kept apart from it, train the
# "small" reversible MBConv U-Net preset on 2 CPU threads, fit the simple baselines (a FLAIR
# threshold, a per-voxel Gaussian classifier) on the same training cases, predict and evaluate
# the test cases with both, and print revox's Dice beside the baselines'.
#
#   scripts/run-default.sh                 # everything, outputs under ./revox-default-run
#   REVOX_SKIP_DEPS=1 scripts/run-default.sh   # dependencies already installed
# Environment knobs: REVOX_RUN_DIR (output root), REVOX_BUILD_DIR (default build),
# REVOX_CASES (training + hold-out cases, default 40), REVOX_TEST_CASES (default 12),
# REVOX_SIZE ("W H D", default "96 96 64"), REVOX_MODE (phantom mode, default realistic),
# REVOX_EPOCHS (default: the preset's), REVOX_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN=${REVOX_RUN_DIR:-$ROOT/revox-default-run}
BUILD=${REVOX_BUILD_DIR:-$ROOT/build}
CASES=${REVOX_CASES:-40}
TEST_CASES=${REVOX_TEST_CASES:-12}
SIZE=${REVOX_SIZE:-"96 96 64"}
MODE=${REVOX_MODE:-realistic}
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
# One seeded set of CASES + TEST_CASES phantoms (each case depends only on the seed and its
# number); the last TEST_CASES move to $RUN/test, which training never sees.
stamp "generating $CASES + $TEST_CASES $MODE phantom cases of $SIZE (W H D) voxels"
# shellcheck disable=SC2086
"$BIN" phantom --mode "$MODE" --out "$RUN/data" --cases $((CASES + TEST_CASES)) --size $SIZE \
  --seed 1 >/dev/null
mkdir -p "$RUN/test"
find "$RUN/data" -mindepth 1 -maxdepth 1 -type d | sort | tail -n "$TEST_CASES" |
  xargs -I{} mv {} "$RUN/test/"

stamp "training the small preset on $THREADS threads"
EPOCH_ARGS=()
[ -n "${REVOX_EPOCHS:-}" ] && EPOCH_ARGS=(--epochs "$REVOX_EPOCHS")
"$BIN" train --data "$RUN/data" --preset small --out "$RUN/train" --threads "$THREADS" \
  "${EPOCH_ARGS[@]}"
train_end=$(date +%s)

stamp "fitting the simple baselines on the same training cases"
"$BIN" baseline --data "$RUN/data" --split "$RUN/train/split.json" --test-data "$RUN/test" \
  --out "$RUN/baselines" --threads "$THREADS"

stamp "predicting the $TEST_CASES test cases ($RUN/test) with the final model"
"$BIN" predict --checkpoint "$RUN/train/latest.safetensors" --data "$RUN/test" \
  --out "$RUN/predictions" --overlays --min-component 10 --threads "$THREADS"
stamp "evaluating"
"$BIN" evaluate --pred "$RUN/predictions" --data "$RUN/test" --csv "$RUN/evaluation.csv"
for b in gaussian flair_threshold; do
  "$BIN" evaluate --pred "$RUN/baselines/$b" --data "$RUN/test" \
    --csv "$RUN/baselines/$b.csv" >/dev/null
done

end=$(date +%s)
echo
echo "run-default: mean Dice on the $TEST_CASES test cases (BraTS rules; lesion-wise in brackets)"
awk -F, '
  FNR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i; next }
  $1 == "mean" {
    f = FILENAME; sub(/.*\//, "", f)
    name = "FLAIR threshold (WT only)"
    if (f == "evaluation_summary.csv") name = "revox (small U-Net)"
    if (f == "gaussian_summary.csv") name = "Gaussian classifier"
    printf "  %-27s WT %.3f (%.3f)  TC %.3f (%.3f)  ET %.3f (%.3f)  mean %.3f\n", name,
      $col["WT_dice"], $col["WT_lesion_dice"], $col["TC_dice"], $col["TC_lesion_dice"],
      $col["ET_dice"], $col["ET_lesion_dice"], $col["mean_dice"]
  }' "$RUN/evaluation_summary.csv" "$RUN/baselines/gaussian_summary.csv" \
  "$RUN/baselines/flair_threshold_summary.csv"
echo
echo "run-default: done in $(( end - start )) s (training $(( train_end - start )) s from the start)"
echo "  checkpoint:   $RUN/train/latest.safetensors (best on the hold-out: $RUN/train/best.safetensors)"
echo "  training log: $RUN/train/log.csv, curve: $RUN/train/learning_curve.png"
echo "  predictions:  $RUN/predictions/*.nii.gz, pictures: $RUN/predictions/overlays/"
echo "  scores:       $RUN/evaluation.csv and $RUN/evaluation_summary.csv;"
echo "                baselines: $RUN/baselines/{gaussian,flair_threshold}{,_summary}.csv"
