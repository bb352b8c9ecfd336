#!/usr/bin/env bash
# Publishes the NUnit app (which carries the CLI) and the BenchmarkDotNet suite, with this machine's .NET
# runtime, into .device/ for tools/device/full_check.sh, trimmed and packed to fit the transfer limit: only
# linux-x64 native assets, no pdb/xml, no satellite resources, no CPU libmamba (the GPU machine points
# MAMBA_NATIVE_LIBRARY at its CUDA build); each app travels as .device/NAME.tar.xz.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
for proj in tests/Mamba.Tests/Mamba.Tests.csproj bench/Mamba.Benchmarks/Mamba.Benchmarks.csproj; do
  name=$(basename "$proj" .csproj)
  rm -rf ".device/$name" ".device/$name.tar.xz"
  ../shared/tools/device-prep.sh "$proj" >/dev/null
  app=.device/$name
  find "$app/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  find "$app" -mindepth 1 -maxdepth 1 -type d ! -name runtimes -exec rm -rf {} +
  rm -f "$app"/*.pdb "$app"/*.xml "$app/libmamba.so"
  tar -C "$app" -cf - . | xz -T0 -6 > ".device/$name.tar.xz"
  rm -rf "$app"
done
du -sh .device
