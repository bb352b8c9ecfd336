#!/usr/bin/env bash
# On the GPU machine, after a CUDA build (tools/device/build.sh): Nsight Compute over the first launches of
# chosen kernels inside chosen benchmark cases, with the hardware counters (where the machine exposes them).
# Each spec is NAME=BENCH_FILTER@KERNEL_REGEX@COUNT; for each it writes NAME.txt (the details page: speed of
# light, memory, warp stall reasons, occupancy, with ncu's own explanations) and NAME-raw.csv (every metric)
# to $OUT (or build/cuda-logs). SOURCE=1 adds NAME-sass.csv (per-instruction stall samples).
# BENCH_FILTER is mamba_bench's substring filter, so it also matches the labelled cases that extend a name
# (only the first launches matching KERNEL_REGEX are profiled, whichever case they come from). Each kernel is
# replayed alone with its caches flushed (ncu's default), so durations run a little above the benchmark's.
# NCU_SECONDS (default 120) limits each spec; the benchmark is stopped once COUNT kernels are profiled.
# Usage: tools/device/ncu_profile.sh 'ssd_b8=cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256 z@ssd_@3' ...
# The clocks are left as the machine sets them (--clock-control none), as in every other measurement here.
# Exit status: 0 when every spec produced a report, else 1 (2 for a malformed spec or no spec).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=${OUT:-$top/build/cuda-logs}
mkdir -p "$out"
usage="usage: $0 NAME=BENCH_FILTER@KERNEL_REGEX@COUNT ..."
if [ $# -eq 0 ]; then echo "$usage"; exit 2; fi
for spec in "$@"; do
  if ! [[ "$spec" =~ ^[A-Za-z0-9_.-]+=[^@]+@[^@]+@[0-9]+$ ]]; then echo "malformed spec '$spec'; $usage"; exit 2; fi
done
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$ncu" ]; then echo "ncu not found"; exit 1; fi
bench=build/cuda/bin/mamba_bench
status=0
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}
  filter=${rest%%@*}; rest=${rest#*@}
  kernels=${rest%%@*}; count=${rest#*@}
  rm -f "$out/$name.ncu-rep"  # a report from an earlier run must not stand in for this one
  start=$(date +%s)
  timeout "${NCU_SECONDS:-120}" "$ncu" --clock-control none --set full --import-source no --kill yes -k "regex:$kernels" -c "$count" \
    -f -o "$out/$name" "$bench" --device cuda --filter "$filter" > "$out/$name-run.log" 2>&1
  echo "# ncu $name: exit $?, $(( $(date +%s) - start )) s"
  grep -E "^==PROF==|==ERROR==|==WARNING==" "$out/$name-run.log" | head -5
  if [ ! -f "$out/$name.ncu-rep" ]; then echo "# $name: no report (no kernel matched, or the time limit ended it)"; status=1; continue; fi
  "$ncu" --import "$out/$name.ncu-rep" --page details --print-details all > "$out/$name.txt" 2>&1
  "$ncu" --import "$out/$name.ncu-rep" --page raw --csv > "$out/$name-raw.csv" 2>&1
  if [ "${SOURCE:-0}" = 1 ]; then "$ncu" --import "$out/$name.ncu-rep" --page source --csv --print-source sass > "$out/$name-sass.csv" 2>&1; fi
  # the headline figures of each profiled kernel
  grep -E "^  [a-z_].*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Warp Cycles Per Issued" "$out/$name.txt" | head -40 || true
done
exit $status
