#!/usr/bin/env bash
# Installs a libmamba build tree into a scratch prefix, then builds and runs the C example against it twice:
# through find_package(Mamba) and through pkg-config.  Usage: run_installed.sh <native build dir> <scratch dir>
set -euo pipefail
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null

echo "== find_package(Mamba)"
cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/rms_norm_example"

echo "== pkg-config mamba"
libdir=$(find "$work/prefix" -name mamba.pc -printf '%h\n' | head -n 1)
flags=$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs mamba)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror "$here/rms_norm_example.c" -o "$work/rms_norm_example_pc" $flags -lm \
   -Wl,-rpath,"$(PKG_CONFIG_PATH="$libdir" pkg-config --variable=libdir mamba)"
"$work/rms_norm_example_pc"
