#!/usr/bin/env bash
# Compile time of test translation units in two source trees, one file at a time (run it on an
# otherwise idle machine), with the flags the Release test target uses:
#   bash benchmarks/compile_time.sh OLD_TREE NEW_TREE test_a.cpp test_b.cpp ...
# Prints "file tree user_s sys_s wall_s" per compile. A tree is a checkout's root folder (a git
# worktree of an older commit, for before and after).
set -euo pipefail
old=$1 new=$2
shift 2
for f in "$@"; do
  for tree in "$old" "$new"; do
    if [[ ! -f $tree/tests/$f ]]; then echo "$f $tree missing"; continue; fi
    /usr/bin/time -o /tmp/revox_compile_time.$$ -f "%U %S %e" \
      g++ -std=gnu++17 -O3 -DNDEBUG -fopenmp -Wall -Wextra -Wpedantic -Wshadow -Wconversion \
      -Wno-sign-conversion -Werror -DREVOX_FIXTURE_DIR=\"$tree/tests/fixtures\" \
      -I"$tree/include" -I"$tree/tests" -isystem /usr/include/nifti \
      -c "$tree/tests/$f" -o /tmp/revox_compile_time.$$.o >/dev/null 2>&1 || echo "$f $tree FAILED"
    echo "$f $tree $(cat /tmp/revox_compile_time.$$)"
  done
done
rm -f /tmp/revox_compile_time.$$ /tmp/revox_compile_time.$$.o
