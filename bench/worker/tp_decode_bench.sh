#!/usr/bin/env bash
# Decode step time of a tensor-parallel group at batch 1, tp 1 against tp 2 on one host, with
# the group's collectives over Gloo (TCP over loopback) and over shared memory.
#
#   bench/worker/tp_decode_bench.sh MODEL_DIR [ROUNDS=3] [OUTPUT_TOKENS=256] [REQUESTS=4]
#
# Each configuration is an `expertmesh serve` of MODEL_DIR (router + one worker group), measured
# by `expertmesh bench` with one request at a time (batch 1): TPOT, the time between two streamed
# tokens, is the decode step time plus the stream's few tens of microseconds. Configurations
# alternate within each round (the machine's speed drifts); the table gives every round's
# TPOT p50 and the median, and the ratio to tp 1.
#   tp1                one worker, all cores
#   tp2 gloo, N thr    Gloo with every rank on all cores: the behaviour before shared memory
#   tp2 gloo           Gloo, each rank on its share of the cores (--threads 0 now does that)
#   tp2 shm            the default on one host: shared memory, each rank on its share
# Environment: BUILD_DIR (default build), EXTRA (more `expertmesh serve` flags).
# On a machine other jobs load, give the benchmark its own scheduling group with a larger share
# (root): setsid bash -c 'echo -10 > /proc/self/autogroup; bench/worker/tp_decode_bench.sh ...'
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
BIN="$BUILD_DIR/bin"
MODEL_DIR="${1:?usage: $0 MODEL_DIR [ROUNDS] [OUTPUT_TOKENS] [REQUESTS]}"
ROUNDS="${2:-3}"
OUTPUT_TOKENS="${3:-256}"
REQUESTS="${4:-4}"
CORES="$(nproc)"
WORK="$(mktemp -d)"
SERVE_PID=""
cleanup() {
  if [[ -n "$SERVE_PID" ]]; then kill -INT "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

NAMES=("tp1" "tp2 gloo, $CORES thr/rank" "tp2 gloo" "tp2 shm")
ARGS=("--tp 1" "--tp 2 --threads $CORES" "--tp 2" "--tp 2")
TRANSPORTS=("auto" "gloo" "gloo" "auto")

# Runs configuration $1; prints its TPOT p50 in ms.
run_config() {
  local i=$1 log="$WORK/serve_$1.log" url=""
  : >"$log"
  # shellcheck disable=SC2086
  EXPERTMESH_COMM_TRANSPORT="${TRANSPORTS[$i]}" "$BIN/expertmesh" serve "$MODEL_DIR" ${ARGS[$i]} \
    --http-port 0 --grpc-port -1 ${EXTRA:-} >"$log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 1200); do
    if grep -q "expertmesh serve: ready" "$log"; then
      url=$(grep -o 'HTTP listening on [^ ]*' "$log" | head -1 | awk '{print $4}')
      break
    fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then break; fi
    sleep 0.5
  done
  if [[ -z "$url" ]]; then
    echo "tp_decode_bench: '${NAMES[$i]}' did not start:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  "$BIN/expertmesh" bench --url "$url" --rates inf --num-requests "$REQUESTS" --max-concurrency 1 \
    --warmup 1 --prompt-tokens 16 --output-tokens "$OUTPUT_TOKENS" --ignore-eos \
    --model-dir "$MODEL_DIR" >"$WORK/bench_$i.log" 2>&1
  grep -E "transport|CPU thread" "$log" | sed -n 1,2p | sed 's/^/    /' >&2
  kill -INT "$SERVE_PID"
  wait "$SERVE_PID" || true
  SERVE_PID=""
  grep -o 'tpot_ms_p50=[0-9.]*' "$WORK/bench_$i.log" | cut -d= -f2
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
    tpot=$(run_config "$i")
    echo "round $round: ${NAMES[$i]}: TPOT p50 $tpot ms" >&2
    RESULTS[$i]="${RESULTS[$i]:-} $tpot"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "model $(basename "$MODEL_DIR"), batch 1, $OUTPUT_TOKENS output tokens x $REQUESTS requests, $CORES cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "| configuration | TPOT p50 per round (ms) | median (ms) | vs tp1 |"
echo "|---|---|---|---|"
base=$(echo "${RESULTS[0]}" | median)
for i in "${!NAMES[@]}"; do
  m=$(echo "${RESULTS[$i]}" | median)
  printf "| %s | %s | %s | %.2fx |\n" "${NAMES[$i]}" "$(echo "${RESULTS[$i]}" | sed 's/^ //; s/ /, /g')" "$m" "$(echo "$m / $base" | bc -l)"
done
