#!/usr/bin/env bash
# Regenerates tests/model/chat/data/reference.json: renders every committed chat template over
# the conversations in make_reference.py with Hugging Face transformers' own chat-template code.
# Uses PYTHON when set (e.g. .venv-golden/bin/python, which has the same pins); otherwise creates
# .venv-chat with pinned transformers and jinja2 (no torch needed for rendering).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  VENV="${ROOT}/.venv-chat"
  if [[ ! -x "${VENV}/bin/python" ]]; then
    python3 -m venv "${VENV}"
  fi
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "transformers==5.23.0" \
    "jinja2==3.1.6" "MarkupSafe==3.0.2"
  PYTHON="${VENV}/bin/python"
fi
exec "${PYTHON}" "${ROOT}/tools/chat/make_reference.py" \
  --templates "${ROOT}/tests/model/chat/data/templates" \
  --out "${ROOT}/tests/model/chat/data/reference.json" "$@"
