#!/usr/bin/env bash
# Bootstrap: makes sure the system packages the native build needs are present (installing them with apt
# when running as root, otherwise printing the exact command), restores the local Cake tool and runs
# build.cake. Usage: ./build.sh [--target=Run|Test|Native|Bindings|Build|Bench|Pack] [--configuration=Release]
set -euo pipefail
cd "$(dirname "$0")"

# A rustup toolchain (cargo for the Rust example's tests) where the machine has one.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# command or file that proves a package is installed -> Debian package that provides it
declare -A needs=(
  [cmake]=cmake
  [g++]=g++
  [ninja]=ninja-build
  [/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h]=libopenblas-dev
  [/usr/include/dlpack/dlpack.h]=libdlpack-dev
  [/usr/src/googletest/CMakeLists.txt]=googletest
  [/usr/lib/python3/dist-packages/clang/cindex.py]=python3-clang-14
  [/usr/lib/x86_64-linux-gnu/libclang-14.so]=libclang-14-dev
  [/usr/lib/python3/dist-packages/numpy/__init__.py]=python3-numpy
  [/usr/lib/python3/dist-packages/pytest/__init__.py]=python3-pytest
  [pkg-config]=pkgconf
  [cargo]=cargo
)
missing=()
for probe in "${!needs[@]}"; do
  if [[ "$probe" == /* ]]; then [ -e "$probe" ] || missing+=("${needs[$probe]}")
  else command -v "$probe" >/dev/null 2>&1 || missing+=("${needs[$probe]}"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "build.sh: missing system packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
if ! command -v dotnet >/dev/null; then
  echo "build.sh: the .NET 10 SDK is required (https://dotnet.microsoft.com/download)" >&2
  exit 1
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet tool restore >/dev/null
exec dotnet cake build.cake "$@"
