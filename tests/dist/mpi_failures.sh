#!/usr/bin/env bash
# A failing rank must end the whole MPI job quickly, with a non-zero exit code and a message,
# instead of leaving the other ranks waiting forever in a collective:
#   throw  the last rank throws inside dist::run_or_abort -> MPI_Abort; the message names the
#          rank and the error
#   die    the last rank exits without MPI_Finalize -> the launcher ends the job
# Each run gets LIMIT seconds (`timeout`); longer counts as a hang.
#
#   tests/dist/mpi_failures.sh MPIEXEC path/to/revox_dist_mpi_check     (ctest:
#   dist.mpi.failing_rank_ends_the_job; the OMPI_* variables come from ctest)
set -uo pipefail

MPIEXEC=${1:?usage: mpi_failures.sh MPIEXEC MPI_CHECK}
CHECK=${2:?usage: mpi_failures.sh MPIEXEC MPI_CHECK}
LIMIT=60
WORK=$(mktemp -d "${TMPDIR:-/tmp}/revox_mpi_failures.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
failures=0

# expect_failure NAME TEXT ARGS...: the job exits non-zero within LIMIT s, its output has TEXT.
expect_failure() {
  local name=$1 text=$2; shift 2
  local start=$SECONDS
  timeout --kill-after=10 $LIMIT "$MPIEXEC" -n 2 "$CHECK" "$@" >"$WORK/$name.log" 2>&1
  local rc=$? elapsed=$((SECONDS - start))
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "FAIL: $name: the job hung (killed after $LIMIT s)"
    failures=$((failures + 1))
  elif [[ $rc -eq 0 ]]; then
    echo "FAIL: $name: the job exited 0"
    failures=$((failures + 1))
  elif ! grep -qF -- "$text" "$WORK/$name.log"; then
    echo "FAIL: $name: exit $rc, but the output lacks '$text'"
    failures=$((failures + 1))
  else
    echo "ok: $name: exit $rc after $elapsed s, output has '$text'"
  fi
  sed 's/^/    | /' "$WORK/$name.log" | head -n 30
}

expect_failure throw "mpi_check (rank 1 of 2): error: injected failure on the last rank" throw
expect_failure die "exits now without MPI_Finalize" die
# The surviving rank must not print that it went on.
if grep -q "was not ended" "$WORK/throw.log" "$WORK/die.log"; then
  echo "FAIL: a rank went on after the failure of another"
  failures=$((failures + 1))
fi

[[ $failures -eq 0 ]] && echo "mpi_failures: all passed" || echo "mpi_failures: $failures failed"
exit $((failures > 0))
