#!/usr/bin/env bash
# Every GPU check of the CUDA backend, in one script with two halves. The GPU machine has none of
# our Debian libraries (../shared/PLATFORM.md), so the build happens here and travels there.
#
#   tools/gpu-check.sh stage [--build DIR]                       (build machine, no GPU needed)
#     Builds, through /tmp/expertmesh-build.lock with 2 jobs, every target of tests/kernels/cuda
#     and bench/cuda, every gtest binary labelled `cuda` (wherever it lives), the expertmesh
#     CLI (make-model, serve, bench) and the worker and router that `expertmesh serve` starts;
#     strips the binaries and packs them with the shared libraries they need that a GPU image
#     lacks (what ldd lists, minus glibc, the driver, cuBLAS/cuBLASLt and
#     NCCL, which come from the GPU machine) into DIR/gpu-carry/payload.tar.xz plus
#     DIR/gpu-carry/manifest (about 19 MiB; a device call carries at most 64 MiB with the
#     working tree). DIR defaults to build.
#
#   tools/gpu-check.sh run [--carry DIR] [--build DIR] [--steps a,b] [--deadline S]
#                          [--layers N] [--results FILE]            (GPU machine, repository root)
#     Unpacks the payload (or, with --build, uses a build tree made on a GPU machine that has our
#     libraries), finds libcublasLt and NCCL there, and runs the steps below in this order, each
#     under its own time cap and all before one deadline (default 540 s after the start):
#       gpu       nvidia-smi, runtime (gVisor/Firecracker), glibc and ldd checks, tools    ~5 s
#       tests     every `cuda` test binary, all of its cases; FAIL on a failure or on a case
#                 skipped for want of a GPU (cases that skip by design, e.g. "needs 2 GPUs",
#                 are listed with their reason)                                          ≤ 150 s
#       model     make-model writes a Qwen3-30B-A3B-shaped checkpoint (the real per-layer
#                 shapes, --layers of the real 48, default 8: 11 GB), then cuda_model_bench:
#                 batch-1 decode weight bandwidth / copy bandwidth (target 0.70), decode
#                 tokens/s at batch 8/32/64, prefill tokens/s, CUDA graph on/off         ≤ 150 s
#       serving   the same checkpoint under request schedules (rates 4, 16, all at once):
#                 cuda_serving_bench (the engine) beside tools/gpu/hf_bench.py (transformers,
#                 bf16, same prompts), plus transformers' decode/prefill numbers          ≤ 200 s
#       kernels   gemm_bench and attention_bench                                         ≤ 60 s
#       cli-bench `expertmesh serve --device cuda` (router + one worker) and `expertmesh bench`
#                 against it over HTTP on the serving step's schedules and lengths: the numbers
#                 beside the in-process engine's and transformers'                       ≤ 120 s
#       memcheck  compute-sanitizer memcheck over every `cuda` test binary, sharing the time
#                 left (a binary cut off by its share is INCOMPLETE, not passed; gVisor
#                 machines refuse the sanitizer: NOT RUN)
#     Writes FILE (default $OUT/gpu-results.md, or build/gpu-check-out/ without $OUT) with every
#     number and each step's PASS / FAIL / INCOMPLETE / NOT RUN / N/A, and gpu-logs.tar.gz beside
#     it with the raw logs and test reports. Prints the summary last. Exit status: 0 all passed,
#     1 something failed, 3 nothing failed but something was cut off or not run.
#
# How a session with a GPU (15 minutes of device time in all, a machine start costs 1-2) calls it:
#   1. here:   tools/gpu-check.sh stage
#   2. device: run  command "bash tools/gpu-check.sh run"  carry ["build/gpu-carry"]
#              timeout_s 590 (the 540 s deadline ends the script inside it; about 1.5 + 9.5 min)
#   3. read $OUT/gpu-results.md; give the machine back at once, or, while it is warm, rerun one
#      step with what is left, e.g. "bash tools/gpu-check.sh run --steps model --deadline 150"
#      (each call unpacks again and writes a fresh results file).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly TARGET_RATIO=0.70
readonly LOCK=/tmp/expertmesh-build.lock

RESULTS=""  # run: the results file, written even when the run stops before its first step
die() {
  echo "gpu-check: $*" >&2
  if [[ -n "$RESULTS" ]]; then
    mkdir -p "$(dirname "$RESULTS")"
    printf '# GPU check results\n\nFAIL before any step: %s\n' "$*" >"$RESULTS"
  fi
  exit 2
}
now() { date +%s; }

# ---------------------------------------------------------------------------------------------
# stage (build machine)
# ---------------------------------------------------------------------------------------------

# Executable targets whose objects live under tests/kernels/cuda or bench/cuda, and the CUDA
# golden test, as build.ninja names them (cuda_test_binaries adds cuda tests elsewhere).
cuda_targets() {
  local ninja="$1/build.ninja"
  {
    grep -oE '^build (tests/kernels/cuda|bench/cuda)/[^ :]*CMakeFiles/[A-Za-z0-9_]+\.dir/' "$ninja"
    grep -oE '^build tests/golden/CMakeFiles/[A-Za-z0-9_]*cuda[A-Za-z0-9_]*\.dir/' "$ninja"
  } | sed -E 's#.*CMakeFiles/([A-Za-z0-9_]+)\.dir/#\1#' | sort -u
}

# The binaries (basenames) of every test labelled `cuda`, built or not: each gtest binary's
# discovery file (<build>/tests/**/<name>[1]_include.cmake) names its executable and labels.
cuda_test_binaries() {
  python3 - "$1" <<'PY'
import glob, os, re, sys
names = set()
for path in glob.glob(os.path.join(sys.argv[1], "tests", "**", "*_include.cmake"), recursive=True):
    text = open(path, encoding="utf-8").read()
    exe = re.search(r"TEST_EXECUTABLE \[==\[(.*?)\]==\]", text)
    props = re.search(r"TEST_PROPERTIES \[==\[(.*?)\]==\]", text)
    if not exe or not props:
        continue
    items = props.group(1).split(";")
    labels = []
    if "LABELS" in items:
        for item in items[items.index("LABELS") + 1:]:
            if re.fullmatch(r"[A-Z_]+", item):
                break
            labels.append(item)
    if "cuda" in labels:
        names.add(os.path.basename(exe.group(1)))
print("\n".join(sorted(names)))
PY
}

# Shared libraries a GPU image lacks or must not get from us: glibc's own, the driver's, and the
# CUDA libraries the GPU machine has (cuBLASLt alone is 540 MB).
readonly HOST_LIB_RE='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libutil\.so|libcuda\.so|libnvidia|libcublas|libnccl)'

stage() {
  local build="$REPO/build"
  while (($#)); do
    case "$1" in
      --build) build="$(cd "$2" && pwd)" || die "no directory $2"; shift 2 ;;
      *) die "stage: unknown argument $1" ;;
    esac
  done
  [[ -f "$build/build.ninja" ]] || die "no configured build in $build (run tools/setup.sh)"
  grep -q '^EXPERTMESH_CUDA:BOOL=ON' "$build/CMakeCache.txt" || die "CUDA is off in $build"
  local -a targets tests benches
  mapfile -t tests < <(cuda_test_binaries "$build")
  ((${#tests[@]})) || die "no test labelled cuda in $build"
  mapfile -t targets < <({ cuda_targets "$build"; printf '%s\n' "${tests[@]}"; } | sort -u)
  echo "gpu-check stage: building ${targets[*]} expertmesh expertmesh-worker expertmesh-router"
  (cd "$REPO" && flock "$LOCK" cmake --build "$build" -j2 --target "${targets[@]}" expertmesh \
    expertmesh-worker expertmesh-router) || die "build failed"
  local b
  for b in "${tests[@]}"; do
    [[ -x "$build/bin/$b" ]] || die "test target $b built no $build/bin/$b"
  done
  # The other executables of those directories are the benchmarks (libraries are skipped).
  for b in "${targets[@]}"; do
    [[ -x "$build/bin/$b" && " ${tests[*]} " != *" $b "* ]] && benches+=("$b")
  done

  local carry="$build/gpu-carry" tmp
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/bin" "$tmp/lib"
  local -a all=("${tests[@]}" "${benches[@]}" expertmesh expertmesh-worker expertmesh-router)
  for b in "${all[@]}"; do
    strip -o "$tmp/bin/$b" "$build/bin/$b" || die "strip $b failed"
  done
  local -A host_libs=()
  local soname path
  while read -r soname path; do
    if [[ "$soname" =~ $HOST_LIB_RE ]]; then
      [[ "$soname" =~ ^lib(cublas|nccl) ]] && host_libs["$soname"]=1
      continue
    fi
    [[ -n "$path" && -f "$path" ]] || die "ldd cannot resolve $soname"
    [[ -f "$tmp/lib/$soname" ]] || cp -L "$path" "$tmp/lib/$soname"
  done < <(for b in "${all[@]}"; do ldd "$build/bin/$b"; done | awk '/=>/ {print $1, $3}' | sort -u)
  # The newest glibc symbol version anything carried asks for (the GPU machine needs as new).
  local glibc
  glibc="$(for f in "$tmp"/bin/* "$tmp"/lib/*; do objdump -T "$f" 2>/dev/null; done |
    grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n | tail -1)"

  rm -rf "$carry"
  mkdir -p "$carry"
  echo "gpu-check stage: packing $(du -sh "$tmp" | cut -f1) into $carry/payload.tar.xz"
  XZ_OPT="-6 -T2" tar -C "$tmp" -cJf "$carry/payload.tar.xz" bin lib || die "tar failed"
  # key=value lines; values are single lines (lists separated by spaces).
  {
    echo "commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l)"
    echo "staged_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "source_dir=$REPO"
    echo "binary_dir=$build"
    echo "tests=${tests[*]}"
    echo "benches=${benches[*]}"
    echo "host_libs=${!host_libs[*]}"
    echo "glibc_max=$glibc"
  } >"$carry/manifest"
  rm -rf "$tmp"
  local size
  size=$(du -sm "$carry" | cut -f1)
  echo "gpu-check stage: $carry is ${size} MiB (tests: ${tests[*]}; benches: ${benches[*]})"
  ((size < 50)) || echo "gpu-check stage: warning: over 50 MiB; the device call carries 64 MiB"
  echo "next: device run, command \"bash tools/gpu-check.sh run\", carry [\"${carry#"$REPO"/}\"]"
}

# ---------------------------------------------------------------------------------------------
# run (GPU machine)
# ---------------------------------------------------------------------------------------------

STEPS="gpu,tests,model,serving,kernels,cli-bench,memcheck"
DEADLINE=540
LAYERS=8
START=$(now)
WORK=/tmp/gpu-check
LOGS="$WORK/logs"
SECTIONS="$WORK/sections"
BIN="" LIB="" HOST_LIB_PATH="" SANITIZER="" ENVLIB=""
declare -a TESTS=() BENCHES=() SUMMARY=()
declare -A MANIFEST=()
FAILED=0 CUT=0
STEP="" STEP_END=0 STEP_STATUS="" STEP_NOTE=""

# Our binaries run with the carried libraries first; nothing else (python) sees them.
ours() { env LD_LIBRARY_PATH="$ENVLIB" "$@"; }
left() { echo $((STEP_END - $(now))); }
section() { cat >>"$SECTIONS/$STEP.md"; }
log_block() { # log_block FILE [grep regex]: the file's lines (or the matching ones) as a code block
  {
    echo '```'
    if [[ $# -gt 1 ]]; then grep -E "$2" "$1" || true; else cat "$1"; fi
    echo '```'
  } | section
}
verdict() { # verdict STATUS NOTE: the worse of the step's statuses so far wins
  local rank_new rank_old
  declare -A rank=([PASS]=0 [N/A]=0 ["NOT RUN"]=1 [INCOMPLETE]=2 [FAIL]=3)
  rank_new=${rank[$1]}
  rank_old=${rank[${STEP_STATUS:-PASS}]}
  ((rank_new >= rank_old)) && STEP_STATUS="$1"
  [[ -n "${2:-}" ]] && STEP_NOTE="${STEP_NOTE:+$STEP_NOTE; }$2"
}
# timed SECONDS LOG CMD...: runs CMD with its output in LOG, killed after SECONDS; returns its
# status (124 when cut off).
timed() {
  local secs="$1" logf="$2"
  shift 2
  ((secs >= 5)) || return 124
  timeout --kill-after=10 "$secs" "$@" >"$logf" 2>&1
}

want() { [[ ",$STEPS," == *",$1,"* ]]; }

run_step() { # run_step NAME CAP_SECONDS FUNCTION
  local name="$1" cap="$2" fn="$3"
  want "$name" || return 0
  local remaining=$((DEADLINE - ($(now) - START) - 15))
  STEP="$name" STEP_STATUS="" STEP_NOTE=""
  if ((remaining < 20)); then
    SUMMARY+=("| $name | NOT RUN | deadline: ${remaining} s left | 0 |")
    CUT=1
    return 0
  fi
  local t0
  t0=$(now)
  STEP_END=$((t0 + (cap < remaining ? cap : remaining)))
  echo "gpu-check: step $name (up to $((STEP_END - t0)) s)"
  printf '\n## %s\n\n' "$name" | section
  "$fn"
  [[ -n "$STEP_STATUS" ]] || STEP_STATUS=PASS
  case "$STEP_STATUS" in
    FAIL) FAILED=1 ;;
    INCOMPLETE | "NOT RUN") CUT=1 ;;
  esac
  SUMMARY+=("| $name | $STEP_STATUS | ${STEP_NOTE:-} | $(($(now) - t0)) |")
}

# Directories holding `name` on this machine: the loader's cache, the CUDA toolkit, and the
# NVIDIA wheels of the python3 that has torch.
find_host_lib() {
  local name="$1" d
  d="$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')"
  if [[ -n "$d" ]]; then dirname "$d"; return 0; fi
  local -a roots=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda*/lib64)
  local site
  site="$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)"
  for d in $site; do roots+=("$d/nvidia"); done
  local hit
  hit="$(find "${roots[@]}" -name "$name" -print -quit 2>/dev/null)"
  [[ -n "$hit" ]] && dirname "$hit"
}

setup_run() {
  local carry="$1" build="$2"
  # A checkpoint from an earlier call on this machine stays (ensure_model reuses it).
  rm -rf "$LOGS" "$SECTIONS" "$WORK/payload"
  mkdir -p "$LOGS" "$SECTIONS"
  if [[ -n "$build" ]]; then
    BIN="$build/bin"
    [[ -d "$BIN" ]] || die "no $BIN"
    MANIFEST[source_dir]="$REPO" MANIFEST[binary_dir]="$build" MANIFEST[commit]="(build tree)"
    mapfile -t TESTS < <(cuda_test_binaries "$build")
    local b
    for b in gemm_bench attention_bench cuda_model_bench cuda_serving_bench; do
      [[ -x "$BIN/$b" ]] && BENCHES+=("$b")
    done
  else
    [[ -f "$carry/payload.tar.xz" && -f "$carry/manifest" ]] ||
      die "no carried build in $carry: run 'tools/gpu-check.sh stage' on the build machine and carry build/gpu-carry"
    mkdir -p "$WORK/payload"
    # python3's tarfile where the image has no xz program.
    tar -C "$WORK/payload" -xJf "$carry/payload.tar.xz" 2>/dev/null ||
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$carry/payload.tar.xz" "$WORK/payload" || die "cannot unpack $carry/payload.tar.xz"
    BIN="$WORK/payload/bin" LIB="$WORK/payload/lib"
    local key value
    while IFS='=' read -r key value; do
      [[ -n "$key" ]] && MANIFEST[$key]="$value"
    done <"$carry/manifest"
    read -r -a TESTS <<<"${MANIFEST[tests]}"
    read -r -a BENCHES <<<"${MANIFEST[benches]}"
  fi
  # The test binaries read tests/golden through the source path they were built with.
  local src="${MANIFEST[source_dir]}"
  if [[ "$(cd "$src" 2>/dev/null && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]]; then
    [[ -e "$src" ]] && die "$src exists and is not this checkout; the tests would read other data"
    { mkdir -p "$(dirname "$src")" && ln -s "$REPO" "$src"; } || die "cannot link $src to $REPO"
  fi
  mkdir -p "${MANIFEST[binary_dir]}"
  local lib dirs=""
  for lib in ${MANIFEST[host_libs]:-libcublasLt.so.13}; do
    local d
    d="$(find_host_lib "$lib")"
    [[ -n "$d" && ":$dirs:" != *":$d:"* ]] && dirs="${dirs:+$dirs:}$d"
  done
  HOST_LIB_PATH="$dirs"
  ENVLIB="${LIB:+$LIB:}$HOST_LIB_PATH"
  SANITIZER="$(command -v compute-sanitizer || true)"
  local c
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer; do
    [[ -z "$SANITIZER" && -x "$c" ]] && SANITIZER="$c"
  done
}

step_gpu() {
  {
    echo "- commit ${MANIFEST[commit]:-?} (uncommitted files at staging: ${MANIFEST[dirty]:-?}), staged ${MANIFEST[staged_at]:-?}"
    echo "- kernel $(uname -r) ($([[ "$(uname -r)" == 4.4.0* ]] && echo gVisor || echo Firecracker or other)); glibc $(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
    echo "- host library path: ${HOST_LIB_PATH:-none found}"
    echo "- compute-sanitizer: ${SANITIZER:-not found}"
    echo "- python3: $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
  } | section
  if ! nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv >"$LOGS/nvidia-smi.txt" 2>&1; then
    verdict FAIL "nvidia-smi failed"
  fi
  log_block "$LOGS/nvidia-smi.txt"
  local need="${MANIFEST[glibc_max]:-}" have
  have="$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
  if [[ -n "$need" && -n "$have" ]] &&
    [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n | tail -1)" != "$have" ]]; then
    verdict FAIL "carried binaries need glibc $need, this machine has $have"
  fi
  local b missing=""
  for b in "$BIN"/*; do
    ours ldd "$b" | grep -q 'not found' && missing+=" $(basename "$b"):$(ours ldd "$b" | awk '/not found/ {print $1}' | tr '\n' ',')"
  done
  [[ -z "$missing" ]] || verdict FAIL "unresolved libraries:$missing"
}

step_tests() {
  local t rc reports=()
  for t in "${TESTS[@]}"; do
    if (($(left) < 10)); then
      verdict INCOMPLETE "$t not run (step time used up)"
      continue
    fi
    (cd "${MANIFEST[binary_dir]}" && timed "$(left)" "$LOGS/$t.log" \
      env LD_LIBRARY_PATH="$ENVLIB" "$BIN/$t" --gtest_output="xml:$LOGS/$t.xml")
    rc=$?
    if ((rc == 124 || rc == 137)); then
      verdict INCOMPLETE "$t cut off"
    elif [[ ! -f "$LOGS/$t.xml" ]]; then
      verdict FAIL "$t exited $rc without a report"
      tail -20 "$LOGS/$t.log" | sed 's/^/    /' | section
    fi
    [[ -f "$LOGS/$t.xml" ]] && reports+=("$LOGS/$t.xml")
  done
  ((${#reports[@]})) || { verdict FAIL "no test reports"; return; }
  python3 "$REPO/tools/gpu/gtest_summary.py" "${reports[@]}" >"$LOGS/tests-summary.txt" 2>&1
  rc=$?
  log_block "$LOGS/tests-summary.txt"
  ((rc == 0)) || verdict FAIL "failed or skipped cases (see the list)"
}

MODEL_DIR=""
ensure_model() {
  MODEL_DIR="$WORK/qwen3-30b-a3b-shape-${LAYERS}l"
  [[ -f "$MODEL_DIR/config.json" && -f "$MODEL_DIR/.complete" ]] && return 0
  local need_gb=$((LAYERS * 5 / 4 + 2)) avail_gb
  avail_gb=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1048576))
  if ((avail_gb < need_gb)); then
    verdict "NOT RUN" "make-model needs ${need_gb} GB, ${avail_gb} GB free"
    return 1
  fi
  local t0 rc
  t0=$(now)
  # Qwen3-30B-A3B per layer (hidden 2048, 32 q / 4 kv heads of 128, 128 experts of 768, top-8,
  # vocab 151936: 151900 BPE tokens asked, padded to a multiple of 64), LAYERS of its 48.
  timed "$(left)" "$LOGS/make-model.log" env LD_LIBRARY_PATH="$ENVLIB" \
    "$BIN/expertmesh" make-model --arch qwen3-moe --size large --layers "$LAYERS" --hidden 2048 \
    --heads 32 --kv-heads 4 --head-dim 128 --experts 128 --top-k 8 --moe-intermediate 768 \
    --vocab-size 151900 --seed 7 --force --out "$MODEL_DIR"
  rc=$?
  if ((rc != 0)); then
    verdict "$( ((rc == 124)) && echo INCOMPLETE || echo FAIL)" "make-model exited $rc"
    log_block "$LOGS/make-model.log"
    return 1
  fi
  touch "$MODEL_DIR/.complete"
  echo "make-model: ${LAYERS} layers in $(($(now) - t0)) s, $(du -sh "$MODEL_DIR" | cut -f1)" | section
  return 0
}

step_model() {
  ensure_model || return
  timed "$(left)" "$LOGS/model_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
    "$BIN/cuda_model_bench" "$MODEL_DIR" --steps 32 --context 256
  local rc=$?
  log_block "$LOGS/model_bench.log"
  if ((rc != 0)); then
    verdict "$( ((rc == 124)) && echo INCOMPLETE || echo FAIL)" "cuda_model_bench exited $rc"
    return
  fi
  local ratio
  ratio="$(grep -E '^decode batch=1 ' "$LOGS/model_bench.log" | grep -oE 'ratio_vs_copy=[0-9.]+' | cut -d= -f2)"
  if [[ -z "$ratio" ]]; then
    verdict FAIL "no batch-1 ratio in the output"
  elif awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN {exit !(r >= t)}'; then
    verdict PASS "batch-1 weight BW / copy BW = $ratio: target $TARGET_RATIO met (${LAYERS} of 48 layers)"
  else
    verdict PASS "batch-1 weight BW / copy BW = $ratio: BELOW the target $TARGET_RATIO (${LAYERS} of 48 layers)"
  fi
}

step_serving() {
  ensure_model || return
  local p=256 o=64 n=24 rate scheds=()
  for rate in 4 16 inf; do
    python3 "$REPO/tools/gpu/schedule.py" --rate "$rate" --count "$n" --seed 1 \
      --out "$LOGS/schedule_$rate.txt" || { verdict FAIL "schedule.py failed"; return; }
    scheds+=("$LOGS/schedule_$rate.txt")
  done
  # Half the step's time each; transformers loads slower, so ours goes first.
  timed $(($(left) * 2 / 5)) "$LOGS/serving_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
    "$BIN/cuda_serving_bench" "$MODEL_DIR" "$p" "$o" "${scheds[@]}"
  local rc=$?
  ((rc == 0)) || verdict "$( ((rc == 124)) && echo INCOMPLETE || echo FAIL)" "cuda_serving_bench exited $rc"
  timed "$(left)" "$LOGS/hf_bench.log" env PYTHONUNBUFFERED=1 python3 "$REPO/tools/gpu/hf_bench.py" \
    "$MODEL_DIR" --prompt-len "$p" --output-len "$o" --context 256 --steps 32 \
    --schedules "${scheds[@]}" --out "$LOGS/hf_bench.json"
  rc=$?
  ((rc == 0)) || verdict "$( ((rc == 124)) && echo INCOMPLETE || echo FAIL)" "hf_bench.py exited $rc"
  echo "Prompts of $p tokens, $o output tokens each, $n requests per schedule." | section
  python3 "$REPO/tools/gpu/compare.py" "$LOGS/model_bench.log" "$LOGS/serving_bench.log" \
    "$LOGS/hf_bench.log" | section
  echo | section
  log_block "$LOGS/serving_bench.log"
  log_block "$LOGS/hf_bench.log" '^(hf_|serving|Traceback|[A-Za-z]*Error)'
}

step_kernels() {
  local b rc
  for b in gemm_bench attention_bench; do
    [[ " ${BENCHES[*]} " == *" $b "* ]] || { verdict FAIL "$b not carried"; continue; }
    timed $(($(left) / 2 + 1)) "$LOGS/$b.log" env LD_LIBRARY_PATH="$ENVLIB" "$BIN/$b"
    rc=$?
    ((rc == 0)) || verdict "$( ((rc == 124)) && echo INCOMPLETE || echo FAIL)" "$b exited $rc"
    log_block "$LOGS/$b.log"
  done
}

step_memcheck() {
  if [[ -z "$SANITIZER" ]]; then
    verdict "NOT RUN" "compute-sanitizer not on this machine"
    return
  fi
  local i t rc share errors lines=()
  for ((i = 0; i < ${#TESTS[@]}; ++i)); do
    t="${TESTS[$i]}"
    share=$(($(left) / (${#TESTS[@]} - i)))
    if ((share < 10)); then
      verdict INCOMPLETE "$t not run (time used up)"
      lines+=("$t: not run")
      continue
    fi
    (cd "${MANIFEST[binary_dir]}" && timed "$share" "$LOGS/memcheck-$t.log" \
      env LD_LIBRARY_PATH="$ENVLIB" "$SANITIZER" --tool memcheck \
      --error-exitcode 99 --print-limit 20 "$BIN/$t" --gtest_brief=1)
    rc=$?
    errors="$(grep -oE 'ERROR SUMMARY: [0-9]+' "$LOGS/memcheck-$t.log" | tail -1 | grep -oE '[0-9]+$')"
    if grep -qiE 'device not supported|not supported on this platform' "$LOGS/memcheck-$t.log"; then
      verdict "NOT RUN" "compute-sanitizer refused the device (gVisor?)"
      lines+=("$t: sanitizer refused the device")
      break
    elif ((rc == 124 || rc == 137)); then
      verdict INCOMPLETE "$t cut off after ${share} s"
      lines+=("$t: cut off after ${share} s (errors so far: ${errors:-none reported})")
    elif ((rc == 99)) || [[ -n "$errors" && "$errors" != 0 ]]; then
      verdict FAIL "$t: ${errors:-?} memcheck errors"
      lines+=("$t: ${errors:-?} errors")
      grep -E '^========= (Invalid|Program hit|Address|Saved host|    at)' "$LOGS/memcheck-$t.log" |
        head -30 | sed 's/^/    /' | section
    elif ((rc != 0)); then
      verdict FAIL "$t failed under memcheck (exit $rc)"
      lines+=("$t: exit $rc, ${errors:-?} memcheck errors")
    else
      lines+=("$t: clean (${errors:-0} errors)")
    fi
  done
  printf -- '- %s\n' "${lines[@]}" | section
}

step_cli_bench() {
  local b
  for b in expertmesh-worker expertmesh-router; do
    [[ -x "$BIN/$b" ]] || { verdict "NOT RUN" "$b not carried (stage again)"; return; }
  done
  if ! ours "$BIN/expertmesh" bench --help >"$LOGS/cli-bench-help.log" 2>&1; then
    verdict FAIL "the carried expertmesh has no bench subcommand"
    return
  fi
  ensure_model || return
  # Loading the checkpoint onto the GPU and three schedules take about a minute; less than that
  # would only cut the run off.
  if (($(left) < 60)); then
    verdict "NOT RUN" "$(left) s left, needs 60 (rerun with --steps cli-bench --deadline 150)"
    return
  fi
  # The serving step's schedules (the same arrivals as cuda_serving_bench and hf_bench.py; made
  # again, identically, when that step did not run in this call).
  local p=256 o=64 n=24 rate scheds=()
  for rate in 4 16 inf; do
    if [[ ! -f "$LOGS/schedule_$rate.txt" ]]; then
      python3 "$REPO/tools/gpu/schedule.py" --rate "$rate" --count "$n" --seed 1 \
        --out "$LOGS/schedule_$rate.txt" || { verdict FAIL "schedule.py failed"; return; }
    fi
    scheds+=(--schedule "$LOGS/schedule_$rate.txt")
  done
  # Router + one worker group on the GPU, on a free port; `timeout` bounds it whatever happens
  # (it passes its SIGTERM on to serve, which stops the router, then the worker).
  local serve_log="$LOGS/cli-serve.log" url="" serve_pid t0
  t0=$(now)
  : >"$serve_log"
  timeout --kill-after=10 "$(left)" env LD_LIBRARY_PATH="$ENVLIB" "$BIN/expertmesh" serve \
    "$MODEL_DIR" --device cuda --http-port 0 --grpc-port -1 --kv-budget 4GiB --max-running 64 \
    --grace-s 2 --ready-timeout-s $(($(left) - 30)) >"$serve_log" 2>&1 &
  serve_pid=$!
  while (($(left) > 25)) && kill -0 "$serve_pid" 2>/dev/null; do
    url="$(grep -oE 'OpenAI-compatible HTTP API at http://[^ ]+' "$serve_log" | head -1 |
      awk '{print $NF}')"
    [[ -n "$url" ]] && break
    sleep 1
  done
  local rc=0 ready_s=$(($(now) - t0))
  if [[ -z "$url" ]]; then
    if kill -0 "$serve_pid" 2>/dev/null; then
      verdict INCOMPLETE "expertmesh serve not ready in time"
    else
      verdict FAIL "expertmesh serve exited before it was ready"
    fi
  else
    timed $(($(left) - 15)) "$LOGS/cli_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
      "$BIN/expertmesh" bench --url "$url" "${scheds[@]}" --prompt-tokens "$p" \
      --output-tokens "$o" --model-dir "$MODEL_DIR" --warmup 4 --max-concurrency 64 \
      --request-timeout-s 60 --json "$LOGS/cli_bench.json"
    rc=$?
  fi
  kill -TERM "$serve_pid" 2>/dev/null
  local i
  for ((i = 0; i < 20; ++i)); do
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$serve_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null
  if [[ -z "$url" ]]; then
    tail -30 "$serve_log" >"$LOGS/cli-serve-tail.log"
    log_block "$LOGS/cli-serve-tail.log"
    return
  fi
  echo "\`expertmesh bench\` over HTTP against \`expertmesh serve --device cuda\` (router + one worker, ready in ${ready_s} s): the serving step's schedules, $p-token prompts, $o output tokens (ignore_eos), 4 warm-up requests first. \`expertmesh_http\` beside the in-process engine and transformers:" | section
  echo | section
  python3 "$REPO/tools/gpu/compare.py" "$LOGS/serving_bench.log" "$LOGS/hf_bench.log" \
    "$LOGS/cli_bench.log" | sed -n '/^### Serving/,$p' | section
  echo | section
  log_block "$LOGS/cli_bench.log" '^(==|  |serving|expertmesh bench|warm-up)'
  if ((rc == 124 || rc == 137)); then
    verdict INCOMPLETE "expertmesh bench cut off"
  elif [[ ! -f "$LOGS/cli_bench.json" ]]; then
    verdict FAIL "expertmesh bench exited $rc without results"
  else
    local summary
    summary="$(python3 - "$LOGS/cli_bench.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
parts = [f"{r['schedule'].split()[0]}: {r['completed']}/{r['requests']}, "
         f"{r['output_throughput']:.0f} tok/s, TTFT p50 {r['ttft_ms']['p50']:.0f} ms"
         for r in j["results"]]
print(f"{j.get('failed', 0)} " + "; ".join(parts))
PY
)"
    if [[ -z "$summary" ]]; then
      verdict FAIL "unreadable $LOGS/cli_bench.json"
    elif [[ "${summary%% *}" != 0 ]]; then
      verdict FAIL "${summary%% *} requests failed: ${summary#* }"
    elif ((rc != 0)); then
      verdict FAIL "expertmesh bench exited $rc: ${summary#* }"
    else
      verdict PASS "${summary#* }"
    fi
  fi
}

write_results() {
  local results="$1" dir
  dir="$(dirname "$results")"
  mkdir -p "$dir"
  {
    echo "# GPU check results"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), commit ${MANIFEST[commit]:-?}, steps $STEPS, $(($(now) - START)) s"
    echo
    echo "| step | status | note | seconds |"
    echo "|---|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
    local s
    for s in ${STEPS//,/ }; do [[ -f "$SECTIONS/$s.md" ]] && cat "$SECTIONS/$s.md"; done
  } >"$results"
  tar -C "$WORK" -czf "$dir/gpu-logs.tar.gz" logs 2>/dev/null
}

run_main() {
  local carry="$REPO/build/gpu-carry" build="" results=""
  while (($#)); do
    case "$1" in
      --carry) carry="$2"; shift 2 ;;
      --build) build="$(cd "$2" && pwd)" || die "no directory $2"; shift 2 ;;
      --steps) STEPS="$2"; shift 2 ;;
      --deadline) DEADLINE="$2"; shift 2 ;;
      --layers) LAYERS="$2"; shift 2 ;;
      --results) results="$2"; shift 2 ;;
      *) die "run: unknown argument $1" ;;
    esac
  done
  [[ "$DEADLINE" =~ ^[0-9]+$ && "$LAYERS" =~ ^[0-9]+$ && "$LAYERS" -ge 1 ]] ||
    die "--deadline and --layers take positive integers"
  if [[ -z "$results" ]]; then
    results="${OUT:-$REPO/build/gpu-check-out}/gpu-results.md"
  fi
  RESULTS="$results"
  setup_run "$carry" "$build"
  run_step gpu 30 step_gpu
  run_step tests 150 step_tests
  run_step model 150 step_model
  run_step serving 200 step_serving
  run_step kernels 60 step_kernels
  run_step cli-bench 120 step_cli_bench
  run_step memcheck 100000 step_memcheck
  write_results "$results"
  echo
  echo "gpu-check: results in $results"
  printf '%s\n' "| step | status | note | seconds |" "${SUMMARY[@]}"
  grep -hE '^(decode batch=1 |copy_bandwidth|cuda_graph batch=1 )' "$LOGS/model_bench.log" 2>/dev/null
  if ((FAILED)); then return 1; fi
  if ((CUT)); then return 3; fi
  return 0
}

case "${1:-}" in
  stage) shift; stage "$@" ;;
  run) shift; run_main "$@" ;;
  *) die "usage: tools/gpu-check.sh stage [--build DIR] | run [--carry DIR] [--build DIR] [--steps LIST] [--deadline S] [--layers N] [--results FILE]" ;;
esac
