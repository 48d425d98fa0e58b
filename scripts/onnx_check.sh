#!/bin/sh
# scripts/onnx_check.sh [BUILD] — the numerical check of dlc export against
# ONNX Runtime, outside the test suite (it needs npm's onnxruntime-node).
#
# Installs onnxruntime-node into out/onnx_check (once), then:
#   * every sample (and tests/fixtures/onnx/all_ops.dl), exported with its initialisation from seed 0 (with batch
#     norm, and with --fold-bn), run by ONNX Runtime and by `dlc run` on the
#     same fixed inputs (the batch N = 3);
#   * every sample (and tests/fixtures/onnx/scan_small.dl) imported back
#     (dlc import) and run by `dlc run` on the same inputs: the round trip
#     dlc -> ONNX -> dlc ("NAME import");
#   * every case of tests/op_cases.h that has an ONNX form, exported from the
#     graph the test suite builds, run by ONNX Runtime on its fixture inputs
#     and compared with the reference interpreter's result (dlc run's default).
# Prints one row per case and ends with "N passed, N failed"; exits 1 when a
# case fails.  BUILD is the build directory (default build; it is built).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
out=out/onnx_check
./scripts/build.sh "$build"
mkdir -p "$out/samples" "$out/ops"
if [ ! -d "$out/node_modules/onnxruntime-node" ]; then
  # --ignore-scripts: the install script fetches CUDA libraries; the CPU
  # library is inside the package.
  (cd "$out" && npm install --no-audit --no-fund --ignore-scripts onnxruntime-node >/dev/null)
fi

manifest="$out/samples.txt"
: > "$manifest"
for dl in samples/*.dl tests/fixtures/onnx/*.dl; do
  name=$(basename "$dl" .dl)
  dir="$out/samples/$name"
  mkdir -p "$dir"
  flags=$("$build/tests/onnx_cases" inputs "$dl" "$dir")
  # shellcheck disable=SC2086 # the flags are words
  "$build/dlc" run "$dl" --seed 0 $flags > /dev/null
  ins=$(echo "$flags" | tr ' ' '\n' | grep -A1 -- '^--input$' | grep -v -- '^--' | paste -sd, -)
  outs=$(echo "$flags" | tr ' ' '\n' | grep -A1 -- '^--output$' | grep -v -- '^--' | paste -sd, -)
  # A model with an op that has no ONNX form (a scan) is refused by dlc
  # export with the op and its line; it is listed as skipped, not checked.
  if ! "$build/dlc" export "$dl" --seed 0 -o "$dir/model.onnx" 2> "$dir/export.err"; then
    echo "skipped $name: $(grep -m1 'error:' "$dir/export.err")"
    continue
  fi
  "$build/dlc" export "$dl" --seed 0 --fold-bn -o "$dir/folded.onnx"
  printf '%s\t%s\t%s\t%s\n' "$name" "$dir/model.onnx" "$ins" "$outs" >> "$manifest"
  printf '%s\t%s\t%s\t%s\n' "$name --fold-bn" "$dir/folded.onnx" "$ins" "$outs" >> "$manifest"
  # the round trip of the samples (and the scan fixture): the exported file
  # imported back, run by dlc (a failed import or run leaves no output
  # files, and the case fails).  all_ops.dl is left out: its layer_norm
  # without weight and tril export an Expand, which dlc does not import.
  case "$dl" in samples/*|*/scan_small.dl) ;; *) continue ;; esac
  rm -f "$dir"/rt.*.npy
  rt_flags=$(echo "$flags" | sed 's#/ref\.#/rt.#g')
  rt_outs=$(echo "$outs" | sed 's#/ref\.#/rt.#g')
  if "$build/dlc" import "$dir/model.onnx" -o "$dir/imported.dl" > "$dir/import.log" 2>&1; then
    # shellcheck disable=SC2086 # the flags are words
    "$build/dlc" run "$dir/imported.dl" --params "$dir/imported.safetensors" $rt_flags > "$dir/import.log" 2>&1 || true
  fi
  printf '%s\t=\t%s\t%s\n' "$name import" "$rt_outs" "$outs" >> "$manifest"
done
"$build/tests/onnx_cases" ops "$out/ops"
NODE_PATH="$PWD/$out/node_modules" node scripts/onnx_check.js "$manifest" "$out/ops/ops.txt"
