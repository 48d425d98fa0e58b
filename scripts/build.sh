#!/bin/sh
# scripts/build.sh [DIR [meson options...]] — configures (once) and builds dlc.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dtests=enabled "$@" >/dev/null
fi
ninja -C "$dir" >/dev/null
