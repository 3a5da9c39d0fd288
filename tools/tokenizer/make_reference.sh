#!/usr/bin/env bash
# Regenerates tests/model/tokenizer/data/reference_*.json with a pinned HF `tokenizers` in its own
# virtualenv (.venv-tokenizer). Not part of CI: the outputs are committed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv-tokenizer"
TOKENIZERS_VERSION=0.21.1
DATA="${1:-$ROOT/build/test-data/tokenizers}"

"$ROOT/tools/tokenizer/fetch_reference_tokenizers.sh" "$DATA"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import tokenizers, sys; sys.exit(tokenizers.__version__ != '$TOKENIZERS_VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet "tokenizers==$TOKENIZERS_VERSION"
fi
"$VENV/bin/python" "$ROOT/tools/tokenizer/make_reference.py" "$DATA" "$ROOT/tests/model/tokenizer/data"
