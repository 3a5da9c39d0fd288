#!/usr/bin/env bash
# Regenerates the golden-parity data in tests/golden/ (small random models made by transformers,
# their reference logits and greedy continuations); see tests/golden/README.md for the format.
# Needs PyPI the first time (torch is large, ~2.5 min to install); never run by CI or the server.
#
# Usage: tools/golden/make_golden.sh [--arch llama ...] [--out DIR]
#        tools/golden/make_golden.sh --fp8 [--out DIR]   (the FP8 checkpoints, make_golden_fp8.py)
#        tools/golden/make_golden.sh --int4 [--dir qwen3_moe_gptq ...] [--out DIR]
#          (compressed-tensors int4 and per-channel FP8, GPTQ int4: make_golden_int4.py)
#   Defaults to every architecture and --out tests/golden. Reuses the virtualenv of
#   tools/reference/check_make_model.sh (.venv-reference) when it holds the same pins, otherwise
#   makes .venv-golden. VENV=path overrides.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Pinned so the data can be reproduced; keep in step with tools/reference/check_make_model.sh.
PINS=(torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 numpy==2.4.6)
has_pins() {
  [[ -x "$1/bin/python" ]] && "$1/bin/python" -m pip freeze 2>/dev/null | grep -qx "transformers==5.23.0" &&
    "$1/bin/python" -m pip freeze 2>/dev/null | grep -qx "torch==2.15.0"
}
if [[ -z "${VENV:-}" ]]; then
  if ! has_pins "$ROOT/.venv-golden" && has_pins "$ROOT/.venv-reference"; then
    VENV="$ROOT/.venv-reference"
  else
    VENV="$ROOT/.venv-golden"
  fi
fi
if ! has_pins "$VENV"; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
fi

SCRIPT="$ROOT/tools/golden/make_golden.py"
ARGS=()
for arg in "$@"; do
  if [[ "$arg" == "--fp8" ]]; then SCRIPT="$ROOT/tools/golden/make_golden_fp8.py"
  elif [[ "$arg" == "--int4" ]]; then SCRIPT="$ROOT/tools/golden/make_golden_int4.py"
  else ARGS+=("$arg"); fi
done
if [[ " ${ARGS[*]:-} " != *" --out "* ]]; then
  ARGS+=(--out "$ROOT/tests/golden")
fi
HF_HUB_OFFLINE=1 exec "$VENV/bin/python" "$SCRIPT" "${ARGS[@]}"
