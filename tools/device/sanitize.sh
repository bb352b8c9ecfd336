#!/usr/bin/env bash
# On the GPU machine, after a CUDA build (tools/device/build.sh): the CUDA instances of the GoogleTest suite
# under compute-sanitizer, memcheck (out-of-bounds and misaligned accesses, leaks of device memory) and
# racecheck (shared-memory hazards between threads of a block). Slow tools, so the few tests whose time
# goes into large shapes are left out; every kernel and option is still covered by the small-shape tests.
# The tests are split into SHARDS (default 8) GoogleTest shards that run side by side on the one GPU (the
# tools' time goes into the host side of the instrumentation), so the whole suite fits the time limit.
# Logs go to $OUT (or build/cuda-logs): sanitize-TOOL-SHARD.log per shard. Exit status 0 when every shard
# finished with no sanitizer error and no failed test. Usage: tools/device/sanitize.sh
# [seconds per tool, default 150]; RACECHECK_TESTS / MEMCHECK_TESTS (gtest patterns, e.g. '*Ssd*:*Softmax*')
# narrow a tool to the kernels a run has to cover (default: every CUDA test); TOOLS (default "memcheck
# racecheck") picks the tools.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=${OUT:-$top/build/cuda-logs}
mkdir -p "$out"
limit=${1:-150}
shards=${SHARDS:-8}
tests=build/cuda/bin/mamba_tests
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -z "$sanitizer" ] || [ ! -x "$tests" ]; then
  echo "compute-sanitizer or $tests not found"; exit 1
fi
# Memory.ImpossibleAllocationReportsOutOfMemory makes cudaMalloc fail on purpose (an API error, not a memory
# access error), so it is left out too.
large='*ImpossibleAllocation*:*LongSequence*:*DecodeAndPrefillShapes*:*AcrossChunkedKernelShapes*:*AcrossChunkParallelShapes*:*ManyChannels*:*LargeState*:*ManyRowsAndManyPanels*:*EveryVariantOnTheChannelPath*'
# "*" -> "*/Cuda", "*Ssd*:*Conv*" -> "*Ssd*/Cuda:*Conv*/Cuda": the CUDA instances only. Full names
# ("Backends/RmsNormTest.MatchesFloat64Reference/Cuda") pass unchanged; a pattern with its own negative part
# would lose the large-shape exclusions, so it is refused.
cuda_only() { echo "$1" | sed -e 's#\*:#*/Cuda:#g' -e 's#\*$#*/Cuda#'; }
for patterns in "${MEMCHECK_TESTS:-}" "${RACECHECK_TESTS:-}"; do
  case $patterns in *-*) echo "test patterns take no negative part: '$patterns'"; exit 2 ;; esac
done
status=0
run() {
  local tool=$1 filter=$2
  local start; start=$(date +%s)
  local expected; expected=$("$tests" --gtest_list_tests --gtest_filter="$filter" | grep -c '^  ')
  if [ "$expected" -eq 0 ]; then echo "# $tool: no test matches $filter"; status=1; return; fi
  local pids=() i
  for ((i = 0; i < shards; i++)); do
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 9 \
      --print-limit 30 "$tests" --gtest_filter="$filter" > "$out/sanitize-$tool-$i.log" 2>&1 &
    pids+=($!)
  done
  local rcs=() cut=0 rc
  for pid in "${pids[@]}"; do wait "$pid"; rc=$?; rcs+=("$rc"); [ "$rc" -eq 124 ] && cut=1; [ "$rc" -ne 0 ] && status=1; done
  # each test's result line ends with its time; gtest's closing summary repeats failures without one
  local ran; ran=$(cat "$out"/sanitize-"$tool"-*.log | grep -cE "^\[ +(OK|FAILED) +\] .* \([0-9]+ ms\)$")
  local failed; failed=$(cat "$out"/sanitize-"$tool"-*.log | grep -cE "^\[ +FAILED +\] .* \([0-9]+ ms\)$")
  echo "# $tool: $shards shards, exits ${rcs[*]} ($([ $cut -eq 1 ] && echo "time limit, partial" || echo complete)), $ran of $expected tests finished, $failed failed, $(( $(date +%s) - start )) s"
  grep -hE "ERROR SUMMARY" "$out"/sanitize-"$tool"-*.log | sort | uniq -c
  grep -hE "^=+ +(Invalid|Race|Error|Leaked|Uninitialized)" "$out"/sanitize-"$tool"-*.log | sort | uniq -c | head -20
  grep -hE "^\[ +FAILED +\] .* \([0-9]+ ms\)$" "$out"/sanitize-"$tool"-*.log | head -10
  [ "$failed" -eq 0 ] || status=1
}
rm -f "$out"/sanitize-*.log
for tool in ${TOOLS:-memcheck racecheck}; do
  case $tool in
    memcheck) run memcheck "$(cuda_only "${MEMCHECK_TESTS:-*}")-$large" ;;
    racecheck) run racecheck "$(cuda_only "${RACECHECK_TESTS:-*}")-$large" ;;
    *) echo "unknown tool '$tool' (memcheck, racecheck)"; exit 2 ;;
  esac
done
# 0 only when every shard of every tool finished cleanly (a sanitizer error exits 9, a time limit 124)
exit $status
