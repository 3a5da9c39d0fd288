#!/usr/bin/env bash
# Runs the whole test suite from any state of the machine: sets up and builds (tools/setup.sh),
# fetches the real tokenizer files the parity tests compare against, runs every CTest test,
# then a short bounded libFuzzer run of each fuzz target.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export BUILD_DIR

"$ROOT/tools/setup.sh"
# Clang's thread-safety analysis over every non-CUDA translation unit (ABSL_GUARDED_BY et al.).
"$ROOT/tools/thread_safety_check.sh" "$BUILD_DIR"
"$ROOT/tools/tokenizer/fetch_reference_tokenizers.sh" "$BUILD_DIR/test-data/tokenizers"

# --no-tests=error: an empty or mis-registered suite fails instead of passing vacuously.
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$(nproc)" \
  --timeout 600 "$@"

"$ROOT/tests/fuzz/run.sh" "${FUZZ_SECONDS:-20}"
echo "test: all tests passed"
