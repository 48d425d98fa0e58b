#!/bin/sh
# bench/char_lstm.sh — samples/char_lstm.dl against PyTorch, in one run.
#
#   compile: the JIT of the whole training step (forward, loss, backward,
#            Adam) of the char LSTM with windows of T = 32 and T = 128: the
#            scan's body is compiled once, so the time must not grow with
#            T.  Measured as `dlc train --steps 1` on a small corpus (load,
#            compile, one step of batch 4), wall and CPU seconds, best of 3.
#   training: EPOCHS epochs (default 5) of samples/char_lstm.dl with dlc
#            (JIT) and of bench/torch_char_lstm.py (the same model, data,
#            optimizer and batch), one thread each: characters per second
#            and validation bits per character (val loss / ln 2).
# Not part of the test suite.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build
EPOCHS=${EPOCHS:-5}
CORPUS=/usr/share/games/fortunes/cookie
OUT=out/bench_char_lstm
mkdir -p "$OUT"

echo "== JIT compile of the training step (dlc train --steps 1, batch 4)"
head -c 20000 "$CORPUS" > "$OUT/small.txt"
for T in 32 128; do
  sed "s/N, 64/N, $T/g" samples/char_lstm.dl > "$OUT/char_lstm_t$T.dl"
  best=""
  for i in 1 2 3; do
    /usr/bin/time -f "%e %U" -o "$OUT/time.txt" ./build/dlc train "$OUT/char_lstm_t$T.dl" --data "text:$OUT/small.txt" \
      --steps 1 --batch 4 --epochs 1 > /dev/null
    t=$(cat "$OUT/time.txt")
    best=$(printf '%s\n%s\n' "$best" "$t" | grep . | sort -n | head -1)
  done
  echo "T = $T: $best (wall s, cpu s)"
done

echo "== training samples/char_lstm.dl, $EPOCHS epochs"
/usr/bin/time -f "%e %U" -o "$OUT/dlc_time.txt" ./build/dlc train samples/char_lstm.dl --epochs "$EPOCHS" \
  --save "$OUT/char_lstm.safetensors" > "$OUT/dlc.txt"
last=$(grep '^epoch' "$OUT/dlc.txt" | tail -1)
val=$(echo "$last" | sed -n 's/.*val loss \([0-9.]*\).*/\1/p')
windows=$(sed -n 's/^training char_lstm: \([0-9]*\) samples.*/\1/p' "$OUT/dlc.txt")
secs=$(grep '^epoch' "$OUT/dlc.txt" | sed -n 's/.*, \([0-9.]*\) s (.*/\1/p' | awk '{s+=$1} END {print s}')
echo "dlc: $(awk -v w="$windows" -v e="$EPOCHS" -v s="$secs" 'BEGIN {printf "%.0f", w * 64 * e / s}') chars/s;" \
  "val bpc $(awk -v v="$val" 'BEGIN {printf "%.4f", v / log(2)}') (val loss $val); wall/cpu s $(cat "$OUT/dlc_time.txt")"
env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/time -f "%e %U" -o "$OUT/torch_time.txt" \
  /usr/bin/python3 bench/torch_char_lstm.py "$CORPUS" "$EPOCHS" 1 > "$OUT/torch.txt"
echo "pytorch: $(sed -n 's/^train_chars_per_s //p' "$OUT/torch.txt") chars/s; val bpc $(sed -n 's/^val_bpc //p' "$OUT/torch.txt");" \
  "wall/cpu s $(cat "$OUT/torch_time.txt")"
echo "== a sample (temperature 0.8, seed 1)"
./build/dlc sample samples/char_lstm.dl --params "$OUT/char_lstm.safetensors" --prime "The " --length 300 \
  --temperature 0.8 --seed 1
