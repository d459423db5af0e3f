#!/usr/bin/env bash
# revox-brats train under mpirun, through the real binary, at tiny sizes:
#   1. equivalence: 2 processes x batch 1 train the same weights and Adam state (relative
#      1e-5; in practice identical) and log the same losses and hold-out Dice as 1 process
#      with batch 2 (gradients of 2 samples summed), with --check-replicas (the checksums of
#      the weights of both processes compared after every step); only rank 0 prints
#   2. --resume under mpirun continues exactly: weights equal to the uninterrupted run's;
#      2b. the same training from a preprocessed folder (2 loader workers per process, each
#      process mapping the cases it touches) gives the same weights as 1.
#   3. bad launches end with a clear message and a non-zero exit code instead of a hang:
#      processes that see different data (an MPMD launch), an error on rank 0 only (RUN_DIR
#      not empty), an error on every rank (no data)
#
#   tests/dist/brats_dist_e2e.sh MPIEXEC path/to/revox-brats path/to/compare_checkpoints
#   (ctest: e2e.dist.brats; the OMPI_* variables for root, oversubscription and shared
#   memory come from ctest, see tests/dist/CMakeLists.txt)
set -uo pipefail

MPIEXEC=${1:?usage: brats_dist_e2e.sh MPIEXEC revox-brats compare_checkpoints}
BIN=${2:?usage: brats_dist_e2e.sh MPIEXEC revox-brats compare_checkpoints}
COMPARE=${3:?usage: brats_dist_e2e.sh MPIEXEC revox-brats compare_checkpoints}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_dist_e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LIMIT=300  # seconds per run; longer counts as a hang

source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
# Every launch here is a whole command line (mpirun ...) under a time limit, with stdout and
# stderr in one log: this script's own run, must_pass and must_fail replace lib.sh's.

# run NAME CMD...: output in $WORK/NAME.log; returns the exit code (124/137: hung).
run() {
  local name=$1; shift
  timeout --kill-after=10 $LIMIT "$@" >"$WORK/$name.log" 2>&1
}
show() { sed 's/^/    | /' "$WORK/$1.log" | tail -n "${2:-15}"; }
must_pass() {
  local name=$1; shift
  run "$name" "$@"
  local rc=$?
  if [[ $rc -eq 0 ]]; then pass "$name"; return 0; fi
  fail "$name exited $rc: $*"; show "$name"; return 1
}
# must_fail NAME TEXT CMD...: exits non-zero (not a hang) and the output has TEXT.
must_fail() {
  local name=$1 text=$2; shift 2
  run "$name" "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    fail "$name: hung (killed after $LIMIT s)"; show "$name"
  elif [[ $rc -eq 0 ]]; then
    fail "$name: exited 0"; show "$name"
  elif ! grep -qF -- "$text" "$WORK/$name.log"; then
    fail "$name: exit $rc but the output lacks '$text'"; show "$name"
  else
    pass "$name: exit $rc, '$text'"
  fi
}
# Columns epoch,loss,dice_wt,dice_tc,dice_et,lr of log.csv (seconds and memory are rank 0's).
log_columns() { cut -d, -f1-6 "$1"; }

DATA=$WORK/data
OTHER=$WORK/other
"$BIN" phantom --out "$DATA" --cases 5 --size 24 24 16 --seed 7 >/dev/null 2>&1 ||
  { echo "FAIL: phantom"; exit 1; }
"$BIN" phantom --out "$OTHER" --cases 4 --size 24 24 16 --seed 8 >/dev/null 2>&1 ||
  { echo "FAIL: phantom"; exit 1; }
TRAIN=(train --data "$DATA" --preset tiny --set holdout_count=1 --seed 3 --threads 1)

# ---------------------------------------------------------------------------------------------
step "1. 2 processes x batch 1 == 1 process x batch 2"
if must_pass one_process "$BIN" "${TRAIN[@]}" --set batch_size=2 --epochs 3 --out "$WORK/one" &&
   must_pass two_processes "$MPIEXEC" -n 2 "$BIN" "${TRAIN[@]}" --epochs 3 --out "$WORK/two" \
     --check-replicas; then
  grep -qF "2 process(es) (mpi) x batch 1 = 2 samples per step" "$WORK/two_processes.log" &&
    pass "the run says it has 2 MPI processes" || fail "no '2 process(es) (mpi)' line"
  n=$(grep -c "^train: done" "$WORK/two_processes.log")
  [[ $n -eq 1 ]] && pass "only rank 0 prints" || fail "'train: done' printed $n times"
  grep -qF "in the all-reduce of the" "$WORK/two_processes.log" &&
    pass "the all-reduce time is reported" || fail "no all-reduce timing line"
  if "$COMPARE" "$WORK/one/latest.safetensors" "$WORK/two/latest.safetensors" 1e-5 \
       >"$WORK/compare.log" 2>&1; then
    pass "weights and Adam state: $(cat "$WORK/compare.log")"
  else
    fail "weights differ between 1 x batch 2 and 2 x batch 1"; show compare
  fi
  if [[ "$(log_columns "$WORK/one/log.csv")" == "$(log_columns "$WORK/two/log.csv")" ]]; then
    pass "log.csv: same losses and hold-out Dice"
  else
    fail "log.csv differs"
    diff <(log_columns "$WORK/one/log.csv") <(log_columns "$WORK/two/log.csv")
  fi
  cmp -s "$WORK/one/holdout_scores.csv" "$WORK/two/holdout_scores.csv" &&
    pass "holdout_scores.csv identical" || fail "holdout_scores.csv differs"
  for f in config.json split.json log.csv learning_curve.png latest.safetensors best.safetensors; do
    [[ -s $WORK/two/$f ]] || fail "the 2-process run did not write $f"
  done
  leftovers=$(find "$WORK/two" -name '*.tmp' | wc -l)
  [[ $leftovers -eq 0 ]] && pass "no temporary files left" || fail "$leftovers .tmp files left"
fi

# ---------------------------------------------------------------------------------------------
step "2. --resume under mpirun continues exactly"
if must_pass resume_part "$MPIEXEC" -n 2 "$BIN" "${TRAIN[@]}" --epochs 1 --out "$WORK/part" &&
   must_pass resume_rest "$MPIEXEC" -n 2 "$BIN" train --data "$DATA" --out "$WORK/part" \
     --resume --epochs 3 --threads 1; then
  if "$COMPARE" "$WORK/two/latest.safetensors" "$WORK/part/latest.safetensors" 0 \
       >"$WORK/compare_resume.log" 2>&1; then
    pass "resumed == uninterrupted: $(cat "$WORK/compare_resume.log")"
  else
    fail "the resumed run's weights differ from the uninterrupted run's"; show compare_resume
  fi
  [[ "$(log_columns "$WORK/two/log.csv")" == "$(log_columns "$WORK/part/log.csv")" ]] &&
    pass "log.csv of the resumed run matches" || fail "log.csv of the resumed run differs"
fi
# Resuming a 2-process checkpoint in 1 process says that the global batch changes.
if must_pass resume_one "$BIN" train --data "$DATA" --out "$WORK/part" --resume --epochs 4 \
     --threads 1; then
  grep -qF "written by 2 process(es), this run has 1" "$WORK/resume_one.log" &&
    pass "the change of process count is noted" || fail "no note about the process count"
fi

# ---------------------------------------------------------------------------------------------
step "2b. 2 processes on a preprocessed folder, 2 loader workers and a 1 MB cache each"
# Each process maps the cases it touches through its own cache; the weights equal the raw
# folder's single-process run with batch 2 (step 1).
if must_pass preprocess "$BIN" preprocess --data "$DATA" --out "$WORK/pre" --threads 2 &&
   must_pass two_preprocessed "$MPIEXEC" -n 2 "$BIN" train --data "$WORK/pre" --preset tiny \
     --set holdout_count=1 --seed 3 --threads 1 --epochs 3 --out "$WORK/two_pre" \
     --set loader.workers=2 --set loader.cache_mb=1; then
  grep -qF "preprocessed cases" "$WORK/two_preprocessed.log" &&
    pass "the processes read the index" || fail "no 'preprocessed cases' line"
  if "$COMPARE" "$WORK/one/latest.safetensors" "$WORK/two_pre/latest.safetensors" 1e-5 \
       >"$WORK/compare_pre.log" 2>&1; then
    pass "preprocessed under mpirun == raw in one process: $(cat "$WORK/compare_pre.log")"
  else
    fail "the preprocessed 2-process run's weights differ"; show compare_pre
  fi
fi

# ---------------------------------------------------------------------------------------------
step "3. bad launches end the job with a message"
must_fail different_data "sees other cases than process 0" \
  "$MPIEXEC" -n 1 "$BIN" "${TRAIN[@]}" --out "$WORK/mpmd" : \
             -n 1 "$BIN" train --data "$OTHER" --preset tiny --set holdout_count=1 --seed 3 \
             --threads 1 --out "$WORK/mpmd"
grep -qF "(rank 1 of 2)" "$WORK/different_data.log" &&
  pass "the message names rank 1" || fail "the message does not name the rank"
must_fail rank0_only "(rank 0 of 2): error: run directory" \
  "$MPIEXEC" -n 2 "$BIN" "${TRAIN[@]}" --out "$WORK/two"
must_fail no_data "does not exist" \
  "$MPIEXEC" -n 2 "$BIN" train --data "$WORK/nowhere" --preset tiny --out "$WORK/never"
[[ -e $WORK/never ]] && fail "a failed start created its RUN_DIR"

finish brats_dist_e2e
