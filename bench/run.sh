#!/bin/sh
# bench/run.sh — dlc against PyTorch and ONNX Runtime on this machine, in one
# run, on the same data, batch and thread count (one), as ratios.
#
#   bench/run.sh                 # every measurement REPS=5 times
#   REPS=1 bench/run.sh          # a quick look
#   MODELS=mlp bench/run.sh      # one model (default: mlp lenet5)
#   INTEROP=1 bench/run.sh       # also move trained weights dlc <-> PyTorch
#
# Measured (each REPS times; the table gives the median and min-max):
#   peak      this core's FP32 FMA rate (bench/peak_fma.c, cc -O2
#             -march=native: independent FMA chains), the CPU model from
#             /proc/cpuinfo and the vector ISA;
#   train     samples/mlp.dl and samples/lenet5.dl at batch 64 on 12,800
#             Fashion-MNIST images (200 batches), one epoch a repetition:
#             dlc train --backend=c and --backend=jit against PyTorch (the
#             same network, loss and optimizer; bench/torch_bench.py);
#             samples per second of CPU time (bench/cpu_epochs.py reads the
#             CPU time of dlc's threads at each epoch line; the first epoch
#             is the warm-up), wall-clock figures kept in out/bench/;
#   infer     batch-1 latency, batch-64 and batch-256 throughput of the C
#             dlc emits (--max N=BATCH, cc -O3 -march=native,
#             bench/infer_time.c) against PyTorch (eval mode, no autograd)
#             and ONNX Runtime (npm onnxruntime-node on the ONNX file dlc
#             export writes of the same network, one intra-op thread,
#             bench/ort_time.js); process CPU time per call.  Node's cost of
#             one call (a one-op model) is printed beside the batch-1 rows;
#   matmul    a 512x512x512 product through dlc's kernels (bench/matmul_bench.c);
#   threads   dlc train --threads 1 and 2 (JIT) at batch 256, alternating,
#             wall clock (and samples per CPU second: what the second
#             thread costs in work).
# GFLOP/s are samples/s times the model's FLOPs per example (dlc check -O0:
# the training step's, or the forward pass's), as a fraction of the measured peak.
# Ratios are dlc's speed over the peer's (> 1: dlc is faster; for latency
# the peer's time over dlc's).  Results: out/bench/results.txt (every
# value), out/bench/table.txt, and the plot out/bench/bench.svg.
#
# PyTorch is Debian's python3-torch with OpenBLAS; this machine's
# environment may set OPENBLAS_CORETYPE (AVX2 kernels only) and
# OPENBLAS_L2_SIZE: they are unset for PyTorch's command only, so OpenBLAS
# picks its best kernels, and the kernel it ran is printed.  OpenMP and
# OpenBLAS are held to one thread like dlc and ONNX Runtime.
#
# Not part of the test suite, and it gates nothing.  Times on a shared
# machine are noisy: CPU time leaves out most of the other work's share,
# the load average is printed before and after, and only the ratios of one
# run carry over to another machine.
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
MODELS=${MODELS:-"mlp lenet5"}
case $REPS in '' | *[!0-9]* | 0) echo "bench/run.sh: REPS must be a positive integer" >&2; exit 2 ;; esac
for m in $MODELS; do
  case $m in
    mlp | lenet5) ;;
    *) echo "bench/run.sh: no benchmark for model $m (MODELS: mlp, lenet5)" >&2; exit 2 ;;
  esac
done
./scripts/setup.sh
# PyTorch, and OpenBLAS for its matrix products (without it Debian's torch
# falls back to the reference BLAS, about ten times slower); Node and npm
# for ONNX Runtime (Debian's, unless a node with its own npm is there).
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
for p in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "install ok installed" ||
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
./scripts/build.sh build
ORT=out/onnx_check # shared with scripts/onnx_check.sh
if [ ! -d "$ORT/node_modules/onnxruntime-node" ]; then
  mkdir -p "$ORT"
  # --ignore-scripts: the install script fetches CUDA libraries; the CPU
  # library is inside the package.
  (cd "$ORT" && npm install --no-audit --no-fund --ignore-scripts onnxruntime-node >/dev/null)
fi
DATA=/usr/share/datasets/fashion-mnist
OUT=out/bench
RES=$OUT/results.txt
mkdir -p "$OUT"

# 12,800 training images as npy (200 batches of 64, 50 of 256), the same
# for every system (bench/compare.sh makes the same files).
if [ ! -f "$OUT/sub_x.npy" ]; then
  /usr/bin/python3 - "$DATA" "$OUT" <<'EOF'
import gzip, sys
import numpy as np
data, out = sys.argv[1], sys.argv[2]
with gzip.open(f"{data}/train-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:12800]
with gzip.open(f"{data}/train-labels-idx1-ubyte.gz") as f:
    y = np.frombuffer(f.read(), np.uint8, offset=8)[:12800]
np.save(f"{out}/sub_x.npy", (x / 255.0).astype(np.float32))
np.save(f"{out}/sub_y.npy", y.astype(np.int64))
EOF
fi
NSUB=12800
SUB="npy:$OUT/sub_x.npy,$OUT/sub_y.npy"

# row MODEL MEASURE SYSTEM UNIT VALUES... -> one line of results.txt
row() { echo "$*" >> "$RES"; }
# values KEY FILE -> the values after KEY on its line
values() { sed -n "s/^$1 //p" "$2"; }
# flops MODEL "forward"|"training step" -> FLOPs per example (dlc check)
# The model's FLOPs, counted on the untiled program (-O0): the tiles'
# clamped last rows and padded lanes compute more than the model asks,
# and GFLOP/s counts only what it asks.
flops() {
  ./build/dlc check "samples/$1.dl" -O0 | sed -n "s/^$2: \([0-9.]*\) \([kMG]*\)FLOP per example/\1 \2/p" |
    awk '{ m = $2 == "k" ? 1e3 : $2 == "M" ? 1e6 : $2 == "G" ? 1e9 : 1; printf "%.0f", $1 * m }'
}

: > "$RES"
row "# date $(date -u '+%Y-%m-%d %H:%M UTC')"
row "# load_before $(cut -d' ' -f1-3 /proc/loadavg)"
row "# reps $REPS"
row "# dlc $(git rev-parse --short HEAD)"

echo "== peak FMA rate of one core"
cc -std=c99 -O2 -march=native bench/peak_fma.c -o "$OUT/peak_fma"
"$OUT/peak_fma" "$REPS" > "$OUT/peak.txt"
cat "$OUT/peak.txt"
row "# cpu_model $(values cpu_model "$OUT/peak.txt")"
row "# vector_isa $(values vector_isa "$OUT/peak.txt")"
row "# peak_gflops $(values peak_gflops "$OUT/peak.txt")"
row "- peak fma GFLOP/s $(values peak_runs_gflops "$OUT/peak.txt")"
row "# ort_version $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$ORT/node_modules/onnxruntime-node/package.json")"

echo "== ONNX Runtime's cost of one call through Node (a one-op model)"
printf 'model one\ninput x: f32[N, 1]\noutput y = relu(x)\n' > "$OUT/one.dl"
./build/dlc export "$OUT/one.dl" -o "$OUT/one.onnx"
NODE_PATH="$PWD/$ORT/node_modules" node bench/ort_time.js "$OUT/one.onnx" 1 1 "$REPS" > "$OUT/ort_floor.txt"
row "- call_floor ort us $(values us_per_call "$OUT/ort_floor.txt")"

for m in $MODELS; do
  case $m in
    mlp) dims=784 ;;
    *) dims=1,28,28 ;;
  esac
  row "# flops_forward_$m $(flops "$m" forward)"
  row "# flops_train_$m $(flops "$m" "training step")"

  echo "== $m: training at batch 64 (one epoch of $NSUB images a repetition)"
  for be in c jit; do
    /usr/bin/python3 bench/cpu_epochs.py "$NSUB" ./build/dlc train "samples/$m.dl" --backend=$be \
      --batch 64 --epochs $((REPS + 1)) --val-split 0 --data "$SUB" > "$OUT/train_${m}_$be.txt"
    row "$m train_b64 dlc_$be samples/s $(values cpu_samples_per_s "$OUT/train_${m}_$be.txt")"
    row "$m train_b64_wall dlc_$be samples/s $(values wall_samples_per_s "$OUT/train_${m}_$be.txt")"
  done
  echo "== $m: PyTorch (training, then inference)"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    /usr/bin/python3 bench/torch_bench.py "$m" "$OUT/sub_x.npy" "$OUT/sub_y.npy" "$REPS" 64 1,64,256 > "$OUT/torch_$m.txt"
  row "# openblas_core $(values openblas_core "$OUT/torch_$m.txt")"
  row "# torch_version $(values torch_version "$OUT/torch_$m.txt")"
  row "$m train_b64 pytorch samples/s $(values cpu_samples_per_s "$OUT/torch_$m.txt")"
  row "$m train_b64_wall pytorch samples/s $(values wall_samples_per_s "$OUT/torch_$m.txt")"

  echo "== $m: inference, emitted C and ONNX Runtime"
  ./build/dlc export "samples/$m.dl" --seed 0 -o "$OUT/$m.onnx"
  for b in 1 64 256; do
    row "$m infer_b$b pytorch us/call $(sed -n "s/^infer_us_per_call $b //p" "$OUT/torch_$m.txt")"
    d="$OUT/c_${m}_n$b"
    mkdir -p "$d"
    ./build/dlc "samples/$m.dl" --max N=$b -o "$d/$m.c"
    cc -O3 -march=native -I"$d" -DMODEL="$m" -DMODEL_H="\"$m.h\"" \
      bench/infer_time.c "$d/$m.c" -lm -o "$d/infer_time"
    "$d/infer_time" $b "$REPS" > "$d/time.txt"
    row "$m infer_b$b dlc_c us/call $(values us_per_call "$d/time.txt")"
    NODE_PATH="$PWD/$ORT/node_modules" node bench/ort_time.js "$OUT/$m.onnx" "$dims" $b "$REPS" > "$OUT/ort_${m}_$b.txt"
    row "$m infer_b$b ort us/call $(values us_per_call "$OUT/ort_${m}_$b.txt")"
  done

  echo "== $m: training at batch 256 with 1 and 2 threads (JIT, wall clock)"
  # A run of two epochs per repetition (the first the warm-up), the thread
  # counts alternating so that the machine's load drifts over both alike.
  for t in 1 2; do : > "$OUT/threads_${m}_$t.txt"; done
  for _ in $(seq "$REPS"); do
    for t in 1 2; do
      /usr/bin/python3 bench/cpu_epochs.py "$NSUB" ./build/dlc train "samples/$m.dl" --threads $t \
        --batch 256 --epochs 2 --val-split 0 --data "$SUB" >> "$OUT/threads_${m}_$t.txt"
    done
  done
  for t in 1 2; do
    row "$m train_b256_threads dlc_jit_t$t samples/s $(values wall_samples_per_s "$OUT/threads_${m}_$t.txt" | tr '\n' ' ')"
    row "$m train_b256_threads_cpu dlc_jit_t$t samples/s $(values cpu_samples_per_s "$OUT/threads_${m}_$t.txt" | tr '\n' ' ')"
  done
done

echo "== a 512x512x512 matmul through dlc's kernels"
d="$OUT/mm"
mkdir -p "$d"
printf 'model mm\ninput x: f32[N, 512]\noutput y = dense(x, 512, bias=false)\n' > "$d/mm.dl"
./build/dlc "$d/mm.dl" --max N=512 -o "$d/mm.c"
cc -O3 -march=native -I"$d" bench/matmul_bench.c "$d/mm.c" -lm -o "$d/mm_bench"
g=""
for _ in $(seq "$REPS"); do g="$g $("$d/mm_bench" | sed -n 's/^matmul_512_gflops //p')"; done
row "- matmul512 dlc_c GFLOP/s$g"

row "# load_after $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${INTEROP:-0}" = 1 ]; then
  echo "== weights between dlc and PyTorch"
  ./build/dlc train samples/mlp.dl --epochs 1 --save "$OUT/mlp1.safetensors" > /dev/null
  /usr/bin/python3 bench/torch_interop.py ./build/dlc "$OUT/mlp1.safetensors" "$DATA" "$OUT"
fi
echo
/usr/bin/python3 bench/report.py "$RES" "$OUT/bench.svg" | tee "$OUT/table.txt"
