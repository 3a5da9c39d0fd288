#!/usr/bin/env bash
# Runs test_structured.py in a virtualenv of its own with pinned client libraries from PyPI.
# Usage: run_structured_tests.sh PYTHON SCRATCH EXPERTMESH_BIN SOURCE_DIR
set -euo pipefail
python=$1 scratch=$2
mkdir -p "$scratch"
venv="$scratch/venv"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
# openai 1.92+ has client.chat.completions.parse (before: client.beta...).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "openai==1.109.1" "pydantic==2.11.9" "jsonschema==4.25.1" "httpx==0.28.1" \
  "grpcio==1.66.2" "grpcio-tools==1.66.2" "protobuf==5.28.3"
exec "$venv/bin/python" "$(dirname "$0")/test_structured.py" "$scratch" "${@:3}"
