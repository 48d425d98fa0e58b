#!/bin/sh
# samples/triplet.sh [dlc train flags...] — the triplet-loss sample end to
# end: makes the triplets (samples/triplet.py data), trains
# samples/triplet.dl, embeds a gallery of training images and the test set
# with dlc run, and prints the test accuracy of the nearest-neighbour
# classifier on the embeddings and on the raw pixels.  Files go to
# out/triplets/.  DLC names the dlc to use (default build/dlc).
set -eu
cd "$(dirname "$0")/.."
dlc=${DLC:-build/dlc}
py=/usr/bin/python3
out=out/triplets
$py samples/triplet.py data $out
$dlc train samples/triplet.dl --save $out/triplet.safetensors "$@"
for set in gallery test; do
  $dlc run samples/triplet.dl --backend=jit --params $out/triplet.safetensors \
    --input a=$out/${set}_x.npy --output ea=$out/${set}_e.npy
done
$py samples/triplet.py knn $out
