#!/bin/sh
# bench/dist_scaling.sh — data-parallel training of samples/mlp.dl with 1,
# 2 and 4 processes of mpirun (--oversubscribe: more processes than cores
# share them), STEPS optimizer steps of the global batch 64 (default 200)
# in gradient buckets of BUCKET_KB KiB (default 4096, one bucket here),
# each configuration RUNS times (default 3), the median run printed;
# PROCS lists the process counts (default "1 2 4").
#
# For each P, with the gradients' sums overlapped with the backward pass
# (the default) and after it (--no-overlap): the wall time of the run, the
# CPU time of all its processes (user + system, from the rusage of
# mpirun's children), and dlc's own figures of the exchange: allreduce
# calls, bytes each process passed into them per step, and the wall time
# per step spent in them (starting, testing and waiting: what the
# backward pass did not hide, and the wait for the slowest process).
# P = 1 is `dlc train --distributed` without mpirun, a world of one (the
# split step, no exchange).  Not part of the test suite; needs dlc built
# with MPI.
set -eu
cd "$(dirname "$0")/.."
dpkg-query -W -f='${Status}' time 2>/dev/null | grep -q "install ok installed" || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
}
./scripts/build.sh build
STEPS=${STEPS:-200}
BUCKET_KB=${BUCKET_KB:-4096}
RUNS=${RUNS:-3}
OUT=out/bench
mkdir -p "$OUT"
root=""
[ "$(id -u)" -eq 0 ] && root="--allow-run-as-root"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-3s %-10s %8s %8s %7s %13s %17s\n' P sums wall_s cpu_s calls KB/step/proc allreduce_ms/step
for p in ${PROCS:-1 2 4}; do
  for mode in overlap after; do
    [ "$p" -eq 1 ] && [ "$mode" = after ] && continue
    flag=""
    [ "$mode" = after ] && flag="--no-overlap"
    launch=""
    [ "$p" -gt 1 ] && launch="mpirun --oversubscribe $root -np $p"
    : >"$OUT/dist_${p}_$mode.runs"
    r=1
    while [ "$r" -le "$RUNS" ]; do
      log="$OUT/dist_${p}_${mode}_$r.txt"
      /usr/bin/time -f 'time %e %U %S' -o "$log.time" \
        $launch build/dlc train samples/mlp.dl --distributed $flag --bucket-kb "$BUCKET_KB" --steps "$STEPS" --quiet >"$log" 2>&1 || {
        echo "P=$p $mode failed:"; cat "$log"; exit 1; }
      set -- $(sed -n 's/^time //p' "$log.time")
      line=$(grep '^distributed:' "$log")
      echo "$1 $(awk "BEGIN { print $2 + $3 }") $(echo "$line" | sed -n 's/.* \([0-9]*\) allreduce calls.*/\1/p') \
$(echo "$line" | sed -n 's/.*(\([0-9.]*\) KB a step).*/\1/p') \
$(echo "$line" | sed -n 's/.*(\([0-9.]*\) ms a step).*/\1/p')" >>"$OUT/dist_${p}_$mode.runs"
      r=$((r + 1))
    done
    # the median run by wall time
    set -- $(sort -n "$OUT/dist_${p}_$mode.runs" | sed -n "$(((RUNS + 1) / 2))p")
    printf '%-3s %-10s %8s %8s %7s %13s %17s\n' "$p" "$mode" "$1" "$2" "$3" "$4" "$5"
    ms=$(awk '{ print $5 }' "$OUT/dist_${p}_$mode.runs" | sort -n | tr '\n' ' ')
    echo "    allreduce ms/step of the $RUNS runs: $ms"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
