#!/usr/bin/env bash
# llamacpp_peer.sh - side-by-side peer benchmark: llama.cpp (CPU, 2 threads) on
# the same Hugging Face Qwen3-MoE checkpoint our engine benchmark uses.
#
# This is a developer TOOL. It is never run by CI or by the server: it
# downloads several GB from PyPI (torch pulls CUDA wheels even though only its
# CPU tensor code is used by the converter) and takes ~15 min on 2 cores.
#
# Usage: tools/bench/llamacpp_peer.sh [--no-bench] [--types "bf16 q8_0 ..."]
#                                     [WORK_DIR] [MODEL_DIR]
#   --no-bench  build llama.cpp and convert the GGUFs only (steps 1-5); run
#               the benchmarks yourself, alternated with ours (README)
#   --types     GGUF types to make (and bench), same as PEER_OUTTYPES:
#               bf16, f16, f32, q8_0 (written by the converter itself),
#               q4_0 (llama-quantize from the bf16 GGUF, made first if absent;
#               the converter has no q4_0 output type) and q8_0-lmbf16 (the
#               same with Q8_0 and --leave-output-tensor: lm_head stays bf16,
#               as the published fp8 checkpoints keep it)
#   WORK_DIR    default /tmp/expertmesh-peer (everything is created in here)
#   MODEL_DIR   default <repo>/models/bench-1b (read only; never modified)
# Env knobs: PEER_THREADS (2), PEER_OUTTYPES ("bf16"; e.g. "bf16 q8_0 q4_0"),
#            PEER_REPS (5), PEER_PROMPT (256; llama-bench -p, e.g. "512,4096"),
#            LLAMA_CPP_PY_VERSION (0.3.36).
#
# Python versions: the converter of llama.cpp 0.3.36 runs in its own venv,
# WORK_DIR/venv, with transformers 4.57.6 and torch 2.15.0 (CPU use only),
# numpy 2.4.6, safetensors 0.8.0, sentencepiece 0.2.3, protobuf 4.25.9 and the
# vendored gguf-py. Do not point it at the repo's golden venv (.venv-golden,
# tools/golden): that one has transformers 5.23.0 (+ torch 2.15.0), whose
# tokenizer and config API changes this converter predates. Both need
# Python >= 3.10 (3.11 here).
#
# Steps (each skipped when its output already exists, so re-runs are cheap):
#   1. virtualenv in WORK_DIR/venv
#   2. pip download of the pinned llama-cpp-python sdist (it vendors the
#      llama.cpp sources incl. convert_hf_to_gguf.py and gguf-py)
#   3. cmake Release build (GGML_NATIVE=ON, no curl) of llama-bench,
#      llama-batched-bench and llama-quantize only, -j2, niced
#   4. pip install of the converter deps (pinned) and the vendored gguf-py
#   5. convert_hf_to_gguf.py --outtype bf16 / f16 / q8_0 via a wrapper
#      that forces the BPE pre-tokenizer to "qwen2": the stock converter
#      identifies the pre-tokenizer by a sha256 of the token ids of a probe
#      string, which only matches published vocabularies, so on our own
#      tokenizer it raises "BPE pre-tokenizer was not recognized"
#      (chkhsh 9279b125... for bench-1b). Our tokenizer.json Split regex is
#      exactly the Qwen2 one, so "qwen2" is the right llama.cpp pre-tokenizer.
#      Weights and the model dir are untouched. q4_0: llama-quantize of the
#      bf16 GGUF.
#   6. unless --no-bench: llama-bench (-p PEER_PROMPT -n 64) and
#      llama-batched-bench (-npp 16 -ntg 32 -npl 1,8,32), results in
#      WORK_DIR/results/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH=1
OUTTYPES="${PEER_OUTTYPES:-bf16}"
POSITIONAL=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-bench) BENCH=0 ;;
    --types) OUTTYPES="${2:?--types needs a list}"; shift ;;
    --types=*) OUTTYPES="${1#--types=}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) POSITIONAL+=("$1") ;;
  esac
  shift
done
for t in $OUTTYPES; do
  case "$t" in
    bf16|f16|f32|q8_0|q4_0|q8_0-lmbf16) ;;
    *) echo "unsupported GGUF type '$t' (bf16 f16 f32 q8_0 q4_0 q8_0-lmbf16)" >&2; exit 2 ;;
  esac
done
WORK="${POSITIONAL[0]:-/tmp/expertmesh-peer}"
MODEL="${POSITIONAL[1]:-$REPO_ROOT/models/bench-1b}"
THREADS="${PEER_THREADS:-2}"
PROMPT="${PEER_PROMPT:-256}"
REPS="${PEER_REPS:-5}"
VER="${LLAMA_CPP_PY_VERSION:-0.3.36}"

[ -f "$MODEL/config.json" ] || { echo "no config.json in model dir '$MODEL'" >&2; exit 1; }
MODEL="$(cd "$MODEL" && pwd)"
mkdir -p "$WORK" "$WORK/results"
WORK="$(cd "$WORK" && pwd)"
cd "$WORK"
log() { echo "[peer $(date +%H:%M:%S)] $*"; }

# 1. venv
if [ ! -x venv/bin/python ]; then
  log "creating venv"
  python3 -m venv venv
fi
PY="$WORK/venv/bin/python"

# 2. pinned sdist with vendored llama.cpp
SRC="$WORK/llama_cpp_python-$VER"
LL="$SRC/vendor/llama.cpp"
if [ ! -f "$LL/convert_hf_to_gguf.py" ]; then
  log "downloading llama-cpp-python==$VER sdist"
  "$PY" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VER" -d sdist
  tar xzf "sdist/llama_cpp_python-$VER.tar.gz"
fi

# 3. build the two bench tools and the quantizer (q4_0 has no converter outtype)
if [ ! -x build/bin/llama-bench ] || [ ! -x build/bin/llama-batched-bench ] ||
   [ ! -x build/bin/llama-quantize ]; then
  log "configuring + building llama.cpp (nice, -j2)"
  nice -n 10 cmake -S "$LL" -B build -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    > cmake.log 2>&1
  nice -n 10 cmake --build build --target llama-bench llama-batched-bench llama-quantize -j2 > build.log 2>&1
fi
./build/bin/llama-bench --version 2>&1 | tail -2 | tee results/version.txt

# 4. converter deps (versions that were verified to work with 0.3.36)
if ! "$PY" -c "import torch, gguf, transformers, safetensors, numpy" 2>/dev/null; then
  log "installing converter deps (torch from PyPI is large)"
  nice -n 10 "$PY" -m pip install \
    "numpy==2.4.6" "safetensors==0.8.0" "sentencepiece==0.2.3" \
    "transformers==4.57.6" "protobuf==4.25.9" "torch==2.15.0" "$LL/gguf-py" \
    > pip.log 2>&1
fi

# 5. convert
cat > convert_wrap.py <<'EOF'
# Run llama.cpp's convert_hf_to_gguf.py unchanged except that the BPE
# pre-tokenizer detection (sha256 of probe-string token ids, known vocabs
# only) is forced to "qwen2"; our tokenizer.json uses the Qwen2 split regex.
import os, runpy, sys
conv = sys.argv[1]
sys.argv = [conv] + sys.argv[2:]
sys.path.insert(0, os.path.dirname(conv))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
runpy.run_path(conv, run_name="__main__")
EOF
NAME="$(basename "$MODEL")"
convert() {  # $1: a converter --outtype
  local G="$WORK/$NAME-$1.gguf"
  [ -s "$G" ] && return 0
  log "converting $MODEL -> $G ($1)"
  nice -n 10 "$PY" convert_wrap.py "$LL/convert_hf_to_gguf.py" "$MODEL" \
    --outtype "$1" --outfile "$G.tmp" > "convert_$1.log" 2>&1 ||
    { echo "conversion failed, see $WORK/convert_$1.log" >&2; tail -20 "convert_$1.log" >&2; exit 1; }
  mv "$G.tmp" "$G"
}
quantize() {  # $1: the GGUF type name, $2: llama-quantize's type, then its options
  local G="$WORK/$NAME-$1.gguf" name="$1" type="$2"
  shift 2
  [ -s "$G" ] && return 0
  convert bf16
  log "quantizing $NAME-bf16.gguf -> $G ($type $*)"
  nice -n 10 ./build/bin/llama-quantize "$@" "$WORK/$NAME-bf16.gguf" "$G.tmp" "$type" "$THREADS" \
    > "quantize_$name.log" 2>&1 ||
    { echo "llama-quantize failed, see $WORK/quantize_$name.log" >&2; exit 1; }
  mv "$G.tmp" "$G"
}
for t in $OUTTYPES; do
  case "$t" in
    q4_0) quantize q4_0 Q4_0 ;;
    q8_0-lmbf16) quantize q8_0-lmbf16 Q8_0 --leave-output-tensor ;;
    *) convert "$t" ;;
  esac
done
ls -l "$WORK"/*.gguf | tee results/ggufs.txt
if [ "$BENCH" = 0 ]; then
  log "--no-bench: built and converted; GGUFs in $WORK"
  exit 0
fi

# 6. benchmarks (not niced)
for t in $OUTTYPES; do
  G="$WORK/$NAME-$t.gguf"
  log "llama-bench $t (t=$THREADS, pp$PROMPT / tg64, r=$REPS)"
  ./build/bin/llama-bench -m "$G" -t "$THREADS" -ngl 0 -p "$PROMPT" -n 64 -r "$REPS" \
    2> "results/llama-bench-$t.err" | tee "results/llama-bench-$t.md"
  log "llama-batched-bench $t (npp16 ntg32 npl 1,8,32)"
  ./build/bin/llama-batched-bench -m "$G" -t "$THREADS" -tb "$THREADS" -ngl 0 \
    -c 4096 -b 2048 -ub 512 -npp 16 -ntg 32 -npl 1,8,32 \
    2> "results/llama-batched-bench-$t.err" | tee "results/llama-batched-bench-$t.txt"
done
log "done; results in $WORK/results"
