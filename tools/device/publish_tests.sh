#!/usr/bin/env bash
# Publishes the NUnit app (which carries the CLI) and this machine's .NET runtime into .device/ for
# tools/device/full_check.sh, trimmed to fit the transfer limit: only linux-x64 native assets, no pdb/xml,
# no satellite resources, no CPU libmamba (the GPU machine points MAMBA_NATIVE_LIBRARY at its CUDA build).
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
rm -rf .device/Mamba.Tests
../shared/tools/device-prep.sh tests/Mamba.Tests/Mamba.Tests.csproj >/dev/null
app=.device/Mamba.Tests
find "$app/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
find "$app" -mindepth 1 -maxdepth 1 -type d ! -name runtimes -exec rm -rf {} +
rm -f "$app"/*.pdb "$app"/*.xml "$app/libmamba.so"
du -sh .device
