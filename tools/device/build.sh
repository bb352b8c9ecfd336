#!/usr/bin/env bash
# On the GPU machine: builds libmamba with the CUDA backend against what tools/device/stage.sh staged,
# into build/cuda. Prints the environment line later commands need.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
mkdir -p /tmp/mamba-sysroot
[ -d /tmp/mamba-sysroot/usr ] || tar -C /tmp/mamba-sysroot -xJf .device/sysroot.tar.xz
sys=/tmp/mamba-sysroot/usr
blasdir="$sys/lib/x86_64-linux-gnu/openblas-pthread"
export LD_LIBRARY_PATH="$blasdir:$sys/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
cmake -S native -B build/cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DMAMBA_CUDA=ON \
  -DMAMBA_DLPACK_INCLUDE_DIR="$top/.device/include" \
  -DMAMBA_GTEST_SOURCE_DIR="$top/.device/googletest" \
  -DMAMBA_BLAS_LIBRARY="$blasdir/libopenblas.so.0" \
  -DMAMBA_CBLAS_INCLUDE_DIR="$sys/include/x86_64-linux-gnu/openblas-pthread" \
  -DCMAKE_CUDA_ARCHITECTURES="${MAMBA_CUDA_ARCHS:-90a}" >/dev/null
cmake --build build/cuda -j "$(nproc)"
echo "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
