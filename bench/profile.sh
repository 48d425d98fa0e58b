#!/bin/sh
# bench/profile.sh — the hottest kernels of the C dlc emits, by perf.
#
#   bench/profile.sh                  # samples/mlp.dl and samples/lenet5.dl
#   MODELS=lenet5 BATCH=256 bench/profile.sh
#
# For each model: the inference pass at batch BATCH (default 64; the
# emitted C built with -g and -ffp-contract=fast, as the C backend builds
# it: under -std=c99 alone gcc does not fuse a * b + c into an fma, and
# the profile would show each tile's fmas as a multiply and an add;
# timed by bench/infer_time.c) and two epochs
# of training at batch 64 with the C backend (dlc train --backend=c, the
# generated C built with CC="cc -g" and kept with DLC_KEEP_TEMP=1), each
# recorded with perf record and split by kernel (bench/kernel_profile.py:
# the kernel comment of the emitted C above each sampled line).  The
# training profile covers the whole process, so the share of the loader
# and compiler is what is left of 100% in model.so.  Then the same
# training on the JIT, with DLC_PERF_MAP=1 (the JIT writes
# /tmp/perf-PID.map, which names its kernels' functions for perf) and
# --dump-after=schedule (which names the kernels), split by kernel by
# bench/jit_profile.py; its shares are of the samples in the JIT's code.
# Recordings under out/bench/prof/.  Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
MODELS=${MODELS:-"mlp lenet5"}
BATCH=${BATCH:-64}
TOP=${TOP:-10}
if ! command -v perf >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
./scripts/build.sh build
OUT=out/bench/prof
rm -rf "$OUT"
mkdir -p "$OUT"
if [ ! -f out/bench/sub_x.npy ]; then
  echo "bench/profile.sh: out/bench/sub_x.npy is missing: run REPS=1 bench/run.sh once" >&2
  exit 1
fi
for m in $MODELS; do
  d="$OUT/$m"
  mkdir -p "$d/tmp"
  ./build/dlc "samples/$m.dl" --max N="$BATCH" -o "$d/$m.c"
  cc -std=c99 -O3 -march=native -ffp-contract=fast -fno-math-errno -g -I"$d" -DMODEL="$m" -DMODEL_H="\"$m.h\"" \
    bench/infer_time.c "$d/$m.c" -lm -o "$d/infer_time"
  perf record -q -o "$d/infer.data" "$d/infer_time" "$BATCH" 20 > /dev/null 2>&1
  echo "== $m: inference at batch $BATCH, emitted C"
  /usr/bin/python3 bench/kernel_profile.py "$d/infer.data" "$d/infer_time" "$d/$m.c" "$TOP"
  DLC_KEEP_TEMP=1 TMPDIR="$PWD/$d/tmp" CC="cc -g" perf record -q -o "$d/train.data" \
    ./build/dlc train "samples/$m.dl" --backend=c --batch 64 --epochs 2 --val-split 0 \
    --data "npy:out/bench/sub_x.npy,out/bench/sub_y.npy" > /dev/null 2>&1
  so=$(ls "$d"/tmp/dlc-*/model.so)
  echo "== $m: training at batch 64, C backend"
  /usr/bin/python3 bench/kernel_profile.py "$d/train.data" "$so" "$(dirname "$so")/model.c" "$TOP"
  DLC_PERF_MAP=1 perf record -q -o "$d/jit.data" \
    ./build/dlc train "samples/$m.dl" --backend=jit --batch 64 --epochs 2 --val-split 0 \
    --data "npy:out/bench/sub_x.npy,out/bench/sub_y.npy" --dump-after=schedule > /dev/null 2> "$d/jit.dump"
  echo "== $m: training at batch 64, JIT"
  /usr/bin/python3 bench/jit_profile.py "$d/jit.data" "$d/jit.dump" "$TOP"
done
