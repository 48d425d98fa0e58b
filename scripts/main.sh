#!/bin/sh
# scripts/main.sh — the main job: installs what is missing, builds dlc,
# trains samples/mlp.dl on Fashion-MNIST, emits its inference code as
# dependency-free C with the trained weights embedded, compiles that C
# with a small program and checks its accuracy on the test set; then emits
# the training step itself as C and trains again with no dlc at run time.
# Everything it writes goes to out/.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build
mkdir -p out
DATA=/usr/share/datasets/fashion-mnist

echo "== dlc check samples/mlp.dl"
./build/dlc check samples/mlp.dl

echo "== dlc train samples/mlp.dl"
./build/dlc train samples/mlp.dl --save out/mlp.safetensors --metrics out/mlp_metrics.csv

echo "== dlc samples/mlp.dl --embed-params out/mlp.safetensors -o out/mlp.c"
./build/dlc samples/mlp.dl --embed-params out/mlp.safetensors --max N=100 -o out/mlp.c
zcat "$DATA/t10k-images-idx3-ubyte.gz" > out/t10k-images-idx3-ubyte
zcat "$DATA/t10k-labels-idx1-ubyte.gz" > out/t10k-labels-idx1-ubyte
cc -std=c99 -O2 -Wall -Wextra -pedantic -Iout samples/classify.c out/mlp.c -lm -o out/classify
./out/classify out/t10k-images-idx3-ubyte out/t10k-labels-idx1-ubyte
echo "== the training step as plain C: dlc samples/mlp.dl --train -o out/mlp_train.c"
./build/dlc samples/mlp.dl --train -o out/mlp_train.c
cc -std=c11 -O2 -march=native -Iout -I. samples/train_main.c out/mlp_train.c build/runtime/libdlc_runtime.a -lz -lm -o out/train_main
./out/train_main "$DATA" out/mlp_train.init.safetensors 10 42
echo "== done: trained weights out/mlp.safetensors, C out/mlp.c out/mlp.h, metrics out/mlp_metrics.csv"
