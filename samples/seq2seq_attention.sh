#!/bin/sh
# samples/seq2seq_attention.sh [dlc train flags...] — the date translator
# end to end: makes the sentence files (samples/seq2seq_attention.py
# data), trains samples/seq2seq_attention.dl with teacher forcing, then
# decodes the held-out sentences greedily with dlc run (ten passes, each
# feeding back the characters predicted so far), prints the exact-match
# accuracy and writes one sentence's attention weights as a PNG.  Files go
# to out/seq2seq/.  DLC names the dlc to use (default build/dlc).
set -eu
cd "$(dirname "$0")/.."
dlc=${DLC:-build/dlc}
py=/usr/bin/python3
out=out/seq2seq
$py samples/seq2seq_attention.py data $out
$dlc train samples/seq2seq_attention.dl --save $out/seq2seq_attention.safetensors "$@"
DLC=$dlc $py samples/seq2seq_attention.py decode $out/seq2seq_attention.safetensors $out
