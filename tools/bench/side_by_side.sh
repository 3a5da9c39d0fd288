#!/usr/bin/env bash
# side_by_side.sh - expertmesh's engine_decode_bench and llama.cpp's benches, alternated run by
# run on the same machine and threads, each line stamped with the time and the load average
# (on a shared host the drift between runs is larger than most differences measured).
#
# Developer TOOL (never run by CI): it needs the GGUFs and binaries of
#   tools/bench/llamacpp_peer.sh --no-bench --types "bf16 q8_0"
# and a built engine_decode_bench.
#
# Usage: tools/bench/side_by_side.sh WHAT [REPS]
#   WHAT  decode      fp8 checkpoint vs Q8_0 GGUF of the same weights: batch 1
#                     (engine_decode_bench DIR 2 64 1 / llama-bench -p 0 -n 64) and 32 streams
#                     (engine_decode_bench DIR 2 48 32 / llama-batched-bench -npl 32, S_TG)
#         decode-lmbf16  the same against the Q8_0 GGUF whose lm_head stays bf16
#                     (llamacpp_peer.sh --types q8_0-lmbf16), as the published fp8 checkpoints
#                     keep theirs: the same bytes of lm_head on both sides
#         decode-fp8lmh  the fp8 checkpoint with --quantize-lm-head fp8 (every matrix one
#                     byte per weight, as in the default Q8_0 GGUF) vs that GGUF
#         decode-bf16 the same with the bf16 checkpoint vs the bf16 GGUF
#         decode-int4 the same with the int4 checkpoint (make-model --dtype int4-ct, group 128)
#                     vs the Q4_0 GGUF of the bf16 weights (llama-quantize)
#         prefill N   one N-token prompt: engine_decode_bench --prefill-tokens N on the default
#                     family and on PREFILL_FAMILIES (avx512bf16) / llama-bench -p N -n 0 on
#                     the bf16 GGUF
#   REPS  alternated repetitions (2)
# Env: BENCH (engine_decode_bench binary; build-serve/bin/...), PEER_WORK (/tmp/expertmesh-peer),
#      THREADS (2), FP8_MODEL (models/bench-1b-fp8), BF16_MODEL (models/bench-1b),
#      INT4_MODEL (models/bench-1b-int4),
#      PREFILL_FAMILIES ("avx512bf16"; "" for the default family only).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
USAGE="usage: side_by_side.sh decode|decode-lmbf16|decode-fp8lmh|decode-bf16|decode-int4|prefill N"
WHAT="${1:?$USAGE [REPS]}"
shift
N=0
if [ "$WHAT" = prefill ]; then
  N="${1:?prefill needs a token count}"
  shift
fi
REPS="${1:-2}"
BENCH="${BENCH:-build-serve/bin/engine_decode_bench}"
PEER="${PEER_WORK:-/tmp/expertmesh-peer}"
THREADS="${THREADS:-2}"
FP8_MODEL="${FP8_MODEL:-models/bench-1b-fp8}"
BF16_MODEL="${BF16_MODEL:-models/bench-1b}"
INT4_MODEL="${INT4_MODEL:-models/bench-1b-int4}"
FAMILIES="${PREFILL_FAMILIES-avx512bf16}"
NAME="$(basename "$BF16_MODEL")"
Q8="$PEER/$NAME-q8_0.gguf"
Q8_LMBF16="$PEER/$NAME-q8_0-lmbf16.gguf"
Q4="$PEER/$NAME-q4_0.gguf"
BF16="$PEER/$NAME-bf16.gguf"

ERR="$PEER/results/side_by_side.err"  # llama.cpp's load logs (stderr)
mkdir -p "$PEER/results"
stamp() { echo "## $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg): $*"; }
run() {
  stamp "$*"
  "$@"
}

for rep in $(seq 1 "$REPS"); do
  echo "# repetition $rep of $REPS"
  if [ "$WHAT" = decode ] || [ "$WHAT" = decode-lmbf16 ] || [ "$WHAT" = decode-fp8lmh ] ||
    [ "$WHAT" = decode-bf16 ] || [ "$WHAT" = decode-int4 ]; then
    MODEL="$FP8_MODEL" GGUF="$Q8"
    if [ "$WHAT" = decode-lmbf16 ]; then GGUF="$Q8_LMBF16"; fi
    if [ "$WHAT" = decode-fp8lmh ]; then MODEL="$FP8_MODEL+fp8-lm-head"; fi
    if [ "$WHAT" = decode-bf16 ]; then MODEL="$BF16_MODEL" GGUF="$BF16"; fi
    if [ "$WHAT" = decode-int4 ]; then MODEL="$INT4_MODEL" GGUF="$Q4"; fi
    run "$BENCH" "$MODEL" "$THREADS" 64 1
    run "$PEER/build/bin/llama-bench" -m "$GGUF" -t "$THREADS" -ngl 0 -p 0 -n 64 -r 3 2>>"$ERR"
    run "$BENCH" "$MODEL" "$THREADS" 48 32
    # --no-repack: with the weights in ggml's AMX buffer (the default on a CPU with AMX-INT8),
    # Q8_0 products of more than one token die of SIGILL at tilezero in tinygemm_kernel_amx
    # (llama.cpp 0c1e570 on the 2-vCPU Xeon; the tile config it loads is not the one meant,
    # upstream PR ggml-org/llama.cpp#26954). Batch 1 takes the VNNI path and runs as shipped.
    run "$PEER/build/bin/llama-batched-bench" -m "$GGUF" -t "$THREADS" -tb "$THREADS" -ngl 0 \
      --no-repack -c 4096 -b 2048 -ub 512 -npp 16 -ntg 32 -npl 32 2>>"$ERR" | grep -E '^\|' || true
  else
    SPECS="$BF16_MODEL"
    for f in $FAMILIES; do SPECS="$SPECS,$BF16_MODEL@$f"; done
    run "$BENCH" --prefill-tokens "$N" --rounds 1 "$SPECS" "$THREADS"
    run "$PEER/build/bin/llama-bench" -m "$BF16" -t "$THREADS" -ngl 0 -p "$N" -n 0 -r 2 2>>"$ERR"
  fi
done
stamp "done"
