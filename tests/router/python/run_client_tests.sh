#!/usr/bin/env bash
# Runs test_clients.py in a virtualenv of its own with pinned client libraries from PyPI.
# Usage: run_client_tests.sh PYTHON SCRATCH ROUTER_BIN FAKE_WORKER_BIN PROTO_DIR
set -euo pipefail
python=$1 scratch=$2
mkdir -p "$scratch"
venv="$scratch/venv"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "openai==1.54.4" "httpx==0.27.2" "grpcio==1.66.2" "grpcio-tools==1.66.2" "protobuf==5.28.3"
exec "$venv/bin/python" "$(dirname "$0")/test_clients.py" "$scratch" "${@:3}"
