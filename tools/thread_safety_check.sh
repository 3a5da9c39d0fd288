#!/usr/bin/env bash
# Clang thread-safety analysis over the project: tools/thread_safety_check.sh [BUILD_DIR]
#
# Runs `clang++ -fsyntax-only -Wthread-safety -Werror=thread-safety` over every non-CUDA C++
# translation unit in BUILD_DIR/compile_commands.json (default: the repository's build/), with the
# include paths, defines and machine flags of its real (g++) compile command. -fsyntax-only is a
# full clang front-end pass (the analysis is part of semantic analysis) without code generation,
# so it costs a fraction of a clang build. Fails listing the files with thread-safety errors.
#
# The annotations only mean something on capability-annotated locks (absl::Mutex): libstdc++'s
# std::mutex carries none, so the project locks with absl::Mutex everywhere.
#
# First compiles tests/thread_safety/unguarded_access.cc, which reads an ABSL_GUARDED_BY member
# without the lock, and fails unless clang reports exactly that: the check cannot pass vacuously.
#
# Skipped: .cu files (nvcc), sources under BUILD_DIR (generated protobuf code), and entries whose
# file no longer exists (a stale compile_commands.json after files moved; listed as a note).
# Checked like the rest: the CUDA backend's host .cc files (g++-compiled, with the CUDA headers)
# and the AVX-512 kernels (-mavx512f/-mavx512bf16: clang 14 takes the flags and intrinsics). A -f
# or -m flag that clang rejects is dropped, with a note.
# Environment: CLANGXX (default clang++), JOBS (default nproc), ONLY (a Python regex: check only
# the sources whose path matches it, e.g. ONLY='router/|thread_pool').
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
CLANGXX="${CLANGXX:-clang++}"
JOBS="${JOBS:-$(nproc)}"
CDB="$BUILD_DIR/compile_commands.json"
# -Wno-unknown-warning-option: the g++ warning flags are dropped below, but a -Wno-... that only
# g++ knows must never turn into an error of its own.
TSA_FLAGS=(-fsyntax-only -Wthread-safety -Werror=thread-safety -Wno-unknown-warning-option)

if [[ ! -f "$CDB" ]]; then
  echo "thread_safety_check: $CDB not found (configure the build first)" >&2
  exit 2
fi
command -v "$CLANGXX" >/dev/null || { echo "thread_safety_check: $CLANGXX not found" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/thread_safety_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

# ---- Negative control: an unguarded read must be reported as a thread-safety error. ----
control="$ROOT/tests/thread_safety/unguarded_access.cc"
if "$CLANGXX" -std=c++20 -I"$ROOT" "${TSA_FLAGS[@]}" "$control" >"$WORK/control.log" 2>&1; then
  echo "thread_safety_check: FAILED: the negative control $control compiled cleanly:" \
    "clang does not run the thread-safety analysis on absl::Mutex here" >&2
  exit 1
fi
# Every error must be a thread-safety one (else the control broke for another reason).
diagnostic='^[^ ]+:[0-9]+:[0-9]+: (fatal )?error: '
if ! grep -Eq "$diagnostic.*\[-Werror,-Wthread-safety" "$WORK/control.log" ||
  grep -E "$diagnostic" "$WORK/control.log" | grep -vq '\[-Werror,-Wthread-safety'; then
  echo "thread_safety_check: FAILED: the negative control did not fail with (only)" \
    "thread-safety errors:" >&2
  cat "$WORK/control.log" >&2
  exit 1
fi
echo "thread_safety_check: negative control reported as expected"

# ---- The translation units, one NUL-separated argument file each. ----
# Each $WORK/tu/N.args holds: the directory, the source, then the clang arguments.
mkdir -p "$WORK/tu"
ONLY="${ONLY:-}" python3 - "$CDB" "$BUILD_DIR" "$WORK" "$CLANGXX" "${TSA_FLAGS[@]}" <<'PY'
import json
import os
import re
import shlex
import subprocess
import sys

cdb, build_dir, work, clang = sys.argv[1:5]
tsa_flags = sys.argv[5:]
build_dir = os.path.realpath(build_dir)
only = re.compile(os.environ["ONLY"]) if os.environ.get("ONLY") else None

# Flags that take the next argument and only matter for code generation or dependency files.
DROP_WITH_VALUE = {"-o", "-MF", "-MT", "-MQ"}
DROP = {"-c", "-MD", "-MMD", "-MP", "-pipe"}


def clang_accepts(flag, cache={}):
    """Whether clang takes a -f/-m flag (g++-only ones, e.g. -fconcepts-diagnostics-depth=, are
    errors in clang). Probed once per distinct flag."""
    if flag not in cache:
        probe = subprocess.run(
            [clang, "-x", "c++", "-fsyntax-only", flag, "-"], input=b"", capture_output=True)
        cache[flag] = probe.returncode == 0
        if not cache[flag]:
            print(f"thread_safety_check: note: dropping {flag} (clang rejects it)")
    return cache[flag]


stale, skipped_cu, generated = [], 0, 0
seen = set()
n = 0
for entry in json.load(open(cdb)):
    src = entry["file"]
    directory = entry["directory"]
    path = os.path.realpath(os.path.join(directory, src))
    if only is not None and not only.search(path):
        continue
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    if path.endswith(".cu") or os.path.basename(args[0]) == "nvcc":
        skipped_cu += 1
        continue
    if path.startswith(build_dir + os.sep):  # generated: *.pb.cc, *.grpc.pb.cc
        generated += 1
        continue
    if not os.path.exists(path):
        stale.append(path)
        continue
    out = []
    it = iter(args[1:])
    for a in it:
        if a in DROP_WITH_VALUE:
            next(it, None)
        elif a in DROP or a == src or os.path.realpath(os.path.join(directory, a)) == path:
            pass
        elif a.startswith("-W") and not a.startswith("-Wp,"):
            pass  # the project's g++ warnings (and -Wa/-Wl): only thread-safety matters here
        elif a.startswith(("-f", "-m")) and not clang_accepts(a):
            pass
        else:
            out.append(a)
    out += tsa_flags + [path]
    key = (path, tuple(out))
    if key in seen:
        continue
    seen.add(key)
    with open(os.path.join(work, "tu", f"{n}.args"), "wb") as f:
        f.write(b"\0".join(x.encode() for x in [directory, path] + out) + b"\0")
    n += 1

for s in stale:
    print(f"thread_safety_check: note: skipping {s}: in compile_commands.json but not on disk "
          "(stale build directory; reconfigure to refresh)")
print(f"thread_safety_check: {n} translation units ({skipped_cu} CUDA and {generated} generated "
      f"sources skipped)")
PY

total="$(find "$WORK/tu" -name '*.args' | wc -l)"
if [[ "$total" -eq 0 ]]; then
  echo "thread_safety_check: FAILED: no translation units found in $CDB" >&2
  exit 1
fi

check_one() {
  local args_file="$1" dir src
  local -a a
  mapfile -d '' -t a <"$args_file"
  dir="${a[0]}"
  src="${a[1]}"
  if ! (cd "$dir" && "$CLANGXX" "${a[@]:2}") >"${args_file%.args}.log" 2>&1; then
    printf '%s\n' "$src" >"${args_file%.args}.fail"
  fi
}
export -f check_one
export CLANGXX

echo "thread_safety_check: checking $total translation units with $CLANGXX, $JOBS at a time"
# shellcheck disable=SC2016 # $1 is expanded by the inner bash, one argument file per call
find "$WORK/tu" -name '*.args' -print0 | xargs -0 -n 1 -P "$JOBS" bash -c 'check_one "$1"' _

elapsed=$((SECONDS - start))
# A failing unit either has thread-safety errors, or does not compile with clang at all (then the
# analysis could not run on it: also a failure, listed apart).
tsa_failed=() other_failed=()
for fail in "$WORK"/tu/*.fail; do
  [[ -e "$fail" ]] || continue
  src="$(cat "$fail")"
  echo "==== $src" >&2
  cat "${fail%.fail}.log" >&2
  if grep -q '\[-Werror,-Wthread-safety' "${fail%.fail}.log"; then
    tsa_failed+=("$src")
  else
    other_failed+=("$src")
  fi
done
if [[ $((${#tsa_failed[@]} + ${#other_failed[@]})) -gt 0 ]]; then
  echo "thread_safety_check: FAILED (${elapsed}s, $total translation units)" >&2
  if [[ "${#tsa_failed[@]}" -gt 0 ]]; then
    echo "thread-safety errors in ${#tsa_failed[@]} file(s):" >&2
    printf '  %s\n' "${tsa_failed[@]}" | sort -u >&2
  fi
  if [[ "${#other_failed[@]}" -gt 0 ]]; then
    echo "not compilable by clang (analysis not run) in ${#other_failed[@]} file(s):" >&2
    printf '  %s\n' "${other_failed[@]}" | sort -u >&2
  fi
  exit 1
fi
echo "thread_safety_check: all $total translation units clean (${elapsed}s)"
