#!/usr/bin/env bash
# Builds the Rust example against a libmamba build tree and runs its tests and its program.
# Usage: run_tests.sh <native build dir> <scratch dir>. Exits 77 (CTest: skipped) where cargo is missing.
set -euo pipefail
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v cargo >/dev/null; then
  echo "cargo not found: the Rust example is skipped"
  exit 77
fi
export MAMBA_LIB_DIR="$build/lib" CARGO_TARGET_DIR="$work"
cargo test --offline --quiet --manifest-path "$here/Cargo.toml"
cargo run --offline --quiet --manifest-path "$here/Cargo.toml"
