#!/usr/bin/env bash
# Compiles CUDA sources for one architecture without building or running anything: a syntax and type
# check for machines that have an nvcc but no GPU. The GPU machine's build (tools/device/build.sh) stays
# the one that counts. Needs build/native configured once (for the generated version header).
# Usage: tools/device/compile_check.sh [files.cu ...]   (default: every native/kernels/*.cu)
# Environment: MAMBA_CHECK_ARCH (default 80), MAMBA_CHECK_CCBIN (host compiler; clang-14 when the
# default g++ is newer than nvcc accepts).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
version_dir=$(dirname "$(dirname "$(find build -path '*generated/include/mamba/version.h' -print -quit 2>/dev/null)")" 2>/dev/null)
[ -n "$version_dir" ] && [ -d "$version_dir" ] || { echo "configure build/native first (cmake -S native -B build/native)"; exit 2; }
ccbin=${MAMBA_CHECK_CCBIN:-}
[ -z "$ccbin" ] && command -v clang-14 >/dev/null && ! nvcc -std=c++17 -x cu -c /dev/null -o /dev/null 2>/dev/null && ccbin=clang-14
files=("$@"); [ ${#files[@]} -eq 0 ] && files=(native/kernels/*.cu)
rc=0
for f in "${files[@]}"; do
  if nvcc ${ccbin:+-ccbin "$ccbin"} -std=c++17 -arch="sm_${MAMBA_CHECK_ARCH:-80}" --expt-relaxed-constexpr -Xcompiler -Wall \
      -Inative/include -Inative/src -Inative/kernels -I"$version_dir" -c "$f" -o /dev/null; then
    echo "ok   $f"
  else
    echo "FAIL $f"; rc=1
  fi
done
exit $rc
