#!/bin/sh
# scripts/oomtest.sh [BUILD_DIR] — the out-of-memory sweep without the
# suite's stride: every reader and writer, and `dlc check`, `dlc MODEL.dl
# -o out.c` and `dlc MODEL.dl --emit=obj` on every sample, each run once
# per allocation with that allocation failing (tests/test_oom.c,
# runtime/alloc.c).  BUILD_DIR defaults to build; give build-asan to run
# it under AddressSanitizer with LeakSanitizer on.  Ends with Criterion's
# "Synthesis:" line; exit status 0 when every run failed cleanly.
set -u
cd "$(dirname "$0")/.."
dir=${1:-build}
[ -x "$dir/tests/dlc-tests" ] || ./scripts/build.sh "$dir" || exit 1
ninja -C "$dir" >/dev/null || exit 1
start=$(date +%s)
log="$dir/oomtest-output.txt"
DLC_OOM_STRIDE=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  LSAN_OPTIONS=suppressions="$PWD/scripts/lsan.supp" \
  "./$dir/tests/dlc-tests" --filter 'oom*/*' -j"$(nproc 2>/dev/null || echo 2)" --verbose >"$log" 2>&1
rc=$?
grep -E '^\[(FAIL|----)\]|allocations|Synthesis' "$log"
echo "oomtest: $(($(date +%s) - start)) s in $dir (full output: $log)"
exit $rc
