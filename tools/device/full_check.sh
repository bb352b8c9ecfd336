#!/usr/bin/env bash
# On the GPU machine, everything one device call can verify, in order of importance: the CUDA build, CTest
# and kernel benchmarks (test_and_bench.sh), the NUnit executable against the CUDA build, `mamba info` and
# `mamba bench` on the GPU, and the Python example with CUDA tensors. Needs .device/ made by
# tools/device/stage.sh and tools/device/publish_tests.sh (the packed Mamba.Tests and Mamba.Benchmarks apps).
# Logs go to $OUT.
# Usage: tools/device/full_check.sh [bench shapes for the large run, default mamba-2.8b,mamba2-2.7b]
# QUICK=1 leaves out the 130m model benchmark, the Python example and the managed-overhead runs (for runs
# that change only kernels);
# TEST_FILTER / BENCH_FILTER narrow CTest and the kernel benchmark (test_and_bench.sh's arguments);
# TEST_ENV="VAR=value ..." sets variables for CTest and NUnit only (e.g. a kernel choice the suites then run);
# NUNIT=0 skips the NUnit suite (NUNIT_FILTER narrows it, a --filter expression), BDN=1 runs the BenchmarkDotNet suite on the GPU (in process, short job;
# BDN_FILTER narrows it), LARGE=0 the large-model benchmark (LARGE_PREFILL / LARGE_PROFILE: its
# prefill and profile lengths, 0 to leave them out; LARGE_BATCH its batch sizes, default 1; LARGE_STEPS its decode
# steps, default 64; LARGE_SECONDS its time limit, default 200); PROFILE_FILTER runs those kernel
# benchmark cases with MAMBA_CUDA_TRACE=1 (per-kernel times of the kernels launched through launch_kernel);
# TRACE_MODEL=<shape> times the kernels of that shape's prefill (MAMBA_CUDA_TRACE=1), TRACE_DECODE="<shapes>
# <batch>" those of their decode steps run directly (not from the graph; TRACE_AB: once per configuration); DECODE_AB="default
# VAR=value VAR=value,VAR2=value ..." runs the large shapes' decode once per listed configuration (its
# variables set for that run only; "default" sets none) at the batch sizes DECODE_AB_BATCH (default 1), so
# that kernel choices compare within one run; KERNEL_AB="default VAR=value,..." does the same for the
# kernel benchmark (the BENCH_FILTER cases, default every case), PREFILL_AB for a 2048-token prefill with
# its per-op profile (PREFILL_AB_SHAPES, default mamba-2.8b; PREFILL_AB_DTYPE, default bf16; PREFILL_AB_LENS, default 2048: the prompt lengths,
# each its own run; PREFILL_AB2 and its PREFILL_AB2_* a second such set); SANITIZE=1 ends with tools/device/sanitize.sh.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
# Logs collect in a scratch folder and travel back as one archive (the device returns only a few files).
final=${OUT:-$top/build/cuda-logs}
out=/tmp/mamba-check-logs
rm -rf "$out"; mkdir -p "$out" "$final"
# The archive is rewritten after every step, so a run cut short by the time limit still returns the logs
# of the steps it finished.
snapshot() { tar -C "$out" -czf "$final/logs.tmp.tar.gz" . 2>/dev/null && mv "$final/logs.tmp.tar.gz" "$final/logs.tar.gz"; }
trap 'snapshot; cp "$out"/*.md "$final"/ 2>/dev/null' EXIT
large=${1:-mamba-2.8b,mamba2-2.7b}
step() { snapshot; echo; echo "===== $* ($(date +%T))"; }
# The `top` kernels of a MAMBA_CUDA_TRACE=1 log ("mamba trace NAME grid X block N smem S: T ms" per
# launch; NAME may hold spaces, as the " early" suffix does) by total time: calls, mean and total ms per kernel and launch shape.
kernel_times() {
  awk '/^mamba trace/ { name = $0; sub(/^mamba trace /, "", name); sub(/ grid .*/, "", name)
                        grid = $0; sub(/.* grid /, "", grid); sub(/ .*/, "", grid)
                        smem = $0; sub(/.* smem /, "", smem); sub(/:.*/, "", smem)
                        key = name " grid " grid " smem " smem; n[key]++; t[key] += $(NF-1) }
       END { for (k in n) printf "%10.3f ms total %9.4f ms mean %6d calls  %s\n", t[k], t[k] / n[k], n[k], k }' "$1" | sort -rn | head -"$2"
}

step "native build, ctest, kernel bench"
OUT="$out" tools/device/test_and_bench.sh "${TEST_FILTER:-}" "${BENCH_FILTER:-}"
echo "# test_and_bench exit $?"
# "default VAR=value VAR2=value,VAR3=value ...": the environment of each configuration ("default" sets none)
ab_env() { envs=(); [ "$1" != default ] && IFS=, read -ra envs <<< "$1"; ab_name=$(echo "$1" | tr -c 'A-Za-z0-9_\n' '_'); }
if [ -n "${KERNEL_AB:-}" ]; then
  for cfg in $KERNEL_AB; do
    step "kernel benchmark A/B: $cfg"
    ab_env "$cfg"
    kernel_ab_args=(--device cuda); [ -n "${BENCH_FILTER:-}" ] && kernel_ab_args+=(--filter "$BENCH_FILTER")
    env "${envs[@]}" timeout 150 build/cuda/bin/mamba_bench "${kernel_ab_args[@]}" > "$out/kernel-ab-$ab_name.txt" 2>&1
    echo "# exit $?"; grep -E "^\|" "$out/kernel-ab-$ab_name.txt" | tail -n +3
  done
fi
if [ -n "${PROFILE_FILTER:-}" ]; then
  # each kernel launched through launch_kernel timed alone (MAMBA_CUDA_TRACE=1): calls, mean and total ms
  step "per-kernel times ($PROFILE_FILTER)"
  MAMBA_CUDA_TRACE=1 timeout 120 build/cuda/bin/mamba_bench --device cuda --filter "$PROFILE_FILTER" > "$out/trace-bench.txt" 2> "$out/trace.log"
  echo "# exit $?"
  kernel_times "$out/trace.log" 20
fi
sys=/tmp/mamba-sysroot/usr
export LD_LIBRARY_PATH="$sys/lib/x86_64-linux-gnu/openblas-pthread:$sys/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export MAMBA_NATIVE_LIBRARY="$top/build/cuda/lib/libmamba.so"

# the test app carries the CLI (the tests run it), so one published folder serves both
apps=$top/.device/apps
cli=$apps/Mamba.Tests/mamba.dll
# (publish_tests.sh packs each app for the size limit: only runtimes/linux-x64, no pdb, xml, satellite or
# CPU libmamba files)
step ".NET runtime and apps"
mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf .device/dotnet-runtime.tar.xz
for app in Mamba.Tests Mamba.Benchmarks; do
  rm -rf "$apps/$app"; mkdir -p "$apps/$app"
  if [ -f ".device/$app.tar.xz" ]; then tar -C "$apps/$app" -xJf ".device/$app.tar.xz"
  else echo "# .device/$app.tar.xz missing: run tools/device/publish_tests.sh here first"; fi
done
export DOTNET_ROOT=/tmp/dotnet PATH=/tmp/dotnet:$PATH DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

[ "${NUNIT:-1}" = 0 ] || {
step "NUnit against the CUDA build"
env ${TEST_ENV:-} timeout 300 dotnet "$apps/Mamba.Tests/Mamba.Tests.dll" ${NUNIT_FILTER:+--filter "$NUNIT_FILTER"} --results-directory "$out/nunit" --report-trx \
  --report-trx-filename nunit.trx > "$out/nunit.log" 2>&1
echo "# nunit exit $?"
grep -E "failed|Failed|error" "$out/nunit.log" | head -40
tail -8 "$out/nunit.log"
}

step "mamba info"
timeout 60 dotnet "$cli" info 2>&1 | tee "$out/info.txt"

step "README main command on the GPU (shipped model, default device)"
timeout 60 dotnet "$cli" generate --model models/mamba2-pystdlib --prompt "def fibonacci(n):" --max-tokens 64 \
  > "$out/generate.txt" 2>&1; echo "# exit $?"; tail -12 "$out/generate.txt"

quick=${QUICK:-0}
[ "$quick" = 1 ] || {
step "mamba bench, 130m shapes"
timeout 120 dotnet "$cli" bench --device cuda --shapes mamba-130m,mamba2-130m --dtypes f32,bf16 \
  --batch 1,8,32 --prefill 2048 --json "$out/bench-130m.json" --markdown "$out/bench-130m.md" --plots "$out/plots-130m" > "$out/bench-130m.log" 2>&1
echo "# exit $?"; cat "$out/bench-130m.md" 2>/dev/null || tail -20 "$out/bench-130m.log"

step "python example, CUDA tensors"
timeout 90 python3 -m pytest -q examples/python -rs > "$out/pytest.log" 2>&1
echo "# pytest exit $?"; tail -15 "$out/pytest.log"
}

if [ "${BDN:-0}" = 1 ]; then
  # the managed API's GPU benchmarks (MAMBA_BENCH_DEVICES=cuda), in this process: the machine has a .NET
  # runtime but no SDK to build BenchmarkDotNet's usual per-benchmark processes. Short job, 100 ms
  # iterations (an iteration still holds many device-synchronized calls). The CPU-only classes
  # (loading, tokenizer) are left out by the default filter.
  step "BenchmarkDotNet suite on the GPU"
  read -ra bdn_filters <<< "${BDN_FILTER:-*KernelBenchmarks* *DecodeBenchmarks* *PrefillBenchmarks* *NormBenchmarks*}"
  MAMBA_BENCH_DEVICES=cuda timeout "${BDN_SECONDS:-300}" dotnet "$apps/Mamba.Benchmarks/Mamba.Benchmarks.dll" \
    --filter "${bdn_filters[@]}" --inProcess --job short --iterationTime 100 --artifacts "$out/bdn" > "$out/bdn.log" 2>&1
  echo "# exit $?"; grep -E "^\|" "$out/bdn.log" | head -120
fi

if [ -n "${TRACE_MODEL:-}" ]; then
  # a 2048-token prefill of one model shape with every launch_kernel kernel timed alone
  step "per-kernel times of a $TRACE_MODEL prefill"
  MAMBA_CUDA_TRACE=1 timeout 120 dotnet "$cli" bench --device cuda --shapes "$TRACE_MODEL" --dtypes bf16 --batch 1 \
    --prefill 2048 --steps 2 > "$out/trace-model.txt" 2> "$out/trace-model.log"
  echo "# exit $?"
  kernel_times "$out/trace-model.log" 16
fi

if [ -n "${TRACE_DECODE:-}" ]; then
  # "SHAPE BATCH": the kernels of that shape's decode at that batch size, each launch_kernel kernel timed
  # alone (MAMBA_CUDA_TRACE=1). A graph replay is not traced, so the times come from the direct steps
  # (the warm-up steps before the graph is captured) and the 16-token prefill of each sequence before them
  # (its scan and conv kernels are named apart from the decode ones, its norms are not); cuBLAS's kernels
  # are not listed. Each traced launch is timed alone between two events, which adds roughly 5-10 us (run
  # 27: x_proj 15.5 us traced against 3.5 in a graph), so at batch 1 the figures compare kernels only
  # roughly; at batch 16 the kernels' own time dominates.
  # TRACE_AB="default VAR=value,..." traces it once per configuration (as DECODE_AB), e.g. with a kernel
  # choice on and off; several shapes may be listed, comma-separated.
  read -r trace_shapes trace_batch <<< "$TRACE_DECODE"
  for cfg in ${TRACE_AB:-default}; do
    ab_env "$cfg"
    for trace_shape in ${trace_shapes//,/ }; do
      step "per-kernel times of a $trace_shape decode at batch ${trace_batch:-1} ($cfg)"
      env "${envs[@]}" MAMBA_CUDA_TRACE=1 timeout 150 dotnet "$cli" bench --device cuda --shapes "$trace_shape" --dtypes bf16 --batch "${trace_batch:-1}" \
        --prefill 0 --steps 2 > "$out/trace-decode-$trace_shape-$ab_name.txt" 2> "$out/trace-decode-$trace_shape-$ab_name.log"
      echo "# exit $?"
      kernel_times "$out/trace-decode-$trace_shape-$ab_name.log" 24
    done
  done
fi

[ "${LARGE:-1}" = 0 ] || {
step "mamba bench, large shapes ($large)"
timeout "${LARGE_SECONDS:-200}" dotnet "$cli" bench --device cuda --shapes "$large" --dtypes bf16 \
  --batch "${LARGE_BATCH:-1}" --prefill "${LARGE_PREFILL:-2048}" --steps "${LARGE_STEPS:-64}" --profile "${LARGE_PROFILE:-2048}" --json "$out/bench-large.json" --markdown "$out/bench-large.md" --plots "$out/plots-large" > "$out/bench-large.log" 2>&1
echo "# exit $?"; cat "$out/bench-large.md" 2>/dev/null || tail -20 "$out/bench-large.log"
}
# prefill_ab SET CONFIGS SHAPES DTYPE LENS: a prefill of each length and its per-op profile, each configuration in its
# own process (logs prefill-ab-SET...).
prefill_ab() {
  local set=$1 configs=$2 shapes=$3 dtype=$4 lens=$5
  for len in $lens; do
  for cfg in $configs; do
    step "prefill A/B ($shapes $dtype, $len tokens): $cfg"
    ab_env "$cfg"
    name=$set$ab_name; [ "$len" = 2048 ] || name=$name-L$len
    env "${envs[@]}" timeout 150 dotnet "$cli" bench --device cuda --shapes "$shapes" --dtypes "$dtype" \
      --batch 1 --prefill "$len" --steps 4 --profile "$len" --markdown "$out/prefill-ab-$name.md" > "$out/prefill-ab-$name.log" 2>&1
    echo "# exit $?"; grep -E "^\| (mamba|selective_scan|in_proj|ssd|out_proj|conv1d) " "$out/prefill-ab-$name.md" 2>/dev/null || tail -5 "$out/prefill-ab-$name.log"
  done
  done
}
[ -n "${PREFILL_AB:-}" ] && prefill_ab "" "$PREFILL_AB" "${PREFILL_AB_SHAPES:-mamba-2.8b}" "${PREFILL_AB_DTYPE:-bf16}" "${PREFILL_AB_LENS:-2048}"
[ -n "${PREFILL_AB2:-}" ] && prefill_ab 2- "$PREFILL_AB2" "${PREFILL_AB2_SHAPES:-mamba-2.8b}" "${PREFILL_AB2_DTYPE:-bf16}" "${PREFILL_AB2_LENS:-2048}"
if [ -n "${DECODE_AB:-}" ]; then
  # decode only (no prefill), each configuration in its own process
  for cfg in $DECODE_AB; do
    step "decode A/B: $cfg"
    ab_env "$cfg"
    env "${envs[@]}" timeout "${DECODE_AB_SECONDS:-150}" dotnet "$cli" bench --device cuda --shapes "$large" --dtypes bf16 \
      --batch "${DECODE_AB_BATCH:-1}" --prefill 0 --steps 64 --markdown "$out/decode-ab-$ab_name.md" > "$out/decode-ab-$ab_name.log" 2>&1
    echo "# exit $?"; grep -E "^\| mamba" "$out/decode-ab-$ab_name.md" 2>/dev/null || tail -5 "$out/decode-ab-$ab_name.log"
  done
fi
[ "$quick" = 1 ] || {
step "managed overhead of a graph decode step"
timeout 60 dotnet "$cli" bench-overhead --device cuda > "$out/overhead.md" 2>&1; tail -8 "$out/overhead.md"
timeout 60 dotnet "$cli" bench-overhead --device cuda --shapes mamba-2.8b --dtype bf16 >> "$out/overhead.md" 2>&1; tail -6 "$out/overhead.md"
}
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
if [ "${SANITIZE:-0}" = 1 ]; then
  step "compute-sanitizer"
  OUT="$out" tools/device/sanitize.sh "${SANITIZE_SECONDS:-120}"
fi
