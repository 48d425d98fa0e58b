#!/bin/sh
# samples/text_classify.sh [dlc train flags...] — the quote classifier end
# to end: makes the token files (samples/text_classify.py data), trains
# samples/text_cnn.dl, runs it on the held-out quotes with dlc run,
# and prints their accuracy.  Files go to out/text_classify/.  DLC names
# the dlc to use (default build/dlc).
set -eu
cd "$(dirname "$0")/.."
dlc=${DLC:-build/dlc}
py=/usr/bin/python3
out=out/text_classify
$py samples/text_classify.py data $out
$dlc train samples/text_cnn.dl --save $out/text_cnn.safetensors "$@"
$dlc run samples/text_cnn.dl --backend=jit --params $out/text_cnn.safetensors \
  --input tokens=$out/test_x.npy --output logits=$out/test_logits.npy
$py samples/text_classify.py accuracy $out/test_logits.npy $out
