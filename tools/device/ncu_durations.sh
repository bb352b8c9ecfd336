#!/usr/bin/env bash
# On the GPU machine, after a CUDA build (tools/device/build.sh or full_check.sh): the duration, DRAM bytes and grid of
# the first COUNT launches matching REGEX inside the mamba_bench cases FILTER names, from Nsight Compute with only those
# metrics (a few seconds a spec, against ncu_profile.sh's full sets). Each kernel is replayed alone with its caches
# flushed, so a short kernel's duration is its own, without the launch costs that floor the benchmark's per-call times.
# Each spec is FILTER@REGEX@COUNT[@VAR=value], the variable set for that spec only; CSVs go to $OUT (or build/cuda-logs).
# Usage: tools/device/ncu_durations.sh 'selective_state_update B8 D5120 N16 fused@state_update@3@MAMBA_CUDA_UPDATE_ROWS=one'
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
OUT=${OUT:-$top/build/cuda-logs}
mkdir -p "$OUT"
sys=/tmp/mamba-sysroot/usr
export LD_LIBRARY_PATH="$sys/lib/x86_64-linux-gnu/openblas-pthread:$sys/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -z "$ncu" ]; then echo "ncu not found"; exit 1; fi
n=0
for spec in "$@"; do
  IFS=@ read -r filter regex count envset <<< "$spec"
  n=$((n + 1))
  echo "===== ncu [$filter] /$regex/ ${envset:-default}"
  env ${envset:-} timeout 60 "$ncu" --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size \
    -k "regex:$regex" -c "$count" --csv build/cuda/bin/mamba_bench --device cuda --filter "$filter" > "$OUT/ncu-$n.csv" 2> "$OUT/ncu-$n.err"
  echo "# exit $?"
  python3 - "$OUT/ncu-$n.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("no rows"); sys.exit()
h = rows[0]; idx = {n: i for i, n in enumerate(h)}
k = collections.OrderedDict()
for r in rows[1:]:
    if not r[0].isdigit(): continue
    k.setdefault((r[0], r[idx["Kernel Name"]][:90]), {})[r[idx["Metric Name"]]] = r[idx["Metric Value"]] + " " + r[idx["Metric Unit"]]
for (i, name), m in k.items():
    print(f"{i:>3} {m.get('gpu__time_duration.sum','?'):>12} rd {m.get('dram__bytes_read.sum','?'):>14} wr {m.get('dram__bytes_write.sum','?'):>14} grid {m.get('launch__grid_size','?'):>6} {name}")
PY
done
