#!/bin/sh
# scripts/test.sh — installs what is missing, builds dlc twice (plain, and
# with AddressSanitizer + UndefinedBehaviorSanitizer), runs the whole
# Criterion suite on both builds, runs each fuzz target for a few seconds,
# and ends with one line:
#   N passed, N failed
set -u
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
./scripts/build.sh build || exit 1
./scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || exit 1

jobs=$(nproc 2>/dev/null || echo 2)
total_pass=0
total_fail=0
status=0
for dir in build build-asan; do
  echo "== tests ($dir)"
  log="$dir/test-output.txt"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
    LSAN_OPTIONS=suppressions="$PWD/scripts/lsan.supp" \
    "./$dir/tests/dlc-tests" -j"$jobs" >"$log" 2>&1
  rc=$?
  grep -E '^\[(FAIL|----)\]|Synthesis' "$log" | grep -v '^\[----\]   $' | tail -40
  line=$(grep 'Synthesis:' "$log" | tail -1)
  pass=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  fail=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*Crashing: \([0-9]*\).*/\1 \2/p')
  if [ -z "$pass" ]; then
    echo "$dir: the suite did not finish (exit $rc)"
    pass=0
    fail="1 0"
  fi
  set -- $fail
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + $1 + $2))
  # A sanitizer report that did not fail its test (a leak found as a
  # worker exits) still fails the run.
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
    echo "$dir: sanitizer report in $log:"
    grep -E -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" | head -40
    total_fail=$((total_fail + 1))
  fi
  [ "$rc" -eq 0 ] || status=1
done
# Fuzz smoke: every libFuzzer target of fuzz/ for a few seconds
# (scripts/fuzz.sh); each target's run counts as one pass or one fail.
echo "== fuzz smoke (build-fuzz)"
for t in $(./scripts/fuzz.sh --list); do
  if ./scripts/fuzz.sh "$t" 3; then
    total_pass=$((total_pass + 1))
  else
    total_fail=$((total_fail + 1))
  fi
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && exit $status
exit 1
