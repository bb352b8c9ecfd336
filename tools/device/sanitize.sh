#!/usr/bin/env bash
# On the GPU machine, after a CUDA build (tools/device/build.sh): the CUDA instances of the GoogleTest suite
# under compute-sanitizer, memcheck (out-of-bounds and misaligned accesses, leaks of device memory) and
# racecheck (shared-memory hazards between threads of a block). Slow tools, so the few tests whose time
# goes into large shapes are left out; every kernel and option is still covered by the small-shape tests.
# Logs go to $OUT (or build/cuda-logs). Usage: tools/device/sanitize.sh [seconds per tool, default 150];
# RACECHECK_TESTS (gtest patterns, e.g. '*Ssd*:*Softmax*') narrows racecheck to the kernels a run has to cover.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=${OUT:-$top/build/cuda-logs}
mkdir -p "$out"
limit=${1:-150}
tests=build/cuda/bin/mamba_tests
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -z "$sanitizer" ] || [ ! -x "$tests" ]; then
  echo "compute-sanitizer or $tests not found"; exit 1
fi
# Memory.ImpossibleAllocationReportsOutOfMemory makes cudaMalloc fail on purpose (an API error, not a memory
# access error), so it is left out too.
large='*ImpossibleAllocation*:*LongSequence*:*DecodeAndPrefillShapes*:*AcrossChunkedKernelShapes*:*AcrossChunkParallelShapes*:*ManyChannels*:*LargeState*:*ManyRowsAndManyPanels*:*EveryVariantOnTheChannelPath*'
# racecheck only sees shared memory, so it runs over the kernels that use it
shared=${RACECHECK_TESTS:-'*Ssd*:*SelectiveScan*:*Linear*:*Norm*:*Sample*:*Softmax*:*Conv*'}
run() {
  local tool=$1 filter=$2
  local start; start=$(date +%s)
  timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 9 --print-limit 30 \
    "$tests" --gtest_filter="$filter" > "$out/sanitize-$tool.log" 2>&1
  local rc=$?
  # each test's result line ends with its time; gtest's closing summary repeats failures without one
  local ran; ran=$(grep -cE "^\[ +(OK|FAILED) +\] .* \([0-9]+ ms\)$" "$out/sanitize-$tool.log")
  echo "# $tool: exit $rc ($([ $rc -eq 124 ] && echo "time limit, partial" || echo complete)), $ran tests finished, $(( $(date +%s) - start )) s"
  grep -E "ERROR SUMMARY|tests? ran|PASSED|FAILED" "$out/sanitize-$tool.log" | tail -6
  grep -E "^=+ +(Invalid|Race|Error|Leaked|Uninitialized)" "$out/sanitize-$tool.log" | sort | uniq -c | head -20
}
run memcheck "*/Cuda-$large"
run racecheck "$(echo "$shared" | sed 's#\*:#*/Cuda:#g')/Cuda-$large"
