#!/usr/bin/env bash
# revox-brats preprocess through the real binary (docs/trainer.md "Real BraTS data"):
#   1. a clean run writes one case file per case and index.json;
#   2. kill -9 while a case file is complete under its temporary name (test hook), and at
#      random moments: nothing that looks finished is unfinished (no index.json before the
#      end; every case file under its final name is byte-identical to the clean run's), and
#      a rerun skips the finished cases and ends with exactly the clean run's files and index;
#   3. a broken case prints one line naming it and the file, the others are indexed, the exit
#      status is 1; --strict stops at it;
#   4. train from the preprocessed folder; a changed source file is refused, naming it.
#
#   tests/e2e/preprocess_e2e.sh path/to/revox-brats   (ctest e2e.preprocess)
set -uo pipefail

BIN=${1:?usage: preprocess_e2e.sh revox-brats}
[[ -x "$BIN" ]] || { echo "FAIL: '$BIN' is not an executable"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_preprocess_e2e.XXXXXX")
BG=()
cleanup() {
  for pid in "${BG[@]}"; do kill -9 "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
export OMP_NUM_THREADS=2

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RAW=$WORK/raw
"$BIN" phantom --out "$RAW" --cases 8 --size 128 128 96 --seed 4 >/dev/null 2>&1 ||
  { echo "FAIL: phantom"; exit 1; }

step "1. a clean run"
must_pass clean preprocess --data "$RAW" --out "$WORK/ref" --threads 2
n=$(ls "$WORK/ref/cases" | grep -c '\.safetensors$')
[[ $n -eq 8 ]] && pass "8 case files" || fail "expected 8 case files, found $n"
[[ -f $WORK/ref/index.json ]] && pass "index.json written" || fail "no index.json"
grep -q "ETA" "$WORK/clean.out" && pass "progress lines with ETA" || fail "no ETA in the output"

# Every case file under its final name must be byte-identical to the clean run's; no
# index.json may exist unless the run finished.
check_state() {
  local dir=$1 label=$2 bad=0
  for f in "$dir"/cases/*.safetensors; do
    [[ -e $f ]] || continue
    cmp -s "$f" "$WORK/ref/cases/$(basename "$f")" || { bad=1; fail "$label: $(basename "$f") differs from the clean run's"; }
  done
  [[ $bad -eq 0 ]] && pass "$label: every finished case file is complete"
}

step "2. kill -9 in the middle of writing a case file (hook), then at random moments"
OUT=$WORK/pre
REVOX_TEST_KILL_IN_PREPROCESS=3 "$BIN" preprocess --data "$RAW" --out "$OUT" --threads 1 \
  >"$WORK/hook.out" 2>&1
rc=$?
[[ $rc -eq 137 ]] && pass "killed by the hook (exit 137)" || fail "hook run exited $rc"
[[ ! -e $OUT/index.json ]] && pass "no index.json after the kill" || fail "index.json exists after a kill"
ls -a "$OUT/cases" | grep -q '\.tmp\.' && pass "the killed write left only a temporary file" ||
  fail "no temporary file: the hook did not stop a write"
done_files=$(ls "$OUT/cases" | grep -c '^BraTS.*\.safetensors$')
[[ $done_files -eq 2 ]] && pass "2 finished cases before the kill" || fail "expected 2 finished case files, found $done_files"
check_state "$OUT" "after the hook kill"
# Each random kill hits a fresh run (1.2 s for the 8 cases on one thread here) somewhere in
# its first second, then the folder is finished by a rerun and compared with the clean run.
mid_run=0
for k in 1 2 3 4 5 6; do
  KOUT=$WORK/kill$k
  "$BIN" preprocess --data "$RAW" --out "$KOUT" --threads 1 >"$WORK/random$k.out" 2>&1 &
  pid=$!
  BG+=("$pid")
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if grep -q "preprocess: done" "$WORK/random$k.out"; then
    pass "kill $k came after the end"
  elif [[ -e $KOUT/index.json ]]; then
    # Killed between writing the index and printing: the index must then be complete.
    cmp -s "$KOUT/index.json" "$WORK/ref/index.json" && pass "kill $k: index complete" ||
      fail "kill $k: an index.json exists that differs from the clean run's"
  else
    mid_run=$((mid_run + 1))
    pass "kill $k: mid-run, no index.json ($(ls "$KOUT/cases" 2>/dev/null | grep -c '^BraTS') finished cases)"
  fi
  check_state "$KOUT" "after random kill $k"
  must_pass "finish$k" preprocess --data "$RAW" --out "$KOUT" --threads 2
  cmp -s "$KOUT/index.json" "$WORK/ref/index.json" && pass "kill $k: the rerun ends with the clean run's index" ||
    fail "kill $k: index after the rerun differs"
  check_state "$KOUT" "kill $k, after the rerun"
done
[[ $mid_run -ge 1 ]] && pass "$mid_run of 6 random kills landed mid-run" ||
  echo "note: no random kill landed mid-run on this machine (the hook kill above did)"
must_pass rerun preprocess --data "$RAW" --out "$OUT" --threads 2
grep -q "already done" "$WORK/rerun.out" && pass "the rerun skipped finished cases" ||
  fail "the rerun redid everything"
check_state "$OUT" "after the rerun"
n=$(ls "$OUT/cases" | grep -c '\.safetensors$')
[[ $n -eq 8 ]] && pass "8 case files after the rerun" || fail "expected 8 case files, found $n"
ls -a "$OUT/cases" | grep -q '\.tmp\.' && fail "temporary files left after the rerun" ||
  pass "no temporary file left"
cmp -s "$OUT/index.json" "$WORK/ref/index.json" && pass "index.json identical to the clean run's" ||
  fail "index.json differs from the clean run's"

step "3. a broken case"
cp -r "$RAW" "$WORK/broken"
victim=$(ls "$WORK/broken" | sed -n 2p)
truncate -s 200 "$WORK/broken/$victim/${victim}_t2.nii.gz"
must_fail broken 1 "1 case(s) failed" preprocess --data "$WORK/broken" --out "$WORK/pb" --threads 2
grep -q "FAILED $victim: .*${victim}_t2.nii.gz" "$WORK/broken.out" &&
  pass "one line names the case and the file" || fail "no FAILED line naming $victim and its file: $(grep FAILED "$WORK/broken.out")"
python3 - "$WORK/pb/index.json" "$victim" <<'EOF' && pass "index: 7 cases, the broken one under failed" || fail "index of the broken run"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["cases"]) == 7, len(j["cases"])
assert [f["id"] for f in j["failed"]] == [sys.argv[2]], j["failed"]
EOF
must_fail strict 1 "--strict" preprocess --data "$WORK/broken" --out "$WORK/ps" --threads 1 --strict

step "4. training from the preprocessed folder"
must_pass train train --data "$OUT" --out "$WORK/run" --preset tiny --threads 2 --epochs 1 \
  --set loader.cache_mb=1
grep -q "preprocessed cases" "$WORK/train.out" && pass "train reads the index" || fail "train did not say it reads preprocessed cases"
touch -d "+1 hour" "$RAW/$victim/${victim}_flair.nii.gz"
must_fail stale 1 "${victim}_flair.nii.gz' of case $victim changed" \
  train --data "$OUT" --out "$WORK/run2" --preset tiny --threads 2 --epochs 1
[[ ! -e $WORK/run2 ]] && pass "the refused run left no run directory" || fail "run2 was created"
must_pass refresh preprocess --data "$RAW" --out "$OUT" --threads 2
grep -q "1 written, 7 already done" "$WORK/refresh.out" && pass "the rerun redid only the changed case" ||
  fail "refresh: $(grep 'done in' "$WORK/refresh.out")"

finish preprocess_e2e
