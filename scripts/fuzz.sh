#!/bin/sh
# scripts/fuzz.sh [TARGET|all] [SECONDS] — builds the libFuzzer targets of
# fuzz/ with clang-19 (-fsanitize=fuzzer,address,undefined, in build-fuzz/)
# and runs TARGET, or every target one after the other, for SECONDS each
# (default 60).  `scripts/fuzz.sh --list` names the targets.
#
# Each run starts from the committed seeds (fuzz/corpus/KIND) and keeps
# what it learns in build-fuzz/corpus/TARGET, so a later run goes on from
# there; the dictionary is fuzz/dict/KIND.dict.  A crash, leak, undefined
# behaviour, timeout (10 s) or memory blow-up (2 GB) leaves its input in
# build-fuzz/artifacts/ and fails the run.  One line per target:
#   fuzz TARGET: ok|FAILED, RUNS runs in SECONDS s, cov N ft N
# and the exit status is 0 only when every target ran clean.  The build
# directory is $DLC_FUZZ_DIR when set (default build-fuzz).
set -u
cd "$(dirname "$0")/.."
TARGETS="frontend compile npy safetensors idx csv checkpoint onnx"
if [ "${1:-}" = "--list" ]; then
  echo $TARGETS
  exit 0
fi
target=${1:-all}
seconds=${2:-60}
[ "$target" = all ] && target=$TARGETS
for t in $target; do
  case " $TARGETS " in *" $t "*) ;; *) echo "fuzz.sh: unknown target '$t' (one of: $TARGETS)" >&2; exit 2 ;; esac
done

dir=${DLC_FUZZ_DIR:-build-fuzz}
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-19 CXX=clang++-19 meson setup "$dir" -Dfuzz=true -Dtests=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
fi
ninja -C "$dir" >/dev/null || exit 1
mkdir -p "$dir/artifacts" "$dir/logs"

# The seed directory and dictionary of a target.
kind() {
  case $1 in
    frontend|compile) echo dl ;;
    checkpoint) echo checkpoint ;;
    *) echo "$1" ;;
  esac
}

status=0
for t in $target; do
  k=$(kind "$t")
  dict=fuzz/dict/$k.dict
  [ "$k" = checkpoint ] && dict=fuzz/dict/safetensors.dict
  mkdir -p "$dir/corpus/$t"
  log=$dir/logs/$t.log
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$dir/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=8192 -dict="$dict" -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" \
    "$dir/corpus/$t" "fuzz/corpus/$k" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ok, ${runs:-0} runs in $seconds s, ${cov:-no coverage line}"
  else
    echo "fuzz $t: FAILED (exit $rc), ${runs:-?} runs, ${cov:-no coverage line}; see $log"
    grep -m1 -E 'ERROR|runtime error|Test unit written' "$log"
    status=1
  fi
done
exit $status
