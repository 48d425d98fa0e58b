#!/bin/sh
# bench/dist_scaling.sh — data-parallel training of samples/mlp.dl with 1,
# 2 and 4 processes of mpirun (--oversubscribe: more processes than cores
# share them), STEPS optimizer steps of the global batch 64 (default 200).
#
# For each P: the wall time of the run, the CPU time of all its processes
# (user + system, from the rusage of mpirun's children), and dlc's own
# figures of the exchange: MPI_Allreduce calls, bytes each process sent
# into them per step, and the wall time per step spent in them (which
# includes waiting for the slowest process).  P = 1 is `dlc train
# --distributed` without mpirun, a world of one (the split step, no
# exchange).  Not part of the test suite; needs dlc built with MPI.
set -eu
cd "$(dirname "$0")/.."
dpkg-query -W -f='${Status}' time 2>/dev/null | grep -q "install ok installed" || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
}
./scripts/build.sh build
STEPS=${STEPS:-200}
OUT=out/bench
mkdir -p "$OUT"
root=""
[ "$(id -u)" -eq 0 ] && root="--allow-run-as-root"
printf '%-3s %10s %10s %10s %14s %16s\n' P wall_s cpu_s calls KB/step/proc allreduce_ms/step
for p in 1 2 4; do
  log="$OUT/dist_$p.txt"
  if [ "$p" -eq 1 ]; then
    launch=""
  else
    launch="mpirun --oversubscribe $root -np $p"
  fi
  /usr/bin/time -f 'time %e %U %S' -o "$OUT/dist_$p.time" \
    $launch build/dlc train samples/mlp.dl --distributed --steps "$STEPS" --quiet >"$log" 2>&1 || {
    echo "P=$p failed:"; cat "$log"; exit 1; }
  set -- $(sed -n 's/^time //p' "$OUT/dist_$p.time")
  wall=$1 cpu=$(awk "BEGIN { print $2 + $3 }")
  line=$(grep '^distributed:' "$log")
  calls=$(echo "$line" | sed -n 's/.* \([0-9]*\) allreduce calls.*/\1/p')
  kb=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) KB a step).*/\1/p')
  ms=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) ms a step).*/\1/p')
  printf '%-3s %10s %10s %10s %14s %16s\n' "$p" "$wall" "$cpu" "$calls" "$kb" "$ms"
  grep '^test:' "$log" | sed 's/^/    /'
done
