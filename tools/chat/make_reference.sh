#!/usr/bin/env bash
# Regenerates tests/model/chat/data/reference.json: renders every committed chat template over
# the conversations in make_reference.py with jinja2 configured as Hugging Face transformers
# configures it. Creates its own virtualenv (.venv-chat) with a pinned jinja2.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ROOT}/.venv-chat"
if [[ ! -x "${VENV}/bin/python" ]]; then
  python3 -m venv "${VENV}"
fi
"${VENV}/bin/pip" install --quiet --disable-pip-version-check "jinja2==3.1.6" "MarkupSafe==3.0.2"
exec "${VENV}/bin/python" "${ROOT}/tools/chat/make_reference.py" \
  --templates "${ROOT}/tests/model/chat/data/templates" \
  --out "${ROOT}/tests/model/chat/data/reference.json" "$@"
