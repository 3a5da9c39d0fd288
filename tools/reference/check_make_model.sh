#!/usr/bin/env bash
# Checks that models written by `expertmesh make-model` are real Hugging Face models: for every
# architecture at tiny size, transformers loads the config, the weights (no missing or unexpected
# keys), runs a forward pass, loads the tokenizer (ids equal to the `tokenizers` library's) and
# renders the chat template. Needs PyPI (torch is large, ~2.5 min to install); not run in CI.
#
# Usage: tools/reference/check_make_model.sh [path/to/expertmesh] [--write-golden FILE]
#   Without an argument it builds and uses build/bin/expertmesh. --write-golden records the
#   `tokenizers` ids of a few texts for every architecture (the committed copy is
#   tests/tools/make_model/testdata/hf_token_ids.json; refresh it when the corpus changes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-reference}"

BINARY=""
if [[ $# -gt 0 && "$1" != --* ]]; then
  BINARY="$1"
  shift
fi
if [[ -z "$BINARY" ]]; then
  BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja
  fi
  cmake --build "$BUILD_DIR" --target expertmesh
  BINARY="$BUILD_DIR/bin/expertmesh"
fi
if [[ ! -x "$BINARY" ]]; then
  echo "check_make_model: $BINARY is not an executable" >&2
  exit 2
fi

# Pinned so that a result can be reproduced; the venv is reused when the pins are installed.
PINS=(torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 jinja2==3.1.6)
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "transformers==5.23.0"; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" "$ROOT/tools/reference/check_make_model.py" --binary "$BINARY" --work "$WORK" "$@"
