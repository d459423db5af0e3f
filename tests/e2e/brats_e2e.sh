#!/usr/bin/env bash
# End-to-end test of revox-brats through the real binary, at tiny sizes (well under 2 minutes
# on 2 cores): phantom -> plan -> train a few steps (checkpoint) -> resume (same losses as an
# uninterrupted run) -> predict, full volume and sliding window, with overlays -> evaluate;
# plus bad command lines, bad configs and bad inputs, which must fail with clear messages.
# A subcommand that is "not implemented in this build" makes the test fail.
#
#   tests/e2e/brats_e2e.sh path/to/revox-brats     (ctest: e2e.brats, label e2e)
set -uo pipefail

BIN=${1:?usage: brats_e2e.sh path/to/revox-brats}
[[ -x "$BIN" ]] || { echo "FAIL: '$BIN' is not an executable"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_brats_e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Optional deeper checks with nibabel (Debian's python3-nibabel); skipped without it.
PYTHON=python3
[[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3
have_nibabel=0
if "$PYTHON" -c "import nibabel, numpy" >/dev/null 2>&1; then have_nibabel=1; fi

# ---------------------------------------------------------------------------------------------
step "help and bad command lines"
for sub in phantom train predict evaluate ensemble plan; do
  if run "help_$sub" "$sub" --help && [[ $(wc -c <"$WORK/help_$sub.out") -gt 200 ]]; then
    pass "$sub --help"
  else
    fail "$sub --help: exit code or text missing"
  fi
done
must_fail no_subcommand 2 "subcommand is required"
must_fail unknown_subcommand 2 "" frobnicate
must_fail phantom_no_out 2 "--out is required" phantom --cases 2
must_fail train_no_data 2 "--data is required" train --out "$WORK/never"

# ---------------------------------------------------------------------------------------------
step "phantom"
DATA=$WORK/data
CASES=6
if must_pass phantom phantom --out "$DATA" --cases $CASES --size 24 24 16 --seed 7; then
  n=$(grep -c "^phantom: \[" "$WORK/phantom.out")
  [[ $n -eq $CASES ]] && pass "one progress line per case" || fail "progress lines: $n, want $CASES"
  for i in $(seq -f %03g 1 $CASES); do
    for m in t1 t1ce t2 flair seg; do
      f=$DATA/BraTS20_Training_$i/BraTS20_Training_${i}_$m.nii.gz
      [[ -s $f ]] || fail "phantom did not write $f"
    done
  done
fi
must_fail phantom_overwrite 1 "refusing to overwrite" phantom --out "$DATA" --cases 2 --size 24 24 16
must_fail phantom_bad_size 1 "--size" phantom --out "$WORK/bad" --cases 1 --size 4 24 16
[[ -e $WORK/bad ]] && fail "phantom with a bad --size created $WORK/bad"
must_fail phantom_bad_naming 2 "--naming" phantom --out "$WORK/bad" --cases 1 --naming 2019
if must_pass phantom2023 phantom --out "$WORK/data2023" --cases 1 --size 16 16 8 --naming 2023; then
  [[ -s $WORK/data2023/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii.gz ]] ||
    fail "phantom --naming 2023 did not write BraTS 2023 names"
fi

# ---------------------------------------------------------------------------------------------
step "plan"
if must_pass plan plan --preset tiny --budget-gb 0.5; then
  grep -q "predicted peak" "$WORK/plan.out" && grep -q "largest" "$WORK/plan.out" &&
    pass "plan prints the predicted peak and the largest input" ||
    fail "plan output lacks the predicted peak / largest input: $(cat "$WORK/plan.out")"
fi
must_fail plan_bad_preset 1 "unknown preset" plan --preset nope --budget-gb 1
must_fail plan_bad_budget 1 "--budget-gb" plan --preset tiny --budget-gb -1

# ---------------------------------------------------------------------------------------------
step "train, checkpoint, resume"
RUN=$WORK/run
TRAIN=(train --data "$DATA" --preset tiny --seed 5 --threads 2)
if must_pass train1 "${TRAIN[@]}" --out "$RUN" --epochs 1; then
  for f in config.json log.csv latest.safetensors best.safetensors learning_curve.png split.json; do
    [[ -s $RUN/$f ]] || fail "train did not write $RUN/$f"
  done
  [[ -d $RUN/holdout ]] || fail "train did not write $RUN/holdout/"
fi
must_fail train_nonempty_run 1 "" "${TRAIN[@]}" --out "$RUN" --epochs 1
must_pass train_resume "${TRAIN[@]}" --out "$RUN" --epochs 2 --resume
must_pass train_straight "${TRAIN[@]}" --out "$WORK/run_straight" --epochs 2
# The loss column (2nd) of an interrupted-and-resumed run equals the uninterrupted one.
if [[ -s $RUN/log.csv && -s $WORK/run_straight/log.csv ]]; then
  resumed=$(tail -n +2 "$RUN/log.csv" | cut -d, -f1,2)
  straight=$(tail -n +2 "$WORK/run_straight/log.csv" | cut -d, -f1,2)
  if [[ $(echo "$resumed" | wc -l) -eq 2 && "$resumed" == "$straight" ]]; then
    pass "resumed losses equal the uninterrupted run's: $(echo $resumed)"
  else
    fail "resumed losses differ: [$resumed] vs [$straight]"
  fi
fi
must_fail train_bad_key 1 "no_such_key" "${TRAIN[@]}" --out "$WORK/run_bad" --set no_such_key=1
[[ -e $WORK/run_bad && -n $(ls -A "$WORK/run_bad" 2>/dev/null) ]] &&
  fail "a run that failed to start wrote into $WORK/run_bad"
echo '{"epochs": "many"' >"$WORK/broken.json"
must_fail train_broken_config 1 "broken.json" train --data "$DATA" --config "$WORK/broken.json" \
  --out "$WORK/run_bad2"
head -c 100 "$RUN/latest.safetensors" >"$WORK/damaged.safetensors"

# ---------------------------------------------------------------------------------------------
step "predict"
PRED=$WORK/pred
HOLDOUT=$RUN/holdout
holdout_ids=$(ls "$HOLDOUT" 2>/dev/null)
[[ -n $holdout_ids ]] || fail "no hold-out cases in $HOLDOUT"
if must_pass predict predict --checkpoint "$RUN/best.safetensors" --data "$HOLDOUT" --out "$PRED" \
     --overlays --save-probabilities; then
  for id in $holdout_ids; do
    [[ -s $PRED/$id.nii.gz ]] || fail "predict did not write $PRED/$id.nii.gz"
    for plane in axial coronal sagittal; do
      png=$PRED/overlays/${id}_$plane.png
      if [[ ! -s $png ]]; then
        fail "predict --overlays did not write $png"
      elif [[ $(head -c 4 "$png" | tail -c 3) != "PNG" ]]; then
        fail "$png is not a PNG"
      fi
    done
  done
fi
must_pass predict_window predict --checkpoint "$RUN/latest.safetensors" --data "$HOLDOUT" \
  --out "$WORK/pred_window" --sliding-window 8 --overlap 0.5
must_fail predict_damaged 1 "damaged.safetensors" predict --checkpoint "$WORK/damaged.safetensors" \
  --data "$HOLDOUT" --out "$WORK/pred_bad"
must_fail predict_missing 1 "no_such.safetensors" predict --checkpoint "$WORK/no_such.safetensors" \
  --data "$HOLDOUT" --out "$WORK/pred_bad"

if [[ $have_nibabel -eq 1 && -d $PRED ]]; then
  # Shape, geometry, data type and label set of every prediction against its case.
  if "$PYTHON" - "$PRED" "$HOLDOUT" <<'PY'; then pass "predictions: uint8, case grid and geometry, labels in {0,1,2,4}"; else fail "prediction files (see above)"; fi
import sys, pathlib, nibabel as nib, numpy as np
pred, data = map(pathlib.Path, sys.argv[1:])
bad = 0
for case in sorted(data.iterdir()):
    seg = nib.load(str(case / f"{case.name}_seg.nii.gz"))
    p = nib.load(str(pred / f"{case.name}.nii.gz"))
    values = set(np.unique(np.asarray(p.dataobj)).tolist())
    problems = []
    if p.shape != seg.shape: problems.append(f"shape {p.shape} vs {seg.shape}")
    if not np.allclose(p.affine, seg.affine, atol=1e-4): problems.append("affine differs")
    if p.get_data_dtype() != np.uint8: problems.append(f"dtype {p.get_data_dtype()}")
    if not values <= {0, 1, 2, 4}: problems.append(f"labels {sorted(values)}")
    if problems:
        print(case.name, "; ".join(problems)); bad += 1
sys.exit(1 if bad else 0)
PY
else
  echo "skip: nibabel not available for python3; shape/geometry/labels are still checked by evaluate"
fi

# ---------------------------------------------------------------------------------------------
step "NaN policy and the NIfTI byte limit"
# Two phantom cases; the first one's flair has two NaN voxels (float32, data at byte 352).
first_id=BraTS20_Training_001
NANDATA=$WORK/nan_data
if mkdir -p "$NANDATA" && cp -rL "$DATA/$first_id" "$DATA/BraTS20_Training_002" "$NANDATA/" &&
   gunzip "$NANDATA/$first_id/${first_id}_flair.nii.gz"; then
  printf '\x00\x00\xc0\x7f\x00\x00\xc0\x7f' |
    dd of="$NANDATA/$first_id/${first_id}_flair.nii" bs=1 seek=$((352 + 4 * 100)) conv=notrunc \
      status=none
  PREDICT_NAN=(predict --checkpoint "$RUN/best.safetensors" --data "$NANDATA")
  must_fail predict_nan 1 "choose the NaN policy \"zero\" (revox-brats --nan-policy zero" \
    "${PREDICT_NAN[@]}" --out "$WORK/pred_nan"
  if must_pass predict_nan_zero "${PREDICT_NAN[@]}" --out "$WORK/pred_nan_zero" --nan-policy zero; then
    [[ $(grep -c "2 NaN/Inf voxels set to 0 (NaN policy zero)" "$WORK/predict_nan_zero.out") -eq 1 ]] &&
      pass "--nan-policy zero reports the zeroed voxels once for the file" ||
      fail "--nan-policy zero did not report 2 zeroed voxels once: $(cat "$WORK/predict_nan_zero.out")"
    [[ -s $WORK/pred_nan_zero/$first_id.nii.gz ]] || fail "--nan-policy zero wrote no prediction"
  fi
  if must_pass train_nan_zero train --data "$NANDATA" --preset tiny --epochs 1 --threads 2 \
       --set holdout_count=1 --out "$WORK/run_nan" --nan-policy zero; then
    grep -q "$first_id, modality flair '.*': 2 NaN/Inf voxels set to 0" "$WORK/train_nan_zero.out" &&
      pass "train --nan-policy zero reports the zeroed voxels" ||
      fail "train --nan-policy zero did not report them: $(head -c 600 "$WORK/train_nan_zero.out")"
  fi
  must_fail train_nan 1 "--nan-policy zero" train --data "$NANDATA" --preset tiny --epochs 1 \
    --set holdout_count=1 --out "$WORK/run_nan_error"
  must_fail predict_bad_policy 2 "--nan-policy" "${PREDICT_NAN[@]}" --out "$WORK/pred_nan_bad" \
    --nan-policy ignore
  REVOX_NIFTI_MAX_BYTES=1000 must_fail predict_byte_limit 1 \
    "more than the limit of 1000 bytes (REVOX_NIFTI_MAX_BYTES)" "${PREDICT_NAN[@]}" \
    --out "$WORK/pred_limit" --nan-policy zero
else
  fail "could not prepare a case with NaN voxels in $NANDATA"
fi
must_fail train_bad_policy 2 "--nan-policy" train --data "$DATA" --out "$WORK/run_nan_bad" \
  --nan-policy ignore
must_fail ensemble_bad_policy 2 "--nan-policy" ensemble --checkpoints "$RUN/latest.safetensors" \
  "$RUN/best.safetensors" --train-data "$DATA" --data "$DATA" --out "$WORK/ens_nan_bad" \
  --nan-policy ignore

# ---------------------------------------------------------------------------------------------
step "evaluate"
CSV=$WORK/eval/scores.csv
if must_pass evaluate evaluate --pred "$PRED" --data "$HOLDOUT" --csv "$CSV"; then
  n_holdout=$(echo "$holdout_ids" | wc -w)
  rows=$(($(wc -l <"$CSV") - 1))
  [[ $rows -eq $n_holdout ]] && pass "per-case CSV has $rows rows" ||
    fail "per-case CSV has $rows rows, want $n_holdout"
  # Columns: case, then for WT, TC, ET: dice, hd95, hd95_pooled, sensitivity, specificity,
  # lesion_dice, lesion_hd95, lesion_tp, lesion_fp, lesion_fn; then mean_dice, mean_lesion_dice.
  [[ $(head -1 "$CSV" | cut -d, -f2-11) == \
     "WT_dice,WT_hd95,WT_hd95_pooled,WT_sensitivity,WT_specificity,WT_lesion_dice,WT_lesion_hd95,WT_lesion_tp,WT_lesion_fp,WT_lesion_fn" ]] &&
    pass "per-case CSV header names the columns" || fail "per-case CSV header: $(head -1 "$CSV")"
  if awk -F, 'NR > 1 {
        for (r = 0; r < 3; r++) {
          c = 2 + 10 * r
          d = $c; h = $(c + 1); hp = $(c + 2); se = $(c + 3); sp = $(c + 4)
          ld = $(c + 5); lh = $(c + 6); tp = $(c + 7); fp = $(c + 8); fn = $(c + 9)
          if (d < 0 || d > 1 || h < 0 || h > 373.2 || hp < 0 || hp > 373.2 || se < 0 || se > 1 ||
              sp < 0 || sp > 1 || ld < 0 || ld > 1 || lh < 0 || lh > 374 || tp < 0 || fp < 0 ||
              fn < 0) bad = 1
        }
        if (NF != 33) bad = 1
      } END { exit bad }' "$CSV"; then
    pass "metrics in range (Dice, sensitivity, specificity in [0, 1], 0 <= HD95 <= 373.13, lesion-wise HD95 <= 374)"
  else
    fail "metrics out of range: $(cat "$CSV")"
  fi
  summary=$WORK/eval/scores_summary.csv
  [[ $(cut -d, -f1 "$summary" 2>/dev/null | tr '\n' ' ') == "statistic mean std median q25 q75 " ]] &&
    pass "summary CSV has mean, std, median, q25, q75" || fail "summary CSV: $(cat "$summary")"
  grep -q "mean Dice over WT, TC, ET" "$WORK/evaluate.out" && grep -q "^ET " "$WORK/evaluate.out" &&
    pass "printed summary table" || fail "no summary table in: $(cat "$WORK/evaluate.out")"
fi
must_pass evaluate_window evaluate --pred "$WORK/pred_window" --data "$HOLDOUT" \
  --csv "$WORK/eval_window.csv"

# Ground truth against itself: Dice 1, HD95 0 everywhere (every 4th case has an empty ET).
mkdir -p "$WORK/perfect"
for i in $(seq -f %03g 1 $CASES); do
  cp "$DATA/BraTS20_Training_$i/BraTS20_Training_${i}_seg.nii.gz" \
     "$WORK/perfect/BraTS20_Training_$i.nii.gz"
done
if must_pass evaluate_perfect evaluate --pred "$WORK/perfect" --data "$DATA"; then
  awk -F, 'NR > 1 {
        for (r = 0; r < 3; r++) {
          c = 2 + 10 * r
          if ($c != 1 || $(c + 1) != 0 || $(c + 2) != 0 || $(c + 5) != 1 || $(c + 6) != 0 ||
              $(c + 8) != 0 || $(c + 9) != 0) bad = 1
        }
        if ($32 != 1 || $33 != 1) bad = 1
      } END { exit bad }' "$WORK/perfect/evaluation.csv" &&
    pass "ground truth scores Dice 1, HD95 0, lesion-wise too (default CSV in --pred)" ||
    fail "ground truth against itself: $(cat "$WORK/perfect/evaluation.csv")"
fi

must_fail evaluate_missing 1 "missing prediction" evaluate --pred "$PRED" --data "$DATA"
must_pass evaluate_only_predicted evaluate --pred "$PRED" --data "$DATA" --only-predicted \
  --csv "$WORK/only.csv"
mkdir -p "$WORK/empty"
must_fail evaluate_empty 1 "holds no predictions" evaluate --pred "$WORK/empty" --data "$DATA"
must_fail evaluate_no_data 1 "no BraTS case" evaluate --pred "$PRED" --data "$WORK/empty"
# A prediction on another grid (a 16^3 phantom's labels named as case 001).
"$BIN" phantom --out "$WORK/other" --cases 1 --size 16 16 16 >/dev/null 2>&1
mkdir -p "$WORK/wrong_shape"
cp "$WORK/other/BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz" \
   "$WORK/wrong_shape/BraTS20_Training_001.nii.gz"
must_fail evaluate_shape 1 "16 x 16 x 16" evaluate --pred "$WORK/wrong_shape" --data "$DATA" \
  --only-predicted
# Labels of the other convention (3 for ET in BraTS 2020 data).
if [[ $have_nibabel -eq 1 ]]; then
  mkdir -p "$WORK/wrong_geometry" "$WORK/wrong_labels"
  "$PYTHON" - "$DATA/BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz" "$WORK" <<'PY'
import sys, nibabel as nib, numpy as np
seg = nib.load(sys.argv[1]); work = sys.argv[2]
labels = np.asarray(seg.dataobj).astype(np.uint8)
affine = seg.affine.copy(); affine[0, 3] += 5.0
nib.save(nib.Nifti1Image(labels, affine, seg.header), f"{work}/wrong_geometry/BraTS20_Training_001.nii.gz")
relabelled = labels.copy(); relabelled[labels == 4] = 3
nib.save(nib.Nifti1Image(relabelled, seg.affine, seg.header), f"{work}/wrong_labels/BraTS20_Training_001.nii.gz")
PY
  must_fail evaluate_geometry 1 "another geometry" evaluate --pred "$WORK/wrong_geometry" \
    --data "$DATA" --only-predicted
  must_fail evaluate_labels 1 "label 3" evaluate --pred "$WORK/wrong_labels" --data "$DATA" \
    --only-predicted
fi

# ---------------------------------------------------------------------------------------------
step "ensemble"
if must_pass ensemble ensemble --checkpoints "$RUN/latest.safetensors" \
     "$WORK/run_straight/latest.safetensors" --train-data "$DATA" --data "$HOLDOUT" \
     --out "$WORK/ensemble"; then
  must_pass evaluate_ensemble evaluate --pred "$WORK/ensemble" --data "$HOLDOUT" \
    --csv "$WORK/eval_ensemble.csv"
fi

finish brats_e2e
