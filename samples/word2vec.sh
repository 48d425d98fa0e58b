#!/bin/sh
# samples/word2vec.sh [dlc train flags...] — the word2vec sample end to
# end: makes the (centre, context, negatives) files from the fortunes
# (samples/word2vec.py data), trains samples/word2vec.dl, and prints the
# nearest neighbours by cosine of a few frequent words in the trained
# table in_embed.weight.  Files go to out/word2vec/.  DLC names the dlc to
# use (default build/dlc).
set -eu
cd "$(dirname "$0")/.."
dlc=${DLC:-build/dlc}
py=/usr/bin/python3
out=out/word2vec
$py samples/word2vec.py data $out
$dlc train samples/word2vec.dl --save $out/word2vec.safetensors "$@"
$py samples/word2vec.py neighbours $out/word2vec.safetensors $out
