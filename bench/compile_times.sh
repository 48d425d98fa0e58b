#!/bin/sh
# bench/compile_times.sh [SAMPLE...] — how long dlc takes to compile each
# sample (default: every samples/*.dl), in CPU seconds, the least of
# RUNS runs (default 3):
#
#   c      `dlc S.dl -o S.c`: the user CPU time of the whole process;
#   obj    `dlc S.dl --emit=obj`: the same, the inference module optimised
#          and compiled by LLVM for this machine;
#   jit    the JIT compile of the training step (`dlc train S.dl --steps 1`
#          with DLC_TIME_PHASES set): the sum of the phases dlc reports
#          (frontend, every pipeline step, building, optimising and
#          compiling the LLVM module), thread CPU time, so loading the data
#          set and the step itself do not count;
#   llvm   the part of jit spent in LLVM (build + optimise + codegen).
#
# LLVM's share is most of jit: see the README's compile-time paragraph
# for the figures and what the pipeline does to keep them down.
#
# "-" marks a sample that does not train here (its data set is missing).
# With PHASES=1 the phase lines of the last jit run of each sample follow
# its row.  Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh build
DLC=${DLC:-build/dlc}
RUNS=${RUNS:-3}
OUT=out/bench_compile
mkdir -p "$OUT"

# least NUMBERS... -> the smallest, "-" if none is a number
least() { printf '%s\n' "$@" | grep -v '^-$' | sort -g | head -1 | grep . || echo -; }

# user_time CMD... -> user CPU seconds of CMD (or "-" if it fails)
user_time() {
  if /usr/bin/time -f "%U" -o "$OUT/time.txt" "$@" > /dev/null 2> "$OUT/err.txt"; then cat "$OUT/time.txt"; else echo -; fi
}

# phases SAMPLE -> "total llvm" seconds from DLC_TIME_PHASES, or "- -"
phases() {
  if DLC_TIME_PHASES=1 "$DLC" train "$1" --steps 1 --quiet > /dev/null 2> "$OUT/phases.txt"; then
    awk '/^time: / { t += $3; if ($2 ~ /^llvm-/) l += $3 } END { printf "%.3f %.3f\n", t, l }' "$OUT/phases.txt"
  else
    echo "- -"
  fi
}

if [ $# -eq 0 ]; then set -- samples/*.dl; fi
printf '%-16s %8s %8s %8s %8s\n' sample c obj jit llvm
for s in "$@"; do
  name=$(basename "$s" .dl)
  c="" obj="" jit="" llvm=""
  for i in $(seq "$RUNS"); do
    c="$c $(user_time "$DLC" "$s" -o "$OUT/$name.c")"
    obj="$obj $(user_time "$DLC" "$s" --emit=obj -o "$OUT/$name.o")"
    p=$(phases "$s")
    jit="$jit ${p% *}" llvm="$llvm ${p#* }"
  done
  # shellcheck disable=SC2086
  printf '%-16s %8s %8s %8s %8s\n' "$name" "$(least $c)" "$(least $obj)" "$(least $jit)" "$(least $llvm)"
  if [ "${PHASES:-0}" = 1 ]; then sed 's/^/    /' "$OUT/phases.txt"; fi
done
