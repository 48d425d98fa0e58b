#!/bin/sh
# bench/compare.sh REV — this tree's dlc against the dlc of git revision REV,
# measured in one run on this machine, as ratios (> 1: this tree is faster).
#
#   bench/compare.sh 788d4d8            # three rounds, the best of each kept
#   ROUNDS=5 bench/compare.sh main~3
#
# REV is checked out into out/bench/base-REV (a detached git worktree) and
# built there.  Each round measures both trees back to back, alternating
# which goes first, and the best figure of each tree over the rounds is
# kept: the machine's load drifts, and the best run is the one least
# disturbed by it.  Measured:
#   train mlp c|jit    samples/mlp.dl, one epoch on 12,800 Fashion-MNIST
#                      images, samples/s (dlc train --backend=c|jit)
#   train lenet5 jit   samples/lenet5.dl, the same data
#   infer mlp b1       batch-1 latency of the emitted C (cc -O3 -march=native)
#   infer mlp b64      batch-64 throughput of the emitted C
#   infer lenet5 b64   the same for LeNet-5
# Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: bench/compare.sh REV" >&2; exit 2; }
REV=$1
ROUNDS=${ROUNDS:-3}
OUT=out/bench
BASE=$OUT/base-$(git rev-parse --short "$REV")
DATA=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"

./scripts/build.sh build >/dev/null
if [ ! -d "$BASE" ]; then
  git worktree add --detach "$BASE" "$REV" >/dev/null
fi
(cd "$BASE" && ./scripts/build.sh build >/dev/null)

# 12,800 training images as npy (200 batches of 64), the same for both trees.
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

samples_per_s() { sed -n 's/.*(\([0-9.]*\) samples\/s).*/\1/p' "$1" | tail -1; }

# train TREE MODEL BACKEND -> samples/s
train() {
  "$1/build/dlc" train "samples/$2.dl" --epochs 1 --val-split 0 --backend="$3" \
    --data "npy:$OUT/sub_x.npy,$OUT/sub_y.npy" > "$OUT/cmp_train.txt" 2>&1
  samples_per_s "$OUT/cmp_train.txt"
}

# infer TREE MODEL MAXN -> latency_b1_us or throughput_b64_per_s
infer() {
  d="$OUT/cmp_$2_$3"
  mkdir -p "$d"
  "$1/build/dlc" "samples/$2.dl" --max N="$3" -o "$d/$2.c"
  up=$(echo "$2" | tr a-z A-Z)
  cc -std=c99 -O3 -march=native -I"$d" -DMODEL_H="\"$2.h\"" -DFORWARD="$2_forward" -DMAXN="${up}_MAX_N" \
    bench/infer_bench.c "$d/$2.c" -lm -o "$d/bench"
  "$d/bench" | sed -n 's/^\(latency_b1_us\|throughput_b64_per_s\) //p'
}

measure() { # TREE -> one line of figures
  printf '%s %s %s %s %s %s\n' "$(train "$1" mlp c)" "$(train "$1" mlp jit)" "$(train "$1" lenet5 jit)" \
    "$(infer "$1" mlp 1)" "$(infer "$1" mlp 64)" "$(infer "$1" lenet5 64)"
}

: > "$OUT/cmp_new.txt"
: > "$OUT/cmp_old.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  if [ $((r % 2)) -eq 1 ]; then
    measure . >> "$OUT/cmp_new.txt"
    measure "$BASE" >> "$OUT/cmp_old.txt"
  else
    measure "$BASE" >> "$OUT/cmp_old.txt"
    measure . >> "$OUT/cmp_new.txt"
  fi
  echo "round $r of $ROUNDS done"
  r=$((r + 1))
done

echo "== this tree ($(git rev-parse --short HEAD)) against $REV, best of $ROUNDS rounds"
echo "   (columns: figure for this tree, for $REV, ratio; > 1 means this tree is faster)"
awk 'NR == FNR { for (i = 1; i <= NF; i++) if (FNR == 1 || (i == 4 ? $i < n[i] : $i > n[i])) n[i] = $i; next }
     { for (i = 1; i <= NF; i++) if (FNR == 1 || (i == 4 ? $i < o[i] : $i > o[i])) o[i] = $i }
     END {
       split("train mlp c (samples/s)|train mlp jit (samples/s)|train lenet5 jit (samples/s)|infer mlp b1 (us, lower is better)|infer mlp b64 (samples/s)|infer lenet5 b64 (samples/s)", name, "|")
       for (i = 1; i <= 6; i++)
         printf "%-38s %10.1f %10.1f   %.2fx\n", name[i], n[i], o[i], i == 4 ? o[i] / n[i] : n[i] / o[i]
     }' "$OUT/cmp_new.txt" "$OUT/cmp_old.txt"
