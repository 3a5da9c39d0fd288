#!/usr/bin/env bash
# Tokenizer throughput, ours beside HF `tokenizers`, on the same corpus in the same run:
#   tools/tokenizer/bench.sh            (BUILD_DIR defaults to ./build)
# Builds tokenizer_bench, fetches the real tokenizers, makes .venv-tokenizer with the pinned
# `tokenizers`, runs both and prints a table of MB/s (input text bytes per second).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
VENV="$ROOT/.venv-tokenizer"
TOKENIZERS_VERSION=0.21.1
DATA="$BUILD_DIR/test-data/tokenizers"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

"$ROOT/tools/tokenizer/fetch_reference_tokenizers.sh" "$DATA" >/dev/null
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja >/dev/null
fi
cmake --build "$BUILD_DIR" --target tokenizer_bench -j "$(nproc)" >/dev/null
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import tokenizers, sys; sys.exit(tokenizers.__version__ != '$TOKENIZERS_VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet "tokenizers==$TOKENIZERS_VERSION"
fi

EXPERTMESH_TOKENIZER_DIR="$DATA" "$BUILD_DIR/bin/tokenizer_bench" \
  --benchmark_min_time="${BENCH_MIN_TIME:-2}" --benchmark_format=json >"$OUT/ours.json" 2>/dev/null
"$VENV/bin/python" "$ROOT/tools/tokenizer/bench_hf.py" "$DATA" --json "$OUT/hf.json" \
  --seconds "${BENCH_MIN_TIME:-2}" >/dev/null

"$VENV/bin/python" - "$OUT/ours.json" "$OUT/hf.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
hf = json.load(open(sys.argv[2]))
def ours_mb(prefix, name, threads=1):
    for b in ours["benchmarks"]:
        full = f"{prefix}/{name.replace('-', '_')}" + (f"/threads:{threads}" if threads > 1 else "")
        if b["name"].replace("/real_time", "") == full:
            return b["bytes_per_second"] / 1e6
    return float("nan")
def hf_mb(name, case):
    for r in hf["results"]:
        if r["tokenizer"] == name and r["case"] == case:
            return r["mb_per_s"]
    return float("nan")
ctx = ours.get("context", {})
print(f"corpus: {hf['corpus_bytes']} bytes, {ctx.get('num_cpus', '?')} CPUs; MB/s of input text")
print(f"{'tokenizer':12s} {'operation':28s} {'expertmesh':>11s} {'HF tokenizers':>14s} {'ratio':>7s}")
for name in ("deepseek-v3", "qwen2"):
    rows = [
        ("encode, 1 thread", ours_mb("BM_Encode", name), hf_mb(name, "encode")),
        ("encode, 2 threads / batch", ours_mb("BM_Encode", name, 2), hf_mb(name, "encode_batch")),
        ("decode", ours_mb("BM_Decode", name), hf_mb(name, "decode")),
        ("streaming detokenize", ours_mb("BM_StreamingDetokenize", name), float("nan")),
    ]
    for op, a, b in rows:
        ratio = f"{a / b:6.1f}x" if b == b and b > 0 else "      -"
        hf_text = f"{b:14.2f}" if b == b else f"{'-':>14s}"
        print(f"{name:12s} {op:28s} {a:11.2f} {hf_text} {ratio}")
PY
