#!/usr/bin/env bash
# revox-brats --device cuda through the real binary (ctest: e2e.brats_cuda, label e2e).
#
#   tests/e2e/brats_cuda_e2e.sh path/to/revox-brats cuda|nocuda
#
# The second argument says whether the binary was built with CUDA (REVOX_WITH_CUDA). What is
# required depends on the build and the machine, never on what the binary happens to do:
#   nocuda                 --device cuda fails (exit 1) with "built without CUDA support"
#   cuda, no GPU visible   --device cuda fails (exit 1) with "no CUDA device", writes nothing
#   cuda, a GPU visible    (nvidia-smi -L lists one) train and predict on the GPU succeed:
#                          a CPU-trained checkpoint predicts on the GPU and a GPU-trained one
#                          on the CPU, with predictions agreeing with the other device's
#                          (Dice per region >= 0.99, measured by `evaluate` with the other
#                          device's predictions as ground truth); the GPU run resumes
# In every build: --gpu without --device cuda and bad --device / --gpu values are refused.
set -uo pipefail

BIN=${1:?usage: brats_cuda_e2e.sh path/to/revox-brats cuda|nocuda}
BUILD=${2:?usage: brats_cuda_e2e.sh path/to/revox-brats cuda|nocuda}
[[ -x "$BIN" ]] || { echo "FAIL: '$BIN' is not an executable"; exit 1; }
[[ $BUILD == cuda || $BUILD == nocuda ]] || { echo "FAIL: second argument '$BUILD'"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_brats_cuda_e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# must_agree NAME PRED REF_PRED: every region's Dice of PRED against REF_PRED is >= 0.99.
# `evaluate` scores PRED against a copy of the hold-out cases whose segmentation is REF_PRED.
must_agree() {
  local name=$1 pred=$2 ref=$3 id
  rm -rf "$WORK/ref_$name"
  for id in $holdout_ids; do
    mkdir -p "$WORK/ref_$name/$id"
    for f in "$HOLDOUT/$id"/*.nii.gz; do
      [[ $f == *_seg.nii.gz ]] || ln -s "$(readlink -f "$f")" "$WORK/ref_$name/$id/"
    done
    cp "$ref/$id.nii.gz" "$WORK/ref_$name/$id/${id}_seg.nii.gz"
  done
  if must_pass "eval_$name" evaluate --pred "$pred" --data "$WORK/ref_$name" \
       --csv "$WORK/$name.csv"; then
    # Dice of WT, TC, ET: columns 2, 12, 22 (10 columns per region, see docs/trainer.md).
    if awk -F, 'NR > 1 && ($2 < 0.99 || $12 < 0.99 || $22 < 0.99) { bad = 1 } END { exit bad }' \
         "$WORK/$name.csv"; then
      pass "$name: Dice >= 0.99 per case and region (case,WT,TC,ET):" \
        "$(tail -n +2 "$WORK/$name.csv" | cut -d, -f1,2,12,22 | tr '\n' ' ')"
    else
      fail "$name: predictions disagree: $(cat "$WORK/$name.csv")"
    fi
  fi
}

have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  have_gpu=1
fi
echo "build: $BUILD, GPU visible: $have_gpu"

step "data and a CPU-trained checkpoint"
DATA=$WORK/data
must_pass phantom phantom --out "$DATA" --cases 4 --size 24 24 16 --seed 3 || exit 1
TRAIN=(train --data "$DATA" --preset tiny --seed 5 --threads 2 --set holdout_count=2)
must_pass train_cpu "${TRAIN[@]}" --out "$WORK/run_cpu" --epochs 1 || exit 1
HOLDOUT=$WORK/run_cpu/holdout
holdout_ids=$(ls "$HOLDOUT")
must_pass predict_cpu predict --checkpoint "$WORK/run_cpu/latest.safetensors" --data "$HOLDOUT" \
  --out "$WORK/pred_cpu"

step "--device / --gpu on the command line"
must_fail gpu_without_cuda 1 "needs --device cuda" "${TRAIN[@]}" --out "$WORK/never" --gpu 0
must_fail predict_gpu_without_cuda 1 "needs --device cuda" predict \
  --checkpoint "$WORK/run_cpu/latest.safetensors" --data "$HOLDOUT" --out "$WORK/never" --gpu 1
must_fail bad_device 2 "--device" "${TRAIN[@]}" --out "$WORK/never" --device tpu
must_fail negative_gpu 2 "--gpu" "${TRAIN[@]}" --out "$WORK/never" --device cuda --gpu -1
[[ -e $WORK/never ]] && fail "a refused command created $WORK/never"

if [[ $BUILD == nocuda ]]; then
  step "a build without CUDA"
  must_fail train_nocuda 1 "built without CUDA support" "${TRAIN[@]}" --out "$WORK/never" \
    --device cuda
  must_fail predict_nocuda 1 "built without CUDA support" predict \
    --checkpoint "$WORK/run_cpu/latest.safetensors" --data "$HOLDOUT" --out "$WORK/never" \
    --device cuda
elif [[ $have_gpu == 0 ]]; then
  step "a CUDA build on a machine without a GPU"
  must_fail train_nogpu 1 "no CUDA device" "${TRAIN[@]}" --out "$WORK/never" --device cuda
  must_fail train_nogpu_index 1 "no CUDA device" "${TRAIN[@]}" --out "$WORK/never" \
    --device cuda --gpu 3
  must_fail predict_nogpu 1 "no CUDA device" predict \
    --checkpoint "$WORK/run_cpu/latest.safetensors" --data "$HOLDOUT" --out "$WORK/never" \
    --device cuda
  [[ -e $WORK/never ]] && fail "--device cuda without a GPU created $WORK/never"
else
  step "on the GPU"
  must_fail gpu_out_of_range 1 "does not exist" "${TRAIN[@]}" --out "$WORK/never" \
    --device cuda --gpu 4096
  # A CPU-trained checkpoint on the GPU, against the CPU's predictions.
  if must_pass predict_gpu_from_cpu predict --checkpoint "$WORK/run_cpu/latest.safetensors" \
       --data "$HOLDOUT" --out "$WORK/pred_gpu_from_cpu" --device cuda; then
    must_agree gpu_vs_cpu_predict "$WORK/pred_gpu_from_cpu" "$WORK/pred_cpu"
  fi
  must_pass predict_gpu_window predict --checkpoint "$WORK/run_cpu/latest.safetensors" \
    --data "$HOLDOUT" --out "$WORK/pred_gpu_window" --device cuda --gpu 0 --sliding-window 8
  # Training on the GPU: same split and seed as the CPU run; its checkpoint on both devices.
  if must_pass train_gpu "${TRAIN[@]}" --out "$WORK/run_gpu" --epochs 1 --device cuda; then
    for f in latest.safetensors best.safetensors log.csv; do
      [[ -s $WORK/run_gpu/$f ]] || fail "GPU train did not write $f"
    done
    cmp -s "$WORK/run_cpu/split.json" "$WORK/run_gpu/split.json" &&
      pass "GPU run has the CPU run's split" || fail "split.json differs between the devices"
    cpu_loss=$(sed -n 2p "$WORK/run_cpu/log.csv" | cut -d, -f2)
    gpu_loss=$(sed -n 2p "$WORK/run_gpu/log.csv" | cut -d, -f2)
    # Float sums differ between the devices; over one epoch the losses stay within 2%.
    if awk -v a="$cpu_loss" -v b="$gpu_loss" 'BEGIN { d = a - b; if (d < 0) d = -d;
         exit !(a > 0 && d <= 0.02 * a) }'; then
      pass "epoch-1 loss CPU $cpu_loss, GPU $gpu_loss (within 2%)"
    else
      fail "epoch-1 loss CPU $cpu_loss vs GPU $gpu_loss"
    fi
    if must_pass predict_cpu_from_gpu predict --checkpoint "$WORK/run_gpu/latest.safetensors" \
         --data "$HOLDOUT" --out "$WORK/pred_cpu_from_gpu" &&
       must_pass predict_gpu_from_gpu predict --checkpoint "$WORK/run_gpu/latest.safetensors" \
         --data "$HOLDOUT" --out "$WORK/pred_gpu_from_gpu" --device cuda; then
      must_agree gpu_checkpoint "$WORK/pred_gpu_from_gpu" "$WORK/pred_cpu_from_gpu"
    fi
    must_pass train_gpu_resume "${TRAIN[@]}" --out "$WORK/run_gpu" --epochs 2 --resume \
      --device cuda
    [[ $(($(wc -l <"$WORK/run_gpu/log.csv") - 1)) -eq 2 ]] &&
      pass "resumed GPU run logged 2 epochs" || fail "GPU log.csv: $(cat "$WORK/run_gpu/log.csv")"
    # A GPU checkpoint resumes on the CPU too (the same file format).
    cp -r "$WORK/run_gpu" "$WORK/run_gpu_on_cpu"
    must_pass train_gpu_resume_on_cpu "${TRAIN[@]}" --out "$WORK/run_gpu_on_cpu" --epochs 3 \
      --resume
  fi
fi

finish brats_cuda_e2e
