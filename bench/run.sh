#!/bin/sh
# bench/run.sh — dlc against PyTorch on this machine, in one run, as ratios.
#
#   training: samples/mlp.dl for EPOCHS epochs (default 2), samples/s, with
#             dlc's C and JIT backends and with PyTorch (same network,
#             optimizer, batch, data), one thread each;
#   inference: batch-1 latency and batch-64 throughput of the emitted C
#             (cc -O3 -march=native) against PyTorch eval mode;
#   kernels:  GFLOP/s of the emitted forward pass against the machine's
#             FP32 peak (2 cores of AVX-512 FMA, ~227 GFLOP/s per core).
# PyTorch runs with OPENBLAS_CORETYPE unset (its best kernels on this
# host) and one thread, like dlc.  Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
# PyTorch, and OpenBLAS for its matrix products: without it Debian's torch
# falls back to the reference BLAS, about ten times slower here.
for p in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "install ok installed" || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null
  }
done
./scripts/build.sh build
EPOCHS=${EPOCHS:-2}
DATA=/usr/share/datasets/fashion-mnist
OUT=out/bench
mkdir -p "$OUT"

val() { sed -n "s/^$1 //p" "$2"; }
samples_per_s() { sed -n 's/.*(\([0-9.]*\) samples\/s).*/\1/p' "$1" | awk '{s+=$1; n++} END {if (n) printf "%.1f", s/n}'; }

echo "== training samples/mlp.dl, $EPOCHS epochs"
for be in c jit; do
  ./build/dlc train samples/mlp.dl --epochs "$EPOCHS" --backend=$be > "$OUT/dlc_$be.txt"
  echo "dlc ($be): $(samples_per_s "$OUT/dlc_$be.txt") samples/s; $(grep '^test' "$OUT/dlc_$be.txt")"
done
env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
  /usr/bin/python3 bench/torch_mlp.py "$DATA" "$EPOCHS" 1 > "$OUT/torch.txt"
echo "pytorch: $(val train_samples_per_s "$OUT/torch.txt") samples/s; test accuracy $(val test_accuracy "$OUT/torch.txt")"

echo "== inference of the emitted C (built for batch 1, and for batches up to 64)"
: > "$OUT/dlc_infer.txt"
for n in 1 64; do
  mkdir -p "$OUT/n$n"
  ./build/dlc samples/mlp.dl --max N=$n -o "$OUT/n$n/mlp.c"
  cc -std=c99 -O3 -march=native -I"$OUT/n$n" bench/infer_bench.c "$OUT/n$n/mlp.c" -lm -o "$OUT/n$n/infer_bench"
  "$OUT/n$n/infer_bench" >> "$OUT/dlc_infer.txt"
done
cat "$OUT/dlc_infer.txt"

echo "== weights between dlc and PyTorch"
./build/dlc train samples/mlp.dl --epochs 1 --save "$OUT/mlp1.safetensors" > /dev/null
/usr/bin/python3 bench/torch_interop.py ./build/dlc "$OUT/mlp1.safetensors" "$DATA" "$OUT"

echo "== ratios (dlc / pytorch; > 1 means dlc is faster)"
awk -v c="$(samples_per_s "$OUT/dlc_c.txt")" -v j="$(samples_per_s "$OUT/dlc_jit.txt")" \
    -v t="$(val train_samples_per_s "$OUT/torch.txt")" \
    -v l1="$(val latency_b1_us "$OUT/dlc_infer.txt")" -v tl1="$(val latency_b1_us "$OUT/torch.txt")" \
    -v b64="$(val throughput_b64_per_s "$OUT/dlc_infer.txt")" -v tb64="$(val throughput_b64_per_s "$OUT/torch.txt")" \
    -v gf="$(val gflops_b64 "$OUT/dlc_infer.txt")" 'BEGIN {
  printf "training throughput, C backend:   %.2fx\n", c / t
  printf "training throughput, JIT backend: %.2fx\n", j / t
  printf "inference latency, batch 1:       %.2fx (dlc %.1f us, pytorch %.1f us)\n", tl1 / l1, l1, tl1
  printf "inference throughput, batch 64:   %.2fx\n", b64 / tb64
  printf "forward pass at batch 64: %.1f GFLOP/s = %.1f%% of one core'"'"'s FP32 peak (227 GFLOP/s)\n", gf, 100 * gf / 227
}'
