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
#          (frontend, every pipeline step, building, splitting, optimising
#          and compiling the LLVM module), thread CPU time of every thread,
#          so loading the data set and the step itself do not count;
#   llvm   the part of jit spent in LLVM (build + split + optimise + codegen);
#   path   the compile's critical path: jit with the parallel part counted
#          as its busiest compile thread (the JIT compiles the module in
#          parts on one thread per CPU, codegen/jit.c), i.e. the wall clock
#          the compile takes on an otherwise idle machine;
#   wall   the wall clock measured (the phases before LLVM as CPU time,
#          the LLVM work as wall time): on a machine shared with other
#          work this counts their time too, so path is the steadier figure.
#
# The JIT's threads: DLC_JIT_THREADS=N (default one per online CPU); with
# DLC_JIT_THREADS=1 path equals jit.  LLVM's share is most of jit: see the
# README's compile-time paragraph for the figures and what the pipeline
# does to keep them down.
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

# phases SAMPLE -> "jit llvm path wall" seconds from DLC_TIME_PHASES, or "- - - -"
# (llvm-thread lines total a compile thread's parts: counted in path only;
# the parts' own lines, llvm-part/-optimise/-codegen, in jit and llvm)
phases() {
  if DLC_TIME_PHASES=1 "$DLC" train "$1" --steps 1 --quiet > /dev/null 2> "$OUT/phases.txt"; then
    awk '/^time: / && $2 != "llvm-thread" { t += $3; if ($2 ~ /^llvm-/) l += $3
           if ($2 != "llvm-part" && $2 != "llvm-optimise" && $2 != "llvm-codegen") s += $3
           if ($2 !~ /^llvm-/) pre += $3 }
         /^time: llvm-thread / { if ($3 > m) m = $3 }
         /^wall: llvm / { w = $3 }
         END { if (!m) m = t - s; printf "%.3f %.3f %.3f %.3f\n", t, l, s + m, w ? pre + w : t }' "$OUT/phases.txt"
  else
    echo "- - - -"
  fi
}

if [ $# -eq 0 ]; then set -- samples/*.dl; fi
printf '%-16s %8s %8s %8s %8s %8s %8s\n' sample c obj jit llvm path wall
for s in "$@"; do
  name=$(basename "$s" .dl)
  c="" obj="" jit="" llvm="" path="" wall=""
  for i in $(seq "$RUNS"); do
    c="$c $(user_time "$DLC" "$s" -o "$OUT/$name.c")"
    obj="$obj $(user_time "$DLC" "$s" --emit=obj -o "$OUT/$name.o")"
    read -r pj pl pp pw <<EOF
$(phases "$s")
EOF
    jit="$jit $pj" llvm="$llvm $pl" path="$path $pp" wall="$wall $pw"
  done
  # shellcheck disable=SC2086
  printf '%-16s %8s %8s %8s %8s %8s %8s\n' "$name" "$(least $c)" "$(least $obj)" "$(least $jit)" "$(least $llvm)" \
    "$(least $path)" "$(least $wall)"
  if [ "${PHASES:-0}" = 1 ]; then sed 's/^/    /' "$OUT/phases.txt"; fi
done
