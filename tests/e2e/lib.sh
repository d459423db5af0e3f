# Helpers shared by revox's end-to-end test scripts (tests/e2e/*.sh, tests/dist/*.sh), to be
# sourced after the script sets WORK (its scratch folder) and BIN (the revox-brats binary).
# Each check prints one "ok: ..." or "FAIL: ..." line; `failures` counts the failed ones and
# the script ends with `finish`.
#   step TEXT                            a heading
#   pass TEXT / fail TEXT                record a result
#   run NAME ARGS...                     $BIN ARGS >$WORK/NAME.out 2>$WORK/NAME.err; a
#                                        subcommand "not implemented in this build" fails
#   must_pass NAME ARGS...               run; exit 0 required (else the output's tail shows)
#   must_fail NAME RC TEXT ARGS...       run; exit RC and TEXT in stderr required
#   finish NAME                          prints the summary, exits 1 on any failure

failures=0
step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

run() {
  local name=$1; shift
  "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local rc=$?
  if grep -q "not implemented in this build" "$WORK/$name.err"; then
    echo "FAIL: '$*': the subcommand is not implemented in this build"
    failures=$((failures + 1))
  fi
  return $rc
}

must_pass() {
  local name=$1
  if run "$@"; then
    pass "$name"
    return 0
  fi
  fail "$name exited $? : ${*:2}"
  tail -n 20 "$WORK/$name.out" "$WORK/$name.err"
  return 1
}

must_fail() {
  local name=$1 want_rc=$2 text=$3; shift 3
  run "$name" "$@"
  local rc=$?
  if [[ $rc -ne $want_rc ]]; then
    fail "$name: expected exit $want_rc, got $rc: $*"
    tail -n 5 "$WORK/$name.out" "$WORK/$name.err"
  elif ! grep -qF -- "$text" "$WORK/$name.err"; then
    fail "$name: stderr lacks '$text': $(head -c 400 "$WORK/$name.err")"
  else
    pass "$name: $(head -n 1 "$WORK/$name.err" | cut -c1-200)"
  fi
}

finish() {
  echo
  if [[ $failures -gt 0 ]]; then
    echo "$1: $failures check(s) FAILED"
    exit 1
  fi
  echo "$1: all checks passed"
  exit 0
}
