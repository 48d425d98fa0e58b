#!/bin/sh
# scripts/onnx_node_tests.sh [onnx-node-tests options] — ONNX's backend node
# tests (Debian's libonnx-testdata) through dlc's import on the reference
# interpreter, the emitted C and the LLVM JIT: a table of pass / fail /
# unsupported per op and backend, every failure with its reason, and the
# totals over the float tests and over all tests (docs/onnx.md).  Outside
# the default suite (a few minutes: every test compiles C); the suite runs a
# subset (tests/test_onnx_import.c, onnx_node).
#   ./scripts/onnx_node_tests.sh                      every test, every backend
#   ./scripts/onnx_node_tests.sh --backends interp    the interpreter only (seconds)
#   ./scripts/onnx_node_tests.sh -v test_reduce_      the reduce tests, with the reasons of the unsupported
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh build
exec ./build/onnx/onnx-node-tests "$@"
