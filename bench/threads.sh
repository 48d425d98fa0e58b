#!/bin/sh
# bench/threads.sh — training throughput with 1 and 2 threads (--threads),
# samples/mlp.dl and samples/lenet5.dl at batch 256 (BATCH), one epoch a
# run, REPS runs each (default 5), alternating the thread counts; prints
# each run's samples/s (wall time: threads need it), then the median and
# the range, and the ratio of the medians.  Run it on a quiet machine: the
# load average is printed before and after.  On a machine shared with
# other work, RT=1 runs dlc under `chrt -f 1` (real-time FIFO, root only):
# its two threads then have the two cores for the run's few seconds, as on
# a quiet machine, whatever else is runnable.  BACKEND=c measures the
# emitted C's OpenMP threads instead of the JIT's pool (--backend=c).
# Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh build
REPS=${REPS:-5}
BATCH=${BATCH:-256}
MODELS=${MODELS:-"mlp lenet5"}
BACKEND=${BACKEND:-jit}
PRIO=""
[ "${RT:-0}" = 1 ] && PRIO="chrt -f 1"
OUT=out/bench
mkdir -p "$OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $MODELS; do
  for t in 1 2; do : > "$OUT/threads_${m}_$t.txt"; done
  for r in $(seq "$REPS"); do
    for t in 1 2; do
      $PRIO ./build/dlc train "samples/$m.dl" --backend="$BACKEND" --batch "$BATCH" --epochs 1 --threads "$t" |
        sed -n 's/.*(\([0-9.]*\) samples\/s).*/\1/p' >> "$OUT/threads_${m}_$t.txt"
    done
  done
  for t in 1 2; do
    sort -n "$OUT/threads_${m}_$t.txt" | awk -v m="$m" -v t="$t" '{v[NR] = $1} END {
      printf "%s, %d thread(s): median %.0f samples/s (min %.0f, max %.0f, %d runs)\n", m, t, v[int((NR + 1) / 2)], v[1], v[NR], NR }'
  done
  a=$(sort -n "$OUT/threads_${m}_1.txt" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  b=$(sort -n "$OUT/threads_${m}_2.txt" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  awk -v m="$m" -v a="$a" -v b="$b" 'BEGIN { printf "%s: 2 threads / 1 thread = %.2fx (medians)\n", m, b / a }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
