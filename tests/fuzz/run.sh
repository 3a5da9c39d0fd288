#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (instrumenting the model libraries with ASan+UBSan)
# and runs each for a bounded time: run.sh [SECONDS_PER_TARGET]. Exits non-zero on any crash.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_PER_TARGET="${1:-20}"
FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"

if [[ ! -f "$FUZZ_BUILD_DIR/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$FUZZ_BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXPERTMESH_FUZZ=ON -DEXPERTMESH_CUDA=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer"
fi
cmake --build "$FUZZ_BUILD_DIR" -j "$(nproc)"

for target in safetensors_header_fuzz tokenizer_fuzz openai_request_fuzz http_front_door_fuzz; do
  seeds="$ROOT/tests/fuzz/seeds/$target"
  work="$FUZZ_BUILD_DIR/corpus/$target"
  mkdir -p "$work"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  # The committed seeds are read-only inputs; new findings go to the scratch corpus.
  "$FUZZ_BUILD_DIR/bin/$target" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 "$work" "$seeds"
done
