#!/usr/bin/env bash
# The quick start: sets up and builds (tools/setup.sh), makes the default model on the first
# run, then serves it with `expertmesh serve`: a router plus one worker group on this machine's
# CPU, printing where the OpenAI-compatible HTTP API and the gRPC API listen. Ctrl-C stops all.
#
# Environment: MODEL_DIR (default models/default), MODEL_ARCH (qwen3-moe), MODEL_SIZE (small),
# BUILD_DIR (build), HTTP_PORT (8000), GRPC_PORT (50051), SERVE_GROUPS (1).
# Extra arguments go to `expertmesh serve` (e.g. --kv-budget 1GiB --threads 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
MODEL_DIR="${MODEL_DIR:-$ROOT/models/default}"
MODEL_ARCH="${MODEL_ARCH:-qwen3-moe}"
MODEL_SIZE="${MODEL_SIZE:-small}"

BUILD_DIR="$BUILD_DIR" "$ROOT/tools/setup.sh"

if [[ ! -f "$MODEL_DIR/config.json" ]]; then
  echo "serve: making the default model ($MODEL_ARCH, $MODEL_SIZE, random weights) in $MODEL_DIR"
  "$BUILD_DIR/bin/expertmesh" make-model --arch "$MODEL_ARCH" --size "$MODEL_SIZE" \
    --out "$MODEL_DIR" --seed 0
fi

exec "$BUILD_DIR/bin/expertmesh" serve "$MODEL_DIR" \
  --groups "${SERVE_GROUPS:-1}" --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-50051}" "$@"
