#!/bin/sh
# scripts/setup.sh — installs the Debian 12 packages dlc needs, if missing.
# Safe to run again: it only calls apt-get when a package is absent.
set -eu

PACKAGES="gcc g++ meson ninja-build pkg-config llvm-19-dev libffi-dev \
libcriterion-dev zlib1g-dev libedit-dev clang-19 libclang-rt-19-dev libomp-19-dev dataset-fashion-mnist \
python3-numpy protobuf-c-compiler libprotobuf-c-dev libonnx-dev python3-onnx fortunes \
libonnx-testdata openmpi-bin libopenmpi-dev"
# libonnx-testdata: ONNX's backend node tests (scripts/onnx_node_tests.sh, and
# the suite's onnx_node subset, which is skipped without it).
# openmpi-bin libopenmpi-dev: dlc train --distributed (meson option mpi) and
# the suite's dist tests, which run mpirun -np 2.

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
