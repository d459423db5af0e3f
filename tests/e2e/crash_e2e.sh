#!/usr/bin/env bash
# Crash safety of revox-brats train, through the real binary, at tiny sizes (a few minutes on
# 2 cores; docs/trainer.md "Crash safety"):
#   1. kill -9 before the first checkpoint, during a step, during validation, while a
#      checkpoint is being written (test hook), and at random moments; then `train --resume`
#      until done: the final checkpoint's weights and Adam state are bit-identical to an
#      uninterrupted run's (compare_checkpoints with tolerance 0) and so is the loss column;
#   2. a file size limit (ulimit -f) while writing a checkpoint and a prediction: exit 1, an
#      error naming the file and "file size limit", the previous checkpoint intact, no
#      temporary file left; a full tmpfs too when one can be mounted (root);
#   3. a NaN gradient or loss (test hook REVOX_TEST_NONFINITE_AT_STEP): exit 1 naming the
#      step, epoch and tensor, the last checkpoint untouched; --on-nonfinite skip skips and
#      counts the step;
#   4. two trainings on one run directory: the second is refused naming train.lock and the
#      holder's pid; after kill -9 the stale lock is taken over with a note.
#
#   tests/e2e/crash_e2e.sh path/to/revox-brats path/to/compare_checkpoints   (ctest e2e.crash)
set -uo pipefail

BIN=${1:?usage: crash_e2e.sh revox-brats compare_checkpoints}
COMPARE=${2:?usage: crash_e2e.sh revox-brats compare_checkpoints}
[[ -x "$BIN" ]] || { echo "FAIL: '$BIN' is not an executable"; exit 1; }
[[ -x "$COMPARE" ]] || { echo "FAIL: '$COMPARE' is not an executable"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_crash_e2e.XXXXXX")
BG=()  # background trainings, killed on exit
cleanup() {
  for pid in "${BG[@]}"; do kill -9 "$pid" 2>/dev/null; done
  [[ -n ${MOUNTED:-} ]] && umount "$MOUNTED" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
export OMP_NUM_THREADS=2

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATA=$WORK/data
"$BIN" phantom --out "$DATA" --cases 5 --size 24 24 16 --seed 3 >/dev/null 2>&1 ||
  { echo "FAIL: phantom"; exit 1; }
EPOCHS=4
BASE=(train --data "$DATA" --preset tiny --seed 11 --threads 2 --set samples_per_epoch=6)
TRAIN=("${BASE[@]}" --epochs $EPOCHS)

# waits (up to 60 s) until the command "$@" succeeds
wait_for() {
  for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done
  return 1
}
# the metadata "epoch" of a checkpoint (read from its JSON header)
epoch_of() { head -c 65536 "$1" | grep -ao '"epoch":"[0-9]*"' | head -n 1 | grep -o '[0-9]*'; }
# columns epoch and loss of log.csv
losses() { tail -n +2 "$1/log.csv" | cut -d, -f1,2; }

same_as_reference() {  # NAME RUN
  local name=$1 run=$2
  if "$COMPARE" "$WORK/ref/latest.safetensors" "$run/latest.safetensors" 0 \
       >"$WORK/$name.compare" 2>&1; then
    pass "$name: final weights and Adam state bit-identical to the uninterrupted run"
  else
    fail "$name: final checkpoint differs from the uninterrupted run: $(head -c 600 "$WORK/$name.compare")"
  fi
  if [[ "$(losses "$run")" == "$(losses "$WORK/ref")" ]]; then
    pass "$name: log.csv losses equal the uninterrupted run's"
  else
    fail "$name: losses [$(losses "$run" | tr '\n' ' ')] vs [$(losses "$WORK/ref" | tr '\n' ' ')]"
  fi
}

# resumes RUN until it has all epochs (at most 6 tries)
resume_until_done() {  # NAME RUN
  local name=$1 run=$2
  for i in 1 2 3 4 5 6; do
    if run "${name}_resume$i" "${TRAIN[@]}" --out "$run" --resume; then
      pass "$name: train --resume finished"
      return 0
    fi
  done
  fail "$name: train --resume did not finish: $(tail -n 3 "$WORK/${name}_resume6.err")"
}

# ---------------------------------------------------------------------------------------------
step "uninterrupted reference run"
must_pass ref "${TRAIN[@]}" --out "$WORK/ref" || { finish crash_e2e; }
[[ $(epoch_of "$WORK/ref/latest.safetensors") == "$EPOCHS" ]] &&
  pass "reference checkpoint has epoch $EPOCHS" || fail "reference checkpoint epoch"

# ---------------------------------------------------------------------------------------------
step "kill -9, then --resume: bit-identical to the uninterrupted run"
# (a) before the first checkpoint: --resume starts the run again from epoch 1 (test hook: the
# process kills itself while the first checkpoint is being written, so no checkpoint exists;
# a kill at a fixed time is not used here: on a fast machine the tiny run may finish first)
R=$WORK/kill_early
REVOX_TEST_KILL_IN_CHECKPOINT_WRITE=1 "$BIN" "${TRAIN[@]}" --out "$R" >"$WORK/kill_early.out" 2>&1
rc=$?
[[ $rc -eq 137 ]] && pass "kill_early: killed (exit 137)" || fail "kill_early: exit $rc"
if [[ -e $R/latest.safetensors ]]; then
  fail "kill_early: a checkpoint exists after the kill in the first checkpoint write"
else
  pass "killed before the first checkpoint"
fi
resume_until_done kill_early "$R"
grep -q "starting it again from epoch 1\|taking over" "$WORK/kill_early_resume1.out" &&
  pass "kill_early: resume says what it does" ||
  fail "kill_early: no note in: $(head -c 400 "$WORK/kill_early_resume1.out")"
same_as_reference kill_early "$R"

# (b) during a step of epoch 2 (some time after the first checkpoint appeared)
R=$WORK/kill_step
"$BIN" "${TRAIN[@]}" --out "$R" >"$WORK/kill_step.out" 2>&1 &
pid=$!; BG+=($pid)
wait_for test -s "$R/latest.safetensors" && sleep 0.$((RANDOM % 3 + 1))
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
resume_until_done kill_step "$R"
same_as_reference kill_step "$R"

# (b2) between the last checkpoint and its log.csv (a kill there leaves log.csv one epoch
# short; the checkpoint holds the whole history): --resume of the finished run writes the log
# again
R=$WORK/kill_before_log
cp -r "$WORK/ref" "$R"
head -n -1 "$WORK/ref/log.csv" >"$R/log.csv"
[[ "$(losses "$R")" != "$(losses "$WORK/ref")" ]] &&
  pass "kill_before_log: log.csv is an epoch short" || fail "kill_before_log: log.csv not cut"
resume_until_done kill_before_log "$R"
same_as_reference kill_before_log "$R"

# (c) during validation (test hook: in the 2nd validation, after its first hold-out case)
R=$WORK/kill_validation
REVOX_TEST_KILL_IN_VALIDATION=2 "$BIN" "${TRAIN[@]}" --out "$R" >"$WORK/kill_validation.out" 2>&1
rc=$?
[[ $rc -eq 137 ]] && pass "kill_validation: killed (exit 137)" || fail "kill_validation: exit $rc"
[[ $(epoch_of "$R/latest.safetensors") == 1 ]] && pass "kill_validation: latest is epoch 1" ||
  fail "kill_validation: latest is epoch '$(epoch_of "$R/latest.safetensors")'"
resume_until_done kill_validation "$R"
same_as_reference kill_validation "$R"

# (d) while latest.safetensors is being replaced (test hook: after the temporary file is
# complete, before the rename) in epoch 2
R=$WORK/kill_write
REVOX_TEST_KILL_IN_CHECKPOINT_WRITE=2 "$BIN" "${TRAIN[@]}" --out "$R" >"$WORK/kill_write.out" 2>&1
rc=$?
[[ $rc -eq 137 ]] && pass "kill_write: killed (exit 137)" || fail "kill_write: exit $rc"
temps=$(ls -A "$R" | grep -c '^\.latest\.safetensors\.tmp\.')
[[ $temps -eq 1 ]] && pass "kill_write: the killed writer left its temporary file" ||
  fail "kill_write: $temps temporary files"
[[ $(epoch_of "$R/latest.safetensors") == 1 ]] &&
  pass "kill_write: latest.safetensors is still the complete epoch-1 checkpoint" ||
  fail "kill_write: latest is epoch '$(epoch_of "$R/latest.safetensors")'"
resume_until_done kill_write "$R"
grep -q "left by a checkpoint write that was interrupted" "$WORK/kill_write_resume1.out" &&
  pass "kill_write: resume removed the temporary file and said so" ||
  fail "kill_write: no note about the temporary file"
[[ $(ls -A "$R" | grep -c '\.tmp\.') -eq 0 ]] && pass "kill_write: no temporary file left" ||
  fail "kill_write: temporary files left: $(ls -A "$R")"
same_as_reference kill_write "$R"

# (e) twice at random moments
R=$WORK/kill_random
for k in 1 2; do
  extra=(); [[ -e $R/latest.safetensors || -e $R/config.json ]] && extra=(--resume)
  "$BIN" "${TRAIN[@]}" --out "$R" "${extra[@]}" >"$WORK/kill_random$k.out" 2>&1 &
  pid=$!; BG+=($pid)
  wait_for test -s "$R/train.lock"
  sleep $((RANDOM % 4)).$((RANDOM % 10))
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  echo "note: random kill $k at epoch $(epoch_of "$R/latest.safetensors" 2>/dev/null || echo none)"
done
resume_until_done kill_random "$R"
same_as_reference kill_random "$R"

# ---------------------------------------------------------------------------------------------
step "file size limit (ulimit -f) while writing a checkpoint and a prediction"
R=$WORK/full
must_pass full_epoch1 "${BASE[@]}" --out "$R" --epochs 1
cp "$R/latest.safetensors" "$WORK/full_latest_before.safetensors"
size_kb=$(( $(stat -c %s "$R/latest.safetensors") / 1024 ))
limit=$(( size_kb / 2 ))
( ulimit -f $limit; exec "$BIN" "${BASE[@]}" --out "$R" --epochs 2 --resume ) \
  >"$WORK/full_ckpt.out" 2>"$WORK/full_ckpt.err"
rc=$?
[[ $rc -eq 1 ]] && pass "checkpoint under ulimit -f $limit: exit 1" || fail "checkpoint under ulimit: exit $rc"
grep -q "file size limit" "$WORK/full_ckpt.err" && grep -q "\.safetensors'" "$WORK/full_ckpt.err" &&
  pass "checkpoint: $(head -n 1 "$WORK/full_ckpt.err" | cut -c1-240)" ||
  fail "checkpoint: message: $(head -c 400 "$WORK/full_ckpt.err")"
cmp -s "$R/latest.safetensors" "$WORK/full_latest_before.safetensors" &&
  pass "checkpoint: the previous latest.safetensors is intact" ||
  fail "checkpoint: latest.safetensors changed"
[[ $(ls -A "$R" | grep -c '\.tmp') -eq 0 ]] && pass "checkpoint: no partial file left" ||
  fail "checkpoint: partial files: $(ls -A "$R")"
must_pass full_resume_after "${BASE[@]}" --out "$R" --epochs 2 --resume

( ulimit -f 8; exec "$BIN" predict --checkpoint "$R/latest.safetensors" --data "$R/holdout" \
    --out "$WORK/pred_full" --save-probabilities ) >"$WORK/full_pred.out" 2>"$WORK/full_pred.err"
rc=$?
[[ $rc -eq 1 ]] && pass "predict under ulimit -f 8: exit 1" || fail "predict under ulimit: exit $rc"
grep -q "file size limit" "$WORK/full_pred.err" && grep -q "nii.gz" "$WORK/full_pred.err" &&
  pass "predict: $(grep "file size limit" "$WORK/full_pred.err" | head -n 1 | cut -c1-300)" ||
  fail "predict: message: $(head -c 400 "$WORK/full_pred.err")"
[[ $(ls -A "$WORK/pred_full" 2>/dev/null | grep -c '\.tmp\|^\.') -eq 0 ]] &&
  pass "predict: no temporary or partial file left" ||
  fail "predict: left: $(ls -A "$WORK/pred_full")"

# A real full disk: a 1 MiB tmpfs, where this runs as root and may mount (skipped otherwise).
T=$WORK/tmpfs
mkdir -p "$T"
if [[ $(id -u) -eq 0 ]] && mount -t tmpfs -o size=1m tmpfs "$T" 2>/dev/null; then
  MOUNTED=$T
  cp -r "$R" "$T/run" 2>/dev/null
  # leave 32 KiB: enough for the lock, config and logs, not for a checkpoint
  free=$(df --output=avail -B 4096 "$T" | tail -n 1)
  dd if=/dev/zero of="$T/filler" bs=4k count=$((free - 8)) 2>/dev/null
  before=$(md5sum <"$T/run/latest.safetensors")
  run full_tmpfs "${BASE[@]}" --out "$T/run" --epochs 3 --resume
  rc=$?
  [[ $rc -eq 1 ]] && grep -qi "no space left" "$WORK/full_tmpfs.err" &&
    pass "full tmpfs: $(grep -i "no space" "$WORK/full_tmpfs.err" | head -n 1 | cut -c1-240)" ||
    fail "full tmpfs: exit $rc: $(head -c 400 "$WORK/full_tmpfs.err")"
  [[ $(md5sum <"$T/run/latest.safetensors") == "$before" ]] &&
    pass "full tmpfs: previous checkpoint intact" || fail "full tmpfs: checkpoint changed"
  umount "$T"; MOUNTED=
else
  echo "skip: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); ulimit -f covered it"
fi

# ---------------------------------------------------------------------------------------------
step "divergence guard"
R=$WORK/nan
must_pass nan_epoch1 "${BASE[@]}" --out "$R" --epochs 1
cp "$R/latest.safetensors" "$WORK/nan_before.safetensors"
REVOX_TEST_NONFINITE_AT_STEP=8 run nan_grad "${BASE[@]}" --out "$R" --epochs 2 --resume
rc=$?
[[ $rc -eq 1 ]] && pass "NaN gradient: exit 1" || fail "NaN gradient: exit $rc"
if grep -q "diverged at step 8 (epoch 2" "$WORK/nan_grad.err" && grep -q "the gradient of '" "$WORK/nan_grad.err" &&
   grep -q "learning_rate=" "$WORK/nan_grad.err" && grep -q "on-nonfinite skip" "$WORK/nan_grad.err"; then
  pass "NaN gradient: $(head -c 300 "$WORK/nan_grad.err")"
else
  fail "NaN gradient: message: $(head -c 500 "$WORK/nan_grad.err")"
fi
cmp -s "$R/latest.safetensors" "$WORK/nan_before.safetensors" &&
  pass "NaN gradient: latest.safetensors untouched" || fail "NaN gradient: checkpoint changed"
REVOX_TEST_NONFINITE_AT_STEP=7:loss run nan_loss "${BASE[@]}" --out "$R" --epochs 2 --resume
rc=$?
[[ $rc -eq 1 ]] && grep -q "diverged at step 7 (epoch 2, step 1 of 6): the loss of sample" "$WORK/nan_loss.err" &&
  pass "NaN loss: $(head -c 200 "$WORK/nan_loss.err")" ||
  fail "NaN loss: exit $rc: $(head -c 400 "$WORK/nan_loss.err")"
REVOX_TEST_NONFINITE_AT_STEP=8 run nan_skip "${BASE[@]}" --out "$R" --epochs 2 --resume --on-nonfinite skip
rc=$?
[[ $rc -eq 0 ]] && pass "--on-nonfinite skip: the run finished" || fail "--on-nonfinite skip: exit $rc"
grep -q "skipped step 8 (epoch 2, step 2 of 6)" "$WORK/nan_skip.out" &&
  pass "--on-nonfinite skip: the skip is reported" || fail "no skip line in $(head -c 400 "$WORK/nan_skip.out")"
skipped=$(awk -F, 'NR > 1 { s += $9 } END { print s }' "$R/log.csv")
[[ $(head -n 1 "$R/log.csv" | cut -d, -f9) == skipped_steps && $skipped -eq 1 ]] &&
  pass "log.csv counts 1 skipped step" || fail "log.csv skipped_steps: $skipped: $(cat "$R/log.csv")"
must_fail nan_bad_option 2 "--on-nonfinite" "${BASE[@]}" --out "$WORK/never" --on-nonfinite maybe

# ---------------------------------------------------------------------------------------------
step "two trainings on one run directory"
R=$WORK/locked
"$BIN" "${BASE[@]}" --out "$R" --epochs 50 >"$WORK/locked_first.out" 2>&1 &
first=$!; BG+=($first)
wait_for test -s "$R/train.lock"
must_fail locked_second 1 "train.lock" "${BASE[@]}" --out "$R" --epochs 50 --resume
grep -q "pid $first" "$WORK/locked_second.err" && pass "the refusal names the holder's pid $first" ||
  fail "the refusal does not name pid $first: $(head -c 300 "$WORK/locked_second.err")"
kill -0 $first 2>/dev/null && pass "the first training still runs" || fail "the first training died"
wait_for test -s "$R/latest.safetensors"
kill -9 $first; wait $first 2>/dev/null
run locked_takeover "${BASE[@]}" --out "$R" --epochs 2 --resume
rc=$?
[[ $rc -eq 0 ]] && grep -q "taking over the stale lock '.*train.lock' of pid $first" "$WORK/locked_takeover.out" &&
  grep -q "no longer running" "$WORK/locked_takeover.out" &&
  pass "stale lock taken over: $(grep "stale lock" "$WORK/locked_takeover.out" | cut -c1-200)" ||
  fail "stale lock: exit $rc: $(head -c 400 "$WORK/locked_takeover.out") $(head -c 300 "$WORK/locked_takeover.err")"
[[ ! -s $R/train.lock ]] && pass "a finished run leaves an empty lock file" || fail "lock file: $(cat "$R/train.lock")"
must_fail locked_bad 1 "" "${BASE[@]}" --out "$WORK/nolock" --set no_such_key=1
[[ -e $WORK/nolock ]] && fail "a run that failed to start left $WORK/nolock" ||
  pass "a run that failed to start left no run directory (nor lock file)"

finish crash_e2e
