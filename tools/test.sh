#!/usr/bin/env bash
# Runs the whole test suite from any state of the machine: sets up and builds (tools/setup.sh),
# fetches the real tokenizer files the parity tests compare against, runs every CTest test,
# then a short bounded libFuzzer run of each fuzz target.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export BUILD_DIR

# Free disk before and after the build: the suite needs ~8 GB (build tree, ccache, test models,
# two Python venvs); a CI run that ran out of space failed only at its last pip install.
report_disk() {
  df -h --output=avail,size,target "$BUILD_DIR" 2>/dev/null | sed "s/^/disk $1: /" || true
}
mkdir -p "$BUILD_DIR"
report_disk "before the build"
"$ROOT/tools/setup.sh"
report_disk "after the build"
# Clang's thread-safety analysis over every non-CUDA translation unit (ABSL_GUARDED_BY et al.).
"$ROOT/tools/thread_safety_check.sh" "$BUILD_DIR"
"$ROOT/tools/tokenizer/fetch_reference_tokenizers.sh" "$BUILD_DIR/test-data/tokenizers"

# --no-tests=error: an empty or mis-registered suite fails instead of passing vacuously.
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$(nproc)" \
  --timeout 600 "$@"

report_disk "after the tests"
"$ROOT/tests/fuzz/run.sh" "${FUZZ_SECONDS:-20}"
echo "test: all tests passed"
