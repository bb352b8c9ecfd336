#!/usr/bin/env bash
# On the GPU machine, after a CUDA build (tools/device/build.sh): Nsight Compute over the first launches of
# chosen kernels inside chosen benchmark cases, with the hardware counters (where the machine exposes them).
# Each spec is NAME=BENCH_FILTER@KERNEL_REGEX@COUNT; for each it writes NAME.txt (the details page: speed of
# light, memory, warp stall reasons, occupancy, with ncu's own explanations) and NAME-raw.csv (every metric)
# to $OUT (or build/cuda-logs). SOURCE=1 adds NAME-sass.csv (per-instruction stall samples).
# Usage: tools/device/ncu_profile.sh 'ssd_b8=cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256 z@ssd_cp_@2' ...
# The clocks are left as the machine sets them (--clock-control none), as in every other measurement here.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
out=${OUT:-$top/build/cuda-logs}
mkdir -p "$out"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$ncu" ]; then echo "ncu not found"; exit 1; fi
bench=build/cuda/bin/mamba_bench
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}
  filter=${rest%%@*}; rest=${rest#*@}
  kernels=${rest%%@*}; count=${rest#*@}
  start=$(date +%s)
  timeout "${NCU_SECONDS:-120}" "$ncu" --clock-control none --set full --import-source no -k "regex:$kernels" -c "$count" \
    -f -o "$out/$name" "$bench" --device cuda --filter "$filter" > "$out/$name-run.log" 2>&1
  echo "# ncu $name: exit $?, $(( $(date +%s) - start )) s"
  grep -E "^==PROF==|==ERROR==|==WARNING==" "$out/$name-run.log" | head -5
  [ -f "$out/$name.ncu-rep" ] || continue
  "$ncu" --import "$out/$name.ncu-rep" --page details --print-details all > "$out/$name.txt" 2>&1
  "$ncu" --import "$out/$name.ncu-rep" --page raw --csv > "$out/$name-raw.csv" 2>&1
  [ "${SOURCE:-0}" = 1 ] && "$ncu" --import "$out/$name.ncu-rep" --page source --csv --print-source sass > "$out/$name-sass.csv" 2>&1
  # the headline figures of each profiled kernel
  grep -E "^  [a-z_].*\(|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per Thread|Warp Cycles Per Issued" "$out/$name.txt" | head -40
done
