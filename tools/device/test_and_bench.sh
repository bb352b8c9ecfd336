#!/usr/bin/env bash
# On the GPU machine, in one go: build libmamba with the CUDA backend (tools/device/build.sh), run the
# whole GoogleTest suite through CTest (CPU and CUDA instances) and the CUDA benchmarks. Logs go to
# $OUT (or build/cuda-logs); the last lines printed are the test summary and the benchmark table.
# Usage: tools/device/test_and_bench.sh [ctest -R pattern] [mamba_bench --filter substring]
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=${OUT:-$top/build/cuda-logs}
mkdir -p "$out"
test_filter=${1:-}
bench_filter=${2:-}
{
  echo "# commit: $(cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv
  nvcc --version | tail -2
} 2>&1 | tee "$out/device.txt"

start=$(date +%s)
if ! env_line=$(tools/device/build.sh 2> >(tee "$out/build-stderr.log" >&2) | tee "$out/build.log" | tail -1); then
  echo "BUILD FAILED"; grep -E "error|Error" "$out/build.log" "$out/build-stderr.log" | head -60; exit 1
fi
eval "$env_line"
echo "# build: $(( $(date +%s) - start )) s"

start=$(date +%s)
ctest_args=(--test-dir build/cuda -j 16 --timeout 300)
[ -n "$test_filter" ] && ctest_args+=(-R "$test_filter")
env ${TEST_ENV:-} ctest "${ctest_args[@]}" > "$out/ctest.log" 2>&1
ctest_rc=$?
echo "# ctest: $(( $(date +%s) - start )) s, exit $ctest_rc"
grep -E "^\s*[0-9]+/[0-9]+ Test .*(Failed|Timeout|Exception|Not Run)" "$out/ctest.log" | head -60
grep -E "tests passed|tests failed" "$out/ctest.log"
if [ $ctest_rc -ne 0 ]; then
  # the first failures' details, from the single test binary
  failed=$(grep -E "Failed|Timeout" "$out/ctest.log" | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/' | head -12 | paste -sd: -)
  [ -n "$failed" ] && build/cuda/bin/mamba_tests --gtest_filter="$failed" > "$out/failures.log" 2>&1
  grep -E "Failure|error|Expected|Which is|actual|argument|\[  FAILED" "$out/failures.log" | head -80
fi

start=$(date +%s)
bench_args=(--device cuda --json "$out/bench.json")
[ -n "$bench_filter" ] && bench_args+=(--filter "$bench_filter")
build/cuda/bin/mamba_bench "${bench_args[@]}" 2>&1 | tee "$out/bench.txt" | tail -40
echo "# bench: $(( $(date +%s) - start )) s"
exit $ctest_rc
