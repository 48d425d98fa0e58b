#!/bin/sh
# scripts/man.sh DLC OUT — writes the manual page dlc.1 from dlc's own help:
# `dlc --help` gives the synopsis and the compile options, and every
# subcommand it lists (`dlc NAME ...`) gets a section with `dlc NAME --help`.
# The help texts are copied verbatim in no-fill blocks, so the page says
# exactly what the command says; roff's special characters are escaped.
# Run at build time (meson), so the page always matches the binary.
set -eu
dlc=$1
out=$2
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT

# Backslashes, and a '.' or "'" at the start of a line, are roff syntax.
esc() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }
block() { printf '.nf\n'; esc; printf '.fi\n'; }

version=$("$dlc" --version | sed 's/^dlc //')
help=$("$dlc" --help)
cmds=$(printf '%s\n' "$help" | sed -n 's/^ *\(usage: \)\{0,1\}dlc \([a-z][a-z]*\) .*/\2/p')
{
  printf '.TH DLC 1 "" "dlc %s" "User Commands"\n' "$version"
  printf '.SH NAME\ndlc \\- a deep-learning model compiler\n'
  printf '.SH SYNOPSIS\n'
  printf '%s\n' "$help" | sed '/^$/,$d' | block
  printf '.SH DESCRIPTION\n'
  printf 'dlc reads a model written in its small language (.dl), differentiates it, and\n'
  printf 'emits C or LLVM code for the forward pass, the training step and the optimizer\n'
  printf 'update; it trains models, runs them, and exports and imports ONNX.\n'
  printf 'Every subcommand has \\fB\\-\\-help\\fR.\n'
  printf '.SH OPTIONS\n'
  printf '%s\n' "$help" | sed '1,/^$/d' | block
  printf '.SH COMMANDS\n'
  for c in $cmds; do
    printf '.SS "dlc %s"\n' "$c"
    "$dlc" "$c" --help | block
  done
  printf '.SH EXIT STATUS\n'
  printf '0 on success, 1 on bad input (a model, a file, data), 2 on bad usage,\n'
  printf '130 when training is interrupted.\n'
} > "$tmp"
mv "$tmp" "$out"
trap - EXIT
