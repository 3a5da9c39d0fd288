#!/usr/bin/env bash
# Every GPU check of the CUDA backend, in one script with two halves. The GPU machine has none of
# our Debian libraries (../shared/PLATFORM.md), so the build happens here and travels there.
# GPU time comes in sessions of 15 minutes of device time, a machine start costs 1-2 of them and
# no machine starts with under 4 left, so the run half is split into two calls that each fit:
# call 1 (about 5 minutes of work) says whether the CUDA path is correct and how fast its
# kernels and decode are; call 2 (about 4 minutes) reruns what call 1 could not finish and
# measures serving.
#
#   tools/gpu-check.sh stage [--build DIR]                       (build machine, no GPU needed)
#     Builds, through /tmp/expertmesh-build.lock with 2 jobs, every target of tests/kernels/cuda
#     and bench/cuda, every gtest binary labelled `cuda` (wherever it lives), the expertmesh
#     CLI (make-model, serve, bench) and the worker and router that `expertmesh serve` starts;
#     strips the binaries and packs them with the shared libraries they need that a GPU image
#     lacks (what ldd lists, minus glibc, the driver, cuBLAS/cuBLASLt and NCCL, which come from
#     the GPU machine) into DIR/gpu-carry/payload.tar.xz plus DIR/gpu-carry/manifest (about
#     19 MiB; a device call carries at most 64 MiB with the working tree), which also records
#     the CUDA runtime, cuBLAS and NCCL versions of the headers the build compiled against.
#     DIR defaults to build.
#
#   tools/gpu-check.sh compiled-versions [--build DIR]           (build machine; builds nothing)
#     Prints those header versions (what stage writes into the manifest).
#
#   tools/gpu-check.sh run call1 [OPTIONS]                       (GPU machine, repository root)
#   tools/gpu-check.sh run call2 [STEP | tests=GTEST_FILTER ...] [OPTIONS]
#   tools/gpu-check.sh run --steps a,b [OPTIONS]
#     Unpacks the payload (or, with --build, uses a build tree made on a GPU machine that has our
#     libraries), finds libcublasLt and NCCL there, and runs the call's steps in the order of
#     the table below, each under its own time cap, all before the call's deadline. The caps of
#     a call add up to its deadline less RESERVE (15 s: unpacking before the first step, the
#     results file after the last), so every step gets its whole cap unless one overran.
#
#       step       cap  call  what
#       gpu         10  1 2   nvidia-smi, runtime (gVisor/Firecracker), glibc, ldd of every
#                             carried binary, compute-sanitizer and torch/transformers present
#       versions    10  1 2   driver, CUDA runtime, libcublasLt and libnccl versions the binaries
#                             load here against the ones they were compiled against (manifest;
#                             gemm_bench --versions); older than compiled: BELOW-TARGET and a
#                             WARNING line; missing, other major or driver too old: FAIL
#       tests       70  1     every `cuda` test binary but the golden one, all cases (a case
#                             skipped for want of a GPU fails; skips by design are listed)
#       golden      20  1     golden_cuda_test: the golden models on the GPU against the CPU
#       kernels     30  1     gemm_bench (target: grouped / dense cuBLASLt at the same FLOPs and
#                             weight bytes, ratio_vs_dense >= 0.80 for path auto),
#                             attention_bench, fp8_gemm_bench (fp8 grouped TFLOP/s vs the
#                             FP8 peak and our bf16 GEMM, W8A16 decode GB/s vs copy; a few
#                             seconds) and q4_gemm_bench (W4A16 decode GB/s of the int4 bytes,
#                             scales included, vs copy; q4 grouped prefill TFLOP/s; a few
#                             seconds) (no target: ran clean is PASS)
#       memcheck    25  1     compute-sanitizer --tool memcheck over the small cases of the
#                             grouped-GEMM and attention tests (SAN_FILTER_* below)
#       racecheck   25  1     the same under --tool racecheck (shared-memory hazards)
#       checkpoint  35  1 2   make-model: a Qwen3-30B-A3B-shaped checkpoint, the real per-layer
#                             shapes, --layers of the real 48 (default 8: 11 GB, ~30 s)
#       model       60  1     cuda_model_bench: batch-1 decode weight bandwidth / copy bandwidth
#                             with CUDA graphs on (target 0.70) and off, decode tokens/s at batch
#                             8/32/64, prefill tokens/s
#       serving    105    2   the checkpoint under request schedules (rates 4, 16, all at once):
#                             cuda_serving_bench (the engine) beside tools/gpu/hf_bench.py
#                             (transformers, bf16, same prompts, --skip-decode)
#       cli-bench   65    2   `expertmesh serve --device cuda` (router + one worker) and
#                             `expertmesh bench` against it over HTTP on the same schedules
#       hf-decode   90        transformers' decode and prefill numbers beside the model step's
#                             (in no call by default: name it, e.g. `run call2 hf-decode`)
#     call 1: deadline 300 s, caps 285 s; call 2: deadline 240 s, caps 225 s. Steps named after
#     `call2` (or `call1`) run too, in the table's order, and lengthen the deadline by their caps
#     (the plan warns past 330 s for call 2, which the 15 minutes no longer hold after call 1,
#     and past 570 s: a device command runs at most 600). `tests=FILTER` runs the tests step with
#     that --gtest_filter (binaries with no matching case are left out). Call 2 also reruns every
#     step that call 1's results file reports FAIL, INCOMPLETE (with its cap doubled) or NOT RUN,
#     when it can read that file: --from FILE, or by default DIR/call1-results.md in the carried
#     folder (copy call 1's returned gpu-results.md there before call 2; $OUT is empty at each
#     call), and puts call 1's table in its own results file.
#
#     Options: --carry DIR (default build/gpu-carry), --build DIR, --deadline S, --layers N,
#     --results FILE (default $OUT/gpu-results.md, else /tmp/gpu-check-out/gpu-results.md),
#     --from FILE, --skip a,b (leave steps out), --dry-run (or EXPERTMESH_GPU_CHECK_DRY=1).
#
#     Result words, one per step: PASS ran and met its target (a step without a numeric target:
#     ran clean); BELOW-TARGET ran, but a number missed its goal (the note gives the number and
#     the goal); FAIL; INCOMPLETE hit its cap; NOT RUN the deadline came first; SKIPPED could not
#     run here, with why (compute-sanitizer refuses the device under gVisor, kernel 4.4.0).
#     Writes FILE after every step (so a killed call still leaves one) with a table for the call
#     (and call 1's table when call 2 read it), every number, and gpu-logs.tar.gz beside it.
#     Prints the plan first and the summary last. Exit status: 0 all PASS or SKIPPED; 1 a FAIL;
#     3 no FAIL but something INCOMPLETE or NOT RUN; 4 only BELOW-TARGET besides PASS/SKIPPED.
#
#     --dry-run prints the plan (each step, its cap, the latest second it can start, its commands)
#     and writes a results file of NOT RUN rows without a GPU or a payload.
#     EXPERTMESH_GPU_CHECK_FAKE=DIR runs the steps with every command replaced by DIR's copy of
#     its log (DIR/<log name>, exit status in DIR/<log name>.rc, reports named by
#     --gtest_output/--json/--out copied likewise): the result words and tables without a GPU.
#
# How a session with a GPU (15 minutes of device time in all) calls it:
#   1. here:   tools/gpu-check.sh stage
#   2. device: run  command "bash tools/gpu-check.sh run call1"  carry ["build/gpu-carry"]
#              timeout_s 330 (the 300 s deadline ends the script inside it; with the machine's
#              start about 7 minutes of device time)
#   3. read $OUT/gpu-results.md; copy it to build/gpu-carry/call1-results.md
#   4. device: run  command "bash tools/gpu-check.sh run call2"  carry ["build/gpu-carry"]
#              timeout_s 270 (deadline 240 s; its steps, plus call 1's failures from that file,
#              or named: "run call2 tests model"; each one adds its cap to the deadline, and
#              timeout_s should grow by as much: the plan's first lines print both); then give
#              the machine back.
#   A machine stays warm 30 s after a call: a later call 2 starts a fresh one (1-2 minutes),
#   which still fits (7 + 1.5 + 4.5 minutes) as long as call 2's reruns stay under ~1.5 minutes.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly TARGET_RATIO=0.70 # cuda_model_bench: batch-1 weight BW / copy BW, CUDA graphs on
readonly GEMM_TARGET=0.80  # gemm_bench: dense cuBLASLt ms / grouped ms, path auto, prefill
readonly LOCK=/tmp/expertmesh-build.lock
readonly RESERVE=15    # of each deadline: unpacking before the first step, results after the last
readonly FINISH=5      # of RESERVE: kept after the last step for the results file
readonly MAX_DEADLINE=570

# Steps in the order they run, their caps (seconds) and the two calls.
readonly STEP_ORDER=(gpu versions tests golden kernels memcheck racecheck checkpoint model serving
  cli-bench hf-decode)
declare -A CAP=([gpu]=10 [versions]=10 [tests]=70 [golden]=20 [kernels]=30 [memcheck]=25
  [racecheck]=25 [checkpoint]=35 [model]=60 [serving]=105 [cli-bench]=65 [hf-decode]=90)
readonly CALL1_STEPS=(gpu versions tests golden kernels memcheck racecheck checkpoint model)
readonly CALL2_STEPS=(gpu versions checkpoint serving cli-bench)
readonly CALL1_DEADLINE=300 CALL2_DEADLINE=240

# compute-sanitizer's cases: the small shapes of the grouped-GEMM and attention tests, which
# still reach every kernel path (tensor-core tiles of 128 and 32 rows, SIMT, empty experts,
# flash prefill, split-K decode, MLA, odd head dims) and the error-flag cases; the big ones
# (4096 tokens, 8192-token contexts) would take minutes at memcheck's 10-100x slowdown.
readonly GOLDEN_TEST=golden_cuda_test
readonly SAN_GEMM_TEST=cuda_gemm_test SAN_ATTN_TEST=cuda_paged_attention_test
readonly SAN_GEMM_CASES=(one_row odd_sizes in_not_multiple_of_8 all_rows_to_one_expert
  idle_experts_without_weights e128_top8_t7)
readonly SAN_ATTN_CASES=(one_token_bf16 decode_gqa4_bf16 prefill_odd_bf16 chunked_prefill_bf16
  dim192_128_bf16 dim_odd_bf16 mla576_prefill_bf16)
filter_of() { # filter_of TEST CASE...: "*TEST/CASE1:*TEST/CASE2:..." (any instantiation prefix)
  local test="$1" out="" c
  shift
  for c in "$@"; do out+="${out:+:}*$test/$c"; done
  echo "$out"
}
SAN_FILTER_GEMM="$(filter_of CudaMoeGroupedGemmTest.MatchesCpuBackend "${SAN_GEMM_CASES[@]}")"
SAN_FILTER_GEMM+=":CudaMoeGroupedGemmMiscTest.*"
SAN_FILTER_ATTN="$(filter_of PagedAttentionGpuTest.MatchesCpuOnEveryPath "${SAN_ATTN_CASES[@]}")"
SAN_FILTER_ATTN+=":$(filter_of PagedAttentionGpuTest.BadBlockIdSetsErrorFlag one_token_bf16)"
SAN_FILTER_ATTN+=":$(filter_of PagedAttentionGpuTest.InconsistentBatchSetsErrorFlag one_token_bf16)"
readonly SAN_FILTER_GEMM SAN_FILTER_ATTN
# No q4 (W4A16) case here yet, on purpose. The smallest one that reaches both the decode stream
# and the tensor-core path is *CudaQ4LinearTest.MatchesCpuBackend/prefill40_act_order_k96 (each
# case forces every path; k 96 also takes the narrow last k step, act-order the gathered x
# tile), but it lives in a third binary, cuda_q4_gemm_test: sanitize() gives each binary all the
# step's time left but 10 s for each binary after it, so with a third one the first
# (cuda_gemm_test) would start with 25 - 2 x 10 = 5 s, under its 8 s floor, and report
# INCOMPLETE, pushing out the grouped-GEMM cases; and the caps of call 1 already add up to its
# deadline less RESERVE (285 s), so memcheck and racecheck cannot grow without another step
# shrinking. Add it (a third pair in sanitize: "cuda_q4_gemm_test|$(filter_of
# CudaQ4LinearTest.MatchesCpuBackend prefill40_act_order_k96)") once a GPU run has measured how
# much of the two 25 s caps the present cases leave.

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

# The versions of the CUDA runtime, cuBLAS and NCCL headers the build compiled against, as
# manifest lines (compiled_cudart=13.0, compiled_cublas=13.1.0, compiled_nccl=2.28.9): the
# preprocessor expands the headers' version macros with the include flags that
# kernels/cuda/device_info.cc (which includes nccl.h) was compiled with, so the headers are the
# ones the build used. At run time the libraries report only their own (loaded) versions:
# device_info.h's CudaRuntimeVersion()/NcclVersion() call cudaRuntimeGetVersion/ncclGetVersion,
# and the versions step asks the same functions through tools/gpu/lib_versions.py; so the
# compiled-against ones are recorded here, at staging.
compiled_versions() {
  python3 - "$1" <<'PY'
import json, os, shlex, subprocess, sys
build = sys.argv[1]
flags = []
try:
    for entry in json.load(open(os.path.join(build, "compile_commands.json"), encoding="utf-8")):
        if entry["file"].endswith("kernels/cuda/device_info.cc"):
            args = shlex.split(entry["command"])
            for i, a in enumerate(args):
                if a in ("-I", "-isystem") and i + 1 < len(args):
                    flags += ["-isystem", args[i + 1]]
                elif a.startswith("-isystem="):
                    flags += ["-isystem", a[len("-isystem="):]]
                elif a.startswith("-isystem") and len(a) > len("-isystem"):
                    flags += ["-isystem", a[len("-isystem"):]]
                elif a.startswith("-I") and len(a) > 2:
                    flags += ["-isystem", a[2:]]
            break
except (OSError, ValueError, KeyError):
    pass
flags += ["-isystem", "/usr/local/cuda/include"]
src = ("#include <cuda_runtime_api.h>\n#include <cublas_api.h>\n#include <nccl.h>\n"
       "EXPERTMESH_VERSIONS CUDART_VERSION CUBLAS_VER_MAJOR CUBLAS_VER_MINOR CUBLAS_VER_PATCH "
       "NCCL_MAJOR NCCL_MINOR NCCL_PATCH\n")
out = subprocess.run(["c++", "-E", "-P", "-x", "c++", *flags, "-"], input=src, text=True,
                     capture_output=True)
line = [l for l in out.stdout.splitlines() if l.startswith("EXPERTMESH_VERSIONS")]
if out.returncode != 0 or not line:
    print("compiled_cudart=unknown\ncompiled_cublas=unknown\ncompiled_nccl=unknown")
    sys.exit(0)
v = [int(x.strip("()")) if x.strip("()").isdigit() else -1 for x in line[0].split()[1:]]
print(f"compiled_cudart={v[0] // 1000}.{v[0] % 1000 // 10}")
print(f"compiled_cublas={v[1]}.{v[2]}.{v[3]}")
print(f"compiled_nccl={v[4]}.{v[5]}.{v[6]}")
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
    compiled_versions "$build"
    echo "nvcc=$(nvcc --version 2>/dev/null | grep -oE 'V[0-9.]+' | tail -1)"
  } >"$carry/manifest"
  rm -rf "$tmp"
  local size
  size=$(du -sm "$carry" | cut -f1)
  echo "gpu-check stage: $carry is ${size} MiB (tests: ${tests[*]}; benches: ${benches[*]})"
  echo "gpu-check stage: compiled against $(grep '^compiled_' "$carry/manifest" | tr '\n' ' ')"
  ((size < 50)) || echo "gpu-check stage: warning: over 50 MiB; the device call carries 64 MiB"
  echo "next: device run, command \"bash tools/gpu-check.sh run call1\", carry [\"${carry#"$REPO"/}\"], timeout_s 330"
  echo "then: copy its gpu-results.md to ${carry#"$REPO"/}/call1-results.md; device run, command \"bash tools/gpu-check.sh run call2\", same carry, timeout_s 270"
}

# ---------------------------------------------------------------------------------------------
# run (GPU machine)
# ---------------------------------------------------------------------------------------------

CALL="" DEADLINE=0 LAYERS=8
START=$(now)
DRY="${EXPERTMESH_GPU_CHECK_DRY:-0}"
[[ "$DRY" == 1 ]] || DRY=0
FAKE="${EXPERTMESH_GPU_CHECK_FAKE:-}"  # a folder of logs standing in for every command's output
WORK=/tmp/gpu-check
LOGS="" SECTIONS=""
BIN="" LIB="" HOST_LIB_PATH="" SANITIZER="" ENVLIB="" GPU_NAME="" TEST_FILTER=""
declare -a STEPS=() TESTS=() BENCHES=() SUMMARY=() CALL1_TABLE=()
declare -A MANIFEST=() STATUS=() RERUN_WHY=()
PLAN_T=0  # dry run: the latest second (from the start) the current step can begin
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
# verdict WORD NOTE: the worse of the step's words so far wins; the notes add up.
verdict() {
  declare -A rank=([PASS]=0 [SKIPPED]=1 [BELOW-TARGET]=2 ["NOT RUN"]=3 [INCOMPLETE]=4 [FAIL]=5)
  local rank_new=${rank[$1]} rank_old=${rank[${STEP_STATUS:-PASS}]}
  ((rank_new >= rank_old)) && STEP_STATUS="$1"
  [[ -n "${2:-}" ]] && STEP_NOTE="${STEP_NOTE:+$STEP_NOTE; }$2"
  return 0
}
cut_verdict() { # cut_verdict RC WHAT: INCOMPLETE when RC says the cap cut it off, else FAIL
  if (($1 == 124 || $1 == 137)); then verdict INCOMPLETE "$2 cut off at its cap"; else verdict FAIL "$2 exited $1"; fi
}
# A command as the plan shows it: carried paths shortened, words with spaces or globs quoted.
show_cmd() {
  local out="" a
  for a in "$@"; do
    a="${a//"$BIN"\//bin/}"
    a="${a//"$LOGS"\//logs/}"
    [[ "$a" == LD_LIBRARY_PATH=* ]] && a="LD_LIBRARY_PATH=<carried libs>:<host CUDA libs>"
    [[ "$a" == --gtest_filter=* && ${#a} -gt 80 ]] && a="--gtest_filter=<the filter above>"
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then out+="$a "; else out+="'$a' "; fi
  done
  echo "${out% }"
}
# timed SECONDS LOG CMD...: runs CMD with its output in LOG, killed after SECONDS; returns its
# status (124 when cut off). Dry run: prints the command. Fake run: DIR's copy of the log (and
# of the reports the command names) stands in, with DIR/<log>.rc as the status.
timed() {
  local secs="$1" logf="$2"
  shift 2
  if ((DRY)); then
    printf '      $ %s   [%s s, > %s]\n' "$(show_cmd "$@")" "$secs" "${logf#"$LOGS"/}"
    : >"$logf"
    return 0
  fi
  if [[ -n "$FAKE" ]]; then
    local base a prev="" report
    base="$(basename "$logf")"
    if [[ -f "$FAKE/$base" ]]; then cp "$FAKE/$base" "$logf"; else echo "(no fake $base)" >"$logf"; fi
    for a in "$@"; do
      report=""
      [[ "$a" == --gtest_output=xml:* ]] && report="${a#--gtest_output=xml:}"
      [[ "$prev" == --json || "$prev" == --out ]] && report="$a"
      [[ -n "$report" && -f "$FAKE/$(basename "$report")" ]] && cp "$FAKE/$(basename "$report")" "$report"
      prev="$a"
    done
    [[ -f "$FAKE/$base.rc" ]] && return "$(cat "$FAKE/$base.rc")"
    return 0
  fi
  ((secs >= 5)) || return 124
  timeout --kill-after=10 "$secs" "$@" >"$logf" 2>&1
}
carried() { ((DRY)) || [[ -n "$FAKE" ]] || [[ -x "$BIN/$1" ]]; }
is_gvisor() { [[ "$(uname -r)" == 4.4.0* ]]; }
caps_sum() { # caps_sum STEP...: the sum of their caps
  local s=0 n
  for n in "$@"; do s=$((s + CAP[$n])); done
  echo "$s"
}

run_step() { # run_step NAME: its function under its cap, before the deadline
  local name="$1" cap="${CAP[$1]}" fn="step_${1//-/_}"
  local elapsed remaining floor t0
  elapsed=$(($(now) - START))
  ((DRY)) && elapsed=$((RESERVE - FINISH + PLAN_T))
  remaining=$((DEADLINE - elapsed - FINISH))
  floor=$((cap / 4 > 10 ? cap / 4 : 10))
  STEP="$name" STEP_STATUS="" STEP_NOTE=""
  printf '\n## %s\n\n' "$name" >"$SECTIONS/$name.md"
  if ((remaining < floor)); then
    record "$name" "NOT RUN" "deadline: ${remaining} s left before it, needs ${cap} (at least ${floor})" 0
    echo "gpu-check: step $name NOT RUN (deadline: ${remaining} s left)"
    return 0
  fi
  t0=$(now)
  STEP_END=$((t0 + (cap < remaining ? cap : remaining)))
  if ((DRY)); then
    echo "  $name: cap ${cap} s, starts by +${elapsed} s, ends by +$((elapsed + STEP_END - t0)) s"
  else
    echo "gpu-check: step $name (up to $((STEP_END - t0)) s)${RERUN_WHY[$name]:+, rerun: ${RERUN_WHY[$name]}}"
  fi
  "$fn"
  [[ -n "$STEP_STATUS" ]] || STEP_STATUS=PASS
  if ((DRY)); then
    STEP_STATUS="NOT RUN" STEP_NOTE="dry run: cap ${cap} s, would start by +${elapsed} s"
    ((cap > remaining)) && STEP_NOTE+=", cut to the ${remaining} s left"
    PLAN_T=$((PLAN_T + (cap < remaining ? cap : remaining)))
  fi
  [[ -n "${RERUN_WHY[$name]:-}" ]] && STEP_NOTE="rerun (call 1: ${RERUN_WHY[$name]})${STEP_NOTE:+; $STEP_NOTE}"
  record "$name" "$STEP_STATUS" "$STEP_NOTE" $(($(now) - t0))
  echo "gpu-check: step $name: $STEP_STATUS${STEP_NOTE:+ ($STEP_NOTE)}"
}
record() { # record NAME WORD NOTE SECONDS
  local note="${3//|/\\|}"
  STATUS[$1]="$2"
  SUMMARY+=("| $1 | $2 | ${note//$'\n'/ } | $4 | ${CAP[$1]} |")
  write_results
}

# Directories holding `name` on this machine: the loader's cache, the CUDA toolkit, and the
# NVIDIA wheels of the python3 that has torch.
find_host_lib() {
  local name="$1" d
  d="$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')"
  if [[ -n "$d" ]]; then dirname "$d"; return 0; fi
  local -a roots=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda*/lib64
    /usr/local/cuda/lib)
  local site
  site="$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)"
  for d in $site; do roots+=("$d/nvidia"); done
  local hit
  hit="$(find "${roots[@]}" -name "$name" -print -quit 2>/dev/null)"
  [[ -n "$hit" ]] && dirname "$hit"
}

setup_run() {
  local carry="$1" build="$2"
  ((DRY)) || [[ -n "$FAKE" ]] && WORK=/tmp/gpu-check-rehearsal
  LOGS="$WORK/logs" SECTIONS="$WORK/sections"
  # A checkpoint from an earlier call on this machine stays (ensure_model reuses it).
  rm -rf "$LOGS" "$SECTIONS" "$WORK/payload"
  mkdir -p "$LOGS" "$SECTIONS"
  if [[ -n "$build" ]]; then
    BIN="$build/bin"
    [[ -d "$BIN" ]] || die "no $BIN"
    MANIFEST[source_dir]="$REPO" MANIFEST[binary_dir]="$build" MANIFEST[commit]="(build tree)"
    mapfile -t TESTS < <(cuda_test_binaries "$build")
    local b
    for b in gemm_bench attention_bench fp8_gemm_bench q4_gemm_bench cuda_model_bench cuda_serving_bench; do
      [[ -x "$BIN/$b" ]] && BENCHES+=("$b")
    done
    local key value
    while IFS='=' read -r key value; do
      [[ -n "$key" ]] && MANIFEST[$key]="$value"
    done < <(compiled_versions "$build")
  elif ((DRY)) || [[ -n "$FAKE" ]]; then
    # Rehearsal: the manifest when stage made one, else the test list of the build tree here.
    BIN="$WORK/payload/bin" LIB="$WORK/payload/lib"
    local key value
    if [[ -f "$carry/manifest" ]]; then
      while IFS='=' read -r key value; do
        [[ -n "$key" ]] && MANIFEST[$key]="$value"
      done <"$carry/manifest"
    else
      MANIFEST[tests]="$(cuda_test_binaries "$REPO/build" 2>/dev/null | tr '\n' ' ')"
      MANIFEST[benches]="attention_bench cuda_model_bench cuda_serving_bench fp8_gemm_bench gemm_bench q4_gemm_bench"
      MANIFEST[binary_dir]="$WORK/build" MANIFEST[source_dir]="$REPO" MANIFEST[commit]="(rehearsal)"
      while IFS='=' read -r key value; do
        [[ -n "$key" ]] && MANIFEST[$key]="$value"
      done < <(compiled_versions "$REPO/build")
    fi
    read -r -a TESTS <<<"${MANIFEST[tests]:-}"
    ((${#TESTS[@]})) || TESTS=(cuda_device_test cuda_gemm_test cuda_paged_attention_test golden_cuda_test)
    read -r -a BENCHES <<<"${MANIFEST[benches]:-}"
    MANIFEST[binary_dir]="$WORK/build"
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
  mkdir -p "${MANIFEST[binary_dir]}"
  # The test binaries read tests/golden through the source path they were built with.
  local src="${MANIFEST[source_dir]}"
  if ((!DRY)) && [[ -z "$FAKE" ]] && [[ "$(cd "$src" 2>/dev/null && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]]; then
    [[ -e "$src" ]] && die "$src exists and is not this checkout; the tests would read other data"
    { mkdir -p "$(dirname "$src")" && ln -s "$REPO" "$src"; } || die "cannot link $src to $REPO"
  fi
  local lib dirs=""
  for lib in ${MANIFEST[host_libs]:-libcublasLt.so.13 libnccl.so.2}; do
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
  if ((DRY)) || [[ -n "$FAKE" ]]; then SANITIZER="${SANITIZER:-compute-sanitizer}"; fi
  return 0
}

step_gpu() {
  local kernel runtime
  kernel="$(uname -r)"
  runtime="$(is_gvisor && echo gVisor || echo "Firecracker or other")"
  {
    echo "- commit ${MANIFEST[commit]:-?} (uncommitted files at staging: ${MANIFEST[dirty]:-?}), staged ${MANIFEST[staged_at]:-?}"
    echo "- kernel $kernel ($runtime); glibc $(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
    echo "- host library path: ${HOST_LIB_PATH:-none found}"
    echo "- compute-sanitizer: ${SANITIZER:-not found}$(is_gvisor && echo ' (gVisor: it refuses the device here)')"
    echo "- python3: $(python3 -c 'from importlib.metadata import version, PackageNotFoundError
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
print("torch", v("torch"), "transformers", v("transformers"))' 2>&1 | tail -1)"
  } | section
  if ! timed 10 "$LOGS/nvidia-smi.txt" nvidia-smi \
    --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; then
    verdict FAIL "nvidia-smi failed"
  fi
  GPU_NAME="$(awk -F', ' 'NR == 2 {print $1 " (driver " $3 ")"}' "$LOGS/nvidia-smi.txt")"
  log_block "$LOGS/nvidia-smi.txt"
  local need="${MANIFEST[glibc_max]:-}" have
  have="$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
  if [[ -n "$need" && -n "$have" ]] &&
    [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n | tail -1)" != "$have" ]]; then
    verdict FAIL "carried binaries need glibc $need, this machine has $have"
  fi
  local b missing=""
  for b in "$BIN"/*; do
    [[ -f "$b" ]] || continue
    ours ldd "$b" | grep -q 'not found' &&
      missing+=" $(basename "$b"):$(ours ldd "$b" | awk '/not found/ {print $1}' | tr '\n' ',')"
  done
  [[ -z "$missing" ]] || verdict FAIL "unresolved libraries:$missing"
  [[ -n "$GPU_NAME" ]] && verdict PASS "$GPU_NAME, $runtime"
}

# The driver and the libraries the binaries load here against the headers they were compiled
# with: an older libnccl.so.2 may reject the newer ncclConfig_t, an older cuBLAS lack what the
# headers promised. Mismatches print WARNING lines (also on stdout, for the device call's tail).
step_versions() {
  local line="" rc
  if carried gemm_bench; then
    timed 10 "$LOGS/gemm_bench-versions.log" env LD_LIBRARY_PATH="$ENVLIB" "$BIN/gemm_bench" --versions
    line="$(grep -m1 '^versions ' "$LOGS/gemm_bench-versions.log")"
  fi
  local -A v=()
  local kv
  for kv in $line; do [[ "$kv" == *=* ]] && v[${kv%%=*}]="${kv#*=}"; done
  local cudart="${MANIFEST[compiled_cudart]:-${v[compiled_cudart]:-unknown}}"
  local cublas="${MANIFEST[compiled_cublas]:-${v[compiled_cublas]:-unknown}}"
  local nccl="${MANIFEST[compiled_nccl]:-unknown}"
  local -a bins=()
  local b
  for b in "${TESTS[@]}" "${BENCHES[@]}" expertmesh expertmesh-worker; do bins+=("$BIN/$b"); done
  timed $(($(left) > 5 ? $(left) : 5)) "$LOGS/lib-versions.log" python3 "$REPO/tools/gpu/lib_versions.py" \
    --compiled "cudart=$cudart" "cublas=$cublas" "nccl=$nccl" --ld-library-path "$ENVLIB" \
    --binaries "${bins[@]}"
  rc=$?
  {
    echo "Compiled against (headers at staging${MANIFEST[nvcc]:+, nvcc ${MANIFEST[nvcc]}}): CUDA runtime $cudart, cuBLAS $cublas, NCCL $nccl. Loaded here:"
    echo
    grep -E '^\|' "$LOGS/lib-versions.log"
    echo
    [[ -n "$line" ]] && echo "gemm_bench --versions (in the process): \`$line\`"
    grep -E '^WARNING' "$LOGS/lib-versions.log" | sed 's/^/- **/; s/$/**/'
  } | section
  grep -E '^WARNING' "$LOGS/lib-versions.log" | sed 's/^/gpu-check: /'
  local note
  note="$(sed -n 's/^verdict=[A-Z-]* note=//p' "$LOGS/lib-versions.log")"
  case "$rc" in
    0) verdict PASS "$note" ;;
    4) verdict BELOW-TARGET "loaded older than compiled: $note" ;;
    124 | 137) verdict INCOMPLETE "lib_versions.py cut off" ;;
    *) verdict FAIL "${note:-lib_versions.py exited $rc}" ;;
  esac
  # The in-process view must agree with the ldd one (a binary could load another file).
  if [[ -n "${v[loaded_cublasLt]:-}" ]] && ! grep -q "| cublasLt | [^|]* | ${v[loaded_cublasLt]} " "$LOGS/lib-versions.log"; then
    verdict FAIL "gemm_bench loaded cuBLASLt ${v[loaded_cublasLt]}, not what ldd resolves"
  fi
}

# run_gtests BINARY...: each binary's cases (TEST_FILTER when set) with a report; the step's
# time is shared so that one hung binary cannot starve the others.
run_gtests() {
  local n=$# i=0 t rc l share reports=()
  for t in "$@"; do
    i=$((i + 1))
    if ! carried "$t"; then
      verdict FAIL "$t not carried (stage again)"
      continue
    fi
    l=$(left)
    if ((l < 10)); then
      verdict INCOMPLETE "$t not run (step time used up)"
      continue
    fi
    # All that is left but 8 s for each binary after this one: a hung binary costs the step,
    # not the reports of the others.
    share=$((l - 8 * (n - i)))
    ((share < 10)) && share=10
    local -a filter=()
    if [[ -n "$TEST_FILTER" ]]; then
      filter=(--gtest_filter="$TEST_FILTER")
      (cd "${MANIFEST[binary_dir]}" && timed 15 "$LOGS/$t.list" env LD_LIBRARY_PATH="$ENVLIB" \
        "$BIN/$t" --gtest_list_tests "${filter[@]}")
      if ((!DRY)) && ! grep -q '^  ' "$LOGS/$t.list"; then
        echo "- $t: no case matches $TEST_FILTER" | section
        continue
      fi
    fi
    (cd "${MANIFEST[binary_dir]}" && timed "$share" "$LOGS/$t.log" env LD_LIBRARY_PATH="$ENVLIB" \
      "$BIN/$t" --gtest_output="xml:$LOGS/$t.xml" "${filter[@]}")
    rc=$?
    if ((rc == 124 || rc == 137)); then
      verdict INCOMPLETE "$t cut off after ${share} s"
    elif [[ ! -f "$LOGS/$t.xml" ]]; then
      verdict FAIL "$t exited $rc without a report"
      tail -20 "$LOGS/$t.log" | sed 's/^/    /' | section
    fi
    [[ -f "$LOGS/$t.xml" ]] && reports+=("$LOGS/$t.xml")
  done
  ((${#reports[@]})) || { verdict FAIL "no test reports"; return; }
  python3 "$REPO/tools/gpu/gtest_summary.py" "${reports[@]}" >"$LOGS/$STEP-summary.txt" 2>&1
  rc=$?
  log_block "$LOGS/$STEP-summary.txt"
  local counts
  counts="$(awk '/ tests=/ {for (i = 1; i <= NF; i++) {split($i, kv, "="); s[kv[1]] += kv[2]}}
    END {printf "%d cases: %d passed, %d failed, %d skipped", s["tests"], s["passed"], s["failed"], s["skipped"]}' \
    "$LOGS/$STEP-summary.txt")"
  if ((rc == 0)); then verdict PASS "$counts"; else verdict FAIL "$counts; a failure or a skip for want of a GPU (see the list)"; fi
}

step_tests() {
  local -a bins=()
  local t
  for t in "${TESTS[@]}"; do [[ "$t" == "$GOLDEN_TEST" ]] || bins+=("$t"); done
  [[ -n "$TEST_FILTER" ]] && echo "gtest filter: \`$TEST_FILTER\`" | section
  run_gtests "${bins[@]}"
}

step_golden() {
  echo "The golden models on CudaBackend against the CPU backend and the reference logits, CUDA graphs on and off." | section
  run_gtests "$GOLDEN_TEST"
}

step_kernels() {
  local b rc
  for b in gemm_bench attention_bench fp8_gemm_bench q4_gemm_bench; do
    carried "$b" || { verdict FAIL "$b not carried"; continue; }
    timed $(($(left) * 2 / 3)) "$LOGS/$b.log" env LD_LIBRARY_PATH="$ENVLIB" "$BIN/$b"
    rc=$?
    ((rc == 0)) || cut_verdict "$rc" "$b"
    grep -q 'no CUDA GPU on this machine' "$LOGS/$b.log" && verdict FAIL "$b saw no GPU"
    log_block "$LOGS/$b.log"
  done
  # The grouped GEMM's target: ratio_vs_dense >= GEMM_TARGET on every prefill case of path auto.
  local worst
  worst="$(awk '/^grouped_prefill / && / path=auto / {
      r = ""; c = ""
      for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "ratio_vs_dense") r = kv[2]
        if (kv[1] == "tokens" || kv[1] == "proj") c = c " " $i
      }
      if (r != "" && (n == 0 || r + 0 < min + 0)) { min = r; at = c }
      if (r != "") n++
    } END { if (n) print min, n, at }' "$LOGS/gemm_bench.log")"
  if [[ -z "$worst" ]]; then
    [[ -s "$LOGS/gemm_bench.log" ]] && verdict FAIL "no grouped_prefill path=auto line from gemm_bench"
    return
  fi
  local ratio count at
  read -r ratio count at <<<"$worst"
  if awk -v r="$ratio" -v t="$GEMM_TARGET" 'BEGIN {exit !(r >= t)}'; then
    verdict PASS "grouped GEMM prefill ratio_vs_dense >= $ratio over $count cases: goal $GEMM_TARGET met"
  else
    verdict BELOW-TARGET "grouped GEMM prefill ratio_vs_dense $ratio ($at) below the goal $GEMM_TARGET"
  fi
  grep -q '^warning: dense baseline' "$LOGS/gemm_bench.log" &&
    verdict FAIL "the dense baseline did not run on cuBLASLt's tensor cores (see the log)"
  return 0
}

# sanitize TOOL: compute-sanitizer --tool TOOL over the small grouped-GEMM and attention cases.
sanitize() {
  local tool="$1"
  if [[ -z "$SANITIZER" ]]; then
    verdict SKIPPED "compute-sanitizer is not on this machine"
    return
  fi
  if ((!DRY)) && [[ -z "$FAKE" ]] && is_gvisor; then
    verdict SKIPPED "gVisor (kernel $(uname -r)): compute-sanitizer refuses the device there ('Device not supported'); a Firecracker machine runs it"
    return
  fi
  local pair t filter rc share errors i=0 lines=()
  local -a pairs=("$SAN_GEMM_TEST|$SAN_FILTER_GEMM" "$SAN_ATTN_TEST|$SAN_FILTER_ATTN")
  for pair in "${pairs[@]}"; do
    i=$((i + 1))
    t="${pair%%|*}" filter="${pair#*|}"
    echo "- $t --gtest_filter='$filter'" | section
    echo "      gtest filter for $t: $filter"
    carried "$t" || { verdict FAIL "$t not carried"; continue; }
    share=$(($(left) - 10 * (${#pairs[@]} - i)))
    if ((share < 8)); then
      verdict INCOMPLETE "$t not run (step time used up)"
      continue
    fi
    local log="$LOGS/$tool-$t.log"
    (cd "${MANIFEST[binary_dir]}" && timed "$share" "$log" env LD_LIBRARY_PATH="$ENVLIB" \
      "$SANITIZER" --tool "$tool" --error-exitcode 99 --print-limit 20 "$BIN/$t" \
      --gtest_filter="$filter" --gtest_output="xml:$LOGS/$tool-$t.xml")
    rc=$?
    errors="$(grep -oE '(ERROR SUMMARY: [0-9]+|RACECHECK SUMMARY: [0-9]+ hazard)' "$log" | tail -1 | grep -oE '[0-9]+' | head -1)"
    local cases
    cases="$(grep -oE '^\[==========\] [0-9]+ tests? from [0-9]+ test suites? ran' "$log" | grep -oE '^\[==========\] [0-9]+' | grep -oE '[0-9]+')"
    if grep -qiE 'device not supported|not supported on this platform' "$log"; then
      verdict SKIPPED "compute-sanitizer refused the device"
      lines+=("$t: the sanitizer refused the device")
      break
    elif ((rc == 124 || rc == 137)); then
      verdict INCOMPLETE "$t cut off after ${share} s"
      lines+=("$t: cut off after ${share} s (errors so far: ${errors:-none reported})")
    elif ((rc == 99)) || [[ -n "$errors" && "$errors" != 0 ]]; then
      verdict FAIL "$t: ${errors:-?} $tool errors"
      lines+=("$t: ${errors:-?} errors")
      grep -E '^========= (Invalid|Program hit|Address|Saved host|Error: Race|Warning: Race|    at|Race reported)' "$log" |
        head -30 | sed 's/^/    /' | section
    elif ((rc != 0)); then
      verdict FAIL "$t failed under $tool (exit $rc)"
      lines+=("$t: exit $rc, ${errors:-?} $tool errors")
      grep -E '^\[  FAILED  \]' "$log" | head -10 | sed 's/^/    /' | section
    elif ((!DRY)) && [[ "${cases:-0}" == 0 ]]; then
      verdict FAIL "$t: the filter matched no case"
      lines+=("$t: no case ran")
    else
      lines+=("$t: clean, ${cases:-?} cases, ${errors:-0} errors")
    fi
  done
  ((${#lines[@]})) || return 0
  printf -- '- %s\n' "${lines[@]}" | section
  local joined
  joined="$(printf '%s; ' "${lines[@]}")"
  [[ -z "$STEP_STATUS" || "$STEP_STATUS" == PASS ]] && verdict PASS "${joined%; }"
  return 0
}
step_memcheck() { sanitize memcheck; }
step_racecheck() { sanitize racecheck; }

MODEL_DIR="" MODEL_MADE=0
ensure_model() {
  MODEL_DIR="$WORK/qwen3-30b-a3b-shape-${LAYERS}l"
  [[ -f "$MODEL_DIR/config.json" && -f "$MODEL_DIR/.complete" ]] && return 0
  ((MODEL_MADE)) && return 0 # a rehearsal's checkpoint, made by an earlier step
  local need_gb=$((LAYERS * 5 / 4 + 2)) avail_gb
  avail_gb=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1048576))
  if ((!DRY)) && [[ -z "$FAKE" ]] && ((avail_gb < need_gb)); then
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
    cut_verdict "$rc" make-model
    log_block "$LOGS/make-model.log"
    return 1
  fi
  if ((DRY)) || [[ -n "$FAKE" ]]; then
    MODEL_MADE=1
    return 0
  fi
  touch "$MODEL_DIR/.complete"
  echo "make-model: ${LAYERS} layers in $(($(now) - t0)) s, $(du -sh "$MODEL_DIR" | cut -f1)" | section
  return 0
}

step_checkpoint() {
  local t0
  t0=$(now)
  ensure_model || return
  verdict PASS "$MODEL_DIR, ${LAYERS} of 48 layers, $(du -sh "$MODEL_DIR" 2>/dev/null | cut -f1) ($(($(now) - t0)) s)"
}

ratio_of() { # ratio_of KIND LOG: ratio_vs_copy of the batch=1 line of that kind
  grep -E "^$1 batch=1 " "$2" | grep -oE 'ratio_vs_copy=[0-9.]+' | head -1 | cut -d= -f2
}

step_model() {
  ensure_model || return
  timed "$(left)" "$LOGS/model_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
    "$BIN/cuda_model_bench" "$MODEL_DIR" --steps 32 --context 256
  local rc=$?
  log_block "$LOGS/model_bench.log"
  ((rc == 0)) || { cut_verdict "$rc" cuda_model_bench; return; }
  if grep -q 'no CUDA GPU on this machine' "$LOGS/model_bench.log"; then
    verdict FAIL "cuda_model_bench saw no GPU"
    return
  fi
  local on off speedup
  on="$(ratio_of decode "$LOGS/model_bench.log")"
  off="$(ratio_of decode_eager "$LOGS/model_bench.log")"
  speedup="$(grep -E '^cuda_graph batch=1 ' "$LOGS/model_bench.log" | grep -oE 'speedup=[0-9.]+' | cut -d= -f2)"
  local also="graphs off ${off:-?}, graphs on/off speedup ${speedup:-?}x; ${LAYERS} of 48 layers"
  if [[ -z "$on" ]]; then
    ((DRY)) || verdict FAIL "no batch-1 ratio (graphs on) in the output"
  elif awk -v r="$on" -v t="$TARGET_RATIO" 'BEGIN {exit !(r >= t)}'; then
    verdict PASS "batch-1 weight BW / copy BW $on with CUDA graphs: goal $TARGET_RATIO met ($also)"
  else
    verdict BELOW-TARGET "batch-1 weight BW / copy BW $on with CUDA graphs, goal $TARGET_RATIO ($also)"
  fi
}

make_schedules() { # make_schedules: the serving schedules (rates 4, 16, all at once) into logs/
  local rate
  for rate in 4 16 inf; do
    [[ -f "$LOGS/schedule_$rate.txt" ]] && continue
    python3 "$REPO/tools/gpu/schedule.py" --rate "$rate" --count 24 --seed 1 \
      --out "$LOGS/schedule_$rate.txt" || return 1
  done
}

step_serving() {
  ensure_model || return
  local p=256 o=64 n=24 rate scheds=()
  make_schedules || { verdict FAIL "schedule.py failed"; return; }
  for rate in 4 16 inf; do scheds+=("$LOGS/schedule_$rate.txt"); done
  # Ours first, with 2/5 of the step (transformers loads slower); transformers' serving loop
  # only (--skip-decode: its decode and prefill numbers are the hf-decode step).
  timed $(($(left) * 2 / 5)) "$LOGS/serving_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
    "$BIN/cuda_serving_bench" "$MODEL_DIR" "$p" "$o" "${scheds[@]}"
  local rc=$?
  ((rc == 0)) || cut_verdict "$rc" cuda_serving_bench
  timed "$(left)" "$LOGS/hf_bench.log" env PYTHONUNBUFFERED=1 python3 "$REPO/tools/gpu/hf_bench.py" \
    "$MODEL_DIR" --prompt-len "$p" --output-len "$o" --skip-decode \
    --schedules "${scheds[@]}" --out "$LOGS/hf_bench.json"
  rc=$?
  ((rc == 0)) || cut_verdict "$rc" hf_bench.py
  echo "Prompts of $p tokens, $o output tokens each, $n requests per schedule." | section
  python3 "$REPO/tools/gpu/compare.py" "$LOGS/model_bench.log" "$LOGS/serving_bench.log" \
    "$LOGS/hf_bench.log" | section
  echo | section
  log_block "$LOGS/serving_bench.log"
  log_block "$LOGS/hf_bench.log" '^(hf_|serving|Traceback|[A-Za-z]*Error)'
  local measured
  measured="$(grep -c '^serving ' "$LOGS/serving_bench.log")"
  [[ -z "$STEP_STATUS" ]] && verdict PASS "$measured schedules served (no numeric target: see the tables)"
  return 0
}

step_hf_decode() {
  ensure_model || return
  timed "$(left)" "$LOGS/hf_decode.log" env PYTHONUNBUFFERED=1 python3 "$REPO/tools/gpu/hf_bench.py" \
    "$MODEL_DIR" --context 256 --steps 32
  local rc=$?
  ((rc == 0)) || cut_verdict "$rc" hf_bench.py
  python3 "$REPO/tools/gpu/compare.py" "$LOGS/model_bench.log" "$LOGS/hf_decode.log" | section
  log_block "$LOGS/hf_decode.log" '^(hf_|Traceback|[A-Za-z]*Error)'
  return 0
}

step_cli_bench() {
  local b
  for b in expertmesh expertmesh-worker expertmesh-router; do
    carried "$b" || { verdict FAIL "$b not carried (stage again)"; return; }
  done
  if ! timed 10 "$LOGS/cli-bench-help.log" env LD_LIBRARY_PATH="$ENVLIB" "$BIN/expertmesh" bench --help; then
    verdict FAIL "the carried expertmesh has no bench subcommand"
    return
  fi
  ensure_model || return
  # Loading the checkpoint onto the GPU and three schedules take about 40 s; less than that
  # would only cut the run off.
  if (($(left) < 40)); then
    verdict "NOT RUN" "$(left) s left, needs 40 (rerun: run call2 cli-bench)"
    return
  fi
  # The serving step's schedules (the same arrivals as cuda_serving_bench and hf_bench.py; made
  # again, identically, when that step did not run in this call).
  local p=256 o=64 rate scheds=()
  make_schedules || { verdict FAIL "schedule.py failed"; return; }
  for rate in 4 16 inf; do scheds+=(--schedule "$LOGS/schedule_$rate.txt"); done
  # Router + one worker group on the GPU, on a free port; `timeout` bounds it whatever happens
  # (it passes its SIGTERM on to serve, which stops the router, then the worker).
  local serve_log="$LOGS/cli-serve.log" url="" serve_pid="" t0
  local -a serve=(env LD_LIBRARY_PATH="$ENVLIB" "$BIN/expertmesh" serve "$MODEL_DIR" --device cuda
    --http-port 0 --grpc-port -1 --kv-budget 4GiB --max-running 64 --grace-s 2
    --ready-timeout-s $(($(left) - 20)))
  t0=$(now)
  : >"$serve_log"
  if ((DRY)); then
    printf '      $ %s &   [%s s, > logs/cli-serve.log; waits for its HTTP address]\n' "$(show_cmd "${serve[@]}")" "$(left)"
    url="http://127.0.0.1:PORT"
  elif [[ -n "$FAKE" ]]; then
    url="http://127.0.0.1:0"  # fake: no server; the bench's log and --json come from FAKE
  else
    timeout --kill-after=10 "$(left)" "${serve[@]}" >"$serve_log" 2>&1 &
    serve_pid=$!
    while (($(left) > 20)) && kill -0 "$serve_pid" 2>/dev/null; do
      url="$(grep -oE 'OpenAI-compatible HTTP API at http://[^ ]+' "$serve_log" | head -1 |
        awk '{print $NF}')"
      [[ -n "$url" ]] && break
      sleep 1
    done
  fi
  local rc=0 ready_s=$(($(now) - t0))
  if [[ -z "$url" ]]; then
    if kill -0 "$serve_pid" 2>/dev/null; then
      verdict INCOMPLETE "expertmesh serve not ready in time"
    else
      verdict FAIL "expertmesh serve exited before it was ready"
    fi
  else
    timed $(($(left) - 10)) "$LOGS/cli_bench.log" env LD_LIBRARY_PATH="$ENVLIB" \
      "$BIN/expertmesh" bench --url "$url" "${scheds[@]}" --prompt-tokens "$p" \
      --output-tokens "$o" --model-dir "$MODEL_DIR" --warmup 4 --max-concurrency 64 \
      --request-timeout-s 60 --json "$LOGS/cli_bench.json"
    rc=$?
  fi
  if [[ -n "$serve_pid" ]]; then
    kill -TERM "$serve_pid" 2>/dev/null
    local i
    for ((i = 0; i < 10; ++i)); do
      kill -0 "$serve_pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL "$serve_pid" 2>/dev/null
    wait "$serve_pid" 2>/dev/null
  fi
  if [[ -z "$url" ]]; then
    tail -30 "$serve_log" >"$LOGS/cli-serve-tail.log"
    log_block "$LOGS/cli-serve-tail.log"
    return
  fi
  echo "\`expertmesh bench\` over HTTP against \`expertmesh serve --device cuda\` (router + one worker, ready in ${ready_s} s): the serving schedules, $p-token prompts, $o output tokens (ignore_eos), 4 warm-up requests first. \`expertmesh_http\` beside the in-process engine and transformers (when the serving step ran in this call):" | section
  echo | section
  python3 "$REPO/tools/gpu/compare.py" "$LOGS/serving_bench.log" "$LOGS/hf_bench.log" \
    "$LOGS/cli_bench.log" | sed -n '/^### Serving/,$p' | section
  echo | section
  log_block "$LOGS/cli_bench.log" '^(==|  |serving|expertmesh bench|warm-up)'
  if ((rc == 124 || rc == 137)); then
    verdict INCOMPLETE "expertmesh bench cut off"
  elif [[ ! -f "$LOGS/cli_bench.json" ]]; then
    ((DRY)) || verdict FAIL "expertmesh bench exited $rc without results"
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
      verdict PASS "every request completed (no numeric target): ${summary#* }"
    fi
  fi
}

write_results() {
  local dir
  dir="$(dirname "$RESULTS")"
  mkdir -p "$dir"
  local caps
  caps="$(caps_sum "${STEPS[@]}")"
  {
    echo "# GPU check results: ${CALL:-steps ${STEPS[*]}}"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), ${GPU_NAME:-GPU not read}$( ((DRY)) && echo ', DRY RUN (nothing ran)')$([[ -n "$FAKE" ]] && echo ", FAKE RUN (logs from $FAKE)"), commit ${MANIFEST[commit]:-?}, deadline ${DEADLINE} s (steps' caps ${caps} s + ${RESERVE} s reserve), $(($(now) - START)) s so far"
    echo
    echo "Words: PASS ran and met its target (no numeric target: ran clean); BELOW-TARGET ran, a number missed its goal (the note gives both); FAIL; INCOMPLETE hit its cap; NOT RUN the deadline came first; SKIPPED could not run here (the note says why)."
    echo
    echo "## ${CALL:-run}"
    echo
    echo "| step | result | note | seconds | cap |"
    echo "|---|---|---|---|---|"
    ((${#SUMMARY[@]})) && printf '%s\n' "${SUMMARY[@]}"
    local s
    if ((!DRY)); then
      for s in "${STEPS[@]}"; do [[ -f "$SECTIONS/$s.md" ]] && cat "$SECTIONS/$s.md"; done
    fi
    if ((${#CALL1_TABLE[@]})); then
      echo
      echo "## call1, as read from its results file"
      echo
      echo "| step | result | note | seconds | cap |"
      echo "|---|---|---|---|---|"
      printf '%s\n' "${CALL1_TABLE[@]}"
    fi
  } >"$RESULTS"
  ((DRY)) || tar -C "$WORK" -czf "$dir/gpu-logs.tar.gz" logs 2>/dev/null
  return 0
}

# read_call1 FILE: the steps call 1's table reports FAIL, INCOMPLETE or NOT RUN (into RERUN_WHY)
# and the table itself (into CALL1_TABLE).
read_call1() {
  local file="$1" line name word
  [[ -f "$file" ]] || return 0
  local in_table=0
  while IFS= read -r line; do
    if [[ "$line" == "## call1"* || "$line" == "## run"* ]]; then in_table=1; continue; fi
    [[ "$line" == "## "* ]] && in_table=0
    ((in_table)) || continue
    [[ "$line" =~ ^\|\ ([a-z-]+)\ \|\ ([A-Z -]+)\ \| ]] || continue
    name="${BASH_REMATCH[1]}" word="${BASH_REMATCH[2]}"
    [[ "$name" == step ]] && continue
    CALL1_TABLE+=("$line")
    [[ -n "${CAP[$name]:-}" ]] || continue
    case "$word" in
      FAIL | "NOT RUN") RERUN_WHY[$name]="$word" ;;
      INCOMPLETE) RERUN_WHY[$name]="$word, cap doubled" CAP[$name]=$((2 * CAP[$name])) ;;
    esac
  done <"$file"
  return 0
}

# plan_steps ARRAY_NAME "EXTRA..." SKIP_LIST: STEPS = the array's steps, the extra ones and
# call 1's failures, in STEP_ORDER, less the skipped ones; ADDED = the caps of the steps the
# array did not have (they lengthen the call's deadline).
ADDED=0
plan_steps() {
  local -n own_steps_ref=$1
  local extra_list="$2" skip="$3" name
  local -A want=() own=()
  for name in "${own_steps_ref[@]}"; do want[$name]=1 own[$name]=1; done
  for name in $extra_list; do want[$name]=1; done
  STEPS=() ADDED=0
  for name in "${STEP_ORDER[@]}"; do
    [[ -n "${want[$name]:-}" ]] || continue
    [[ ",$skip," == *",$name,"* ]] && continue
    STEPS+=("$name")
    [[ -n "${own[$name]:-}" ]] || ADDED=$((ADDED + CAP[$name]))
  done
}

# shellcheck disable=SC2034 # own_steps is read through plan_steps' nameref
run_main() {
  local carry="$REPO/build/gpu-carry" build="" from="" skip="" steps_opt="" deadline_opt=""
  local -a extras=()
  while (($#)); do
    case "$1" in
      call1 | call2) [[ -z "$CALL" ]] || die "run: one call at a time"; CALL="$1"; shift ;;
      --carry) carry="$2"; shift 2 ;;
      --build) build="$(cd "$2" && pwd)" || die "no directory $2"; shift 2 ;;
      --steps) steps_opt="$2"; shift 2 ;;
      --deadline) deadline_opt="$2"; shift 2 ;;
      --layers) LAYERS="$2"; shift 2 ;;
      --results) RESULTS="$2"; shift 2 ;;
      --from) from="$2"; shift 2 ;;
      --skip) skip="$2"; shift 2 ;;
      --dry-run) DRY=1; shift ;;
      tests=*) TEST_FILTER="${1#tests=}"; extras+=(tests); shift ;;
      -*) die "run: unknown option $1" ;;
      *) [[ -n "${CAP[$1]:-}" ]] || die "run: no step $1 (steps: ${STEP_ORDER[*]})"; extras+=("$1"); shift ;;
    esac
  done
  [[ -z "$deadline_opt" || "$deadline_opt" =~ ^[0-9]+$ ]] || die "--deadline takes seconds"
  [[ "$LAYERS" =~ ^[0-9]+$ && "$LAYERS" -ge 1 ]] || die "--layers takes a positive integer"
  local name
  for name in ${skip//,/ } ${steps_opt//,/ }; do
    [[ -n "${CAP[$name]:-}" ]] || die "run: no step $name (steps: ${STEP_ORDER[*]})"
  done
  if [[ -z "$RESULTS" ]]; then
    if ((DRY)) || [[ -n "$FAKE" ]]; then
      RESULTS="${OUT:-/tmp/gpu-check-rehearsal-out}/gpu-results.md"
    else
      RESULTS="${OUT:-/tmp/gpu-check-out}/gpu-results.md"
    fi
  fi
  [[ -n "$from" || "$CALL" != call2 ]] || from="$carry/call1-results.md"
  [[ -z "$from" || -f "$from" || "$from" == "$carry/call1-results.md" ]] || die "no file $from"
  local -a own_steps=()
  local own_deadline
  if [[ -n "$steps_opt" ]]; then
    [[ -z "$CALL" ]] || die "run: --steps or a call, not both"
    read -r -a own_steps <<<"${steps_opt//,/ }"
    plan_steps own_steps "${extras[*]}" "$skip"
    own_deadline=$(($(caps_sum "${STEPS[@]}") + RESERVE)) ADDED=0
  else
    if [[ -z "$CALL" ]]; then
      CALL=call1
      echo "gpu-check: no call named; running call1"
    fi
    if [[ "$CALL" == call1 ]]; then
      own_steps=("${CALL1_STEPS[@]}") own_deadline=$CALL1_DEADLINE
    else
      own_steps=("${CALL2_STEPS[@]}") own_deadline=$CALL2_DEADLINE
      [[ -n "$from" ]] || from="$carry/call1-results.md"
      [[ -f "$from" || "$from" == "$carry/call1-results.md" ]] || die "no file $from"
      read_call1 "$from"
    fi
    plan_steps own_steps "${extras[*]} ${!RERUN_WHY[*]}" "$skip"
  fi
  DEADLINE="${deadline_opt:-$((own_deadline + ADDED))}"
  ((${#STEPS[@]})) || die "run: no step left to run"

  setup_run "$carry" "$build"
  local caps
  caps="$(caps_sum "${STEPS[@]}")"
  echo "gpu-check run ${CALL:-steps}: ${STEPS[*]}"
  echo "gpu-check: deadline ${DEADLINE} s (caps ${caps} s + ${RESERVE} s reserve$( ((ADDED)) && echo "; ${ADDED} s added for steps beyond the call's own")); device timeout_s $((DEADLINE + 30))"
  ((${#RERUN_WHY[@]})) && echo "gpu-check: rerunning from $from: $(for n in "${!RERUN_WHY[@]}"; do printf '%s (%s) ' "$n" "${RERUN_WHY[$n]}"; done)"
  if ((caps + RESERVE > DEADLINE)); then
    echo "gpu-check: WARNING: the caps add up to $((caps + RESERVE)) s with the reserve, over the ${DEADLINE} s deadline: the last steps may be NOT RUN"
  fi
  if [[ "$CALL" == call2 ]] && ((DEADLINE > 330)); then
    echo "gpu-check: WARNING: call 2 of ${DEADLINE} s may not fit the 15 minutes of device time after call 1 (about 7 with its start): --skip a step or name fewer"
  fi
  ((DEADLINE <= MAX_DEADLINE)) ||
    echo "gpu-check: WARNING: a ${DEADLINE} s deadline leaves no room under the device's 600 s per command; --skip a step"
  ((DRY)) && echo "gpu-check: DRY RUN: the plan, nothing runs (times from the start, each step using its whole cap)"
  write_results
  for name in "${STEPS[@]}"; do run_step "$name"; done
  write_results
  echo
  echo "gpu-check: results in $RESULTS"
  printf '%s\n' "| step | result | note | seconds | cap |" "${SUMMARY[@]}"
  grep -hE '^(decode batch=1 |decode_eager batch=1 |copy_bandwidth|cuda_graph batch=1 )' "$LOGS/model_bench.log" 2>/dev/null
  if ((DRY)); then
    echo "gpu-check: plan: ${#STEPS[@]} steps, caps ${caps} s + reserve ${RESERVE} s = $((caps + RESERVE)) s of the ${DEADLINE} s deadline"
    ((caps + RESERVE <= DEADLINE)) || return 3
    return 0
  fi
  local w fail=0 cut=0 below=0
  for w in "${STATUS[@]}"; do
    case "$w" in
      FAIL) fail=1 ;;
      INCOMPLETE | "NOT RUN") cut=1 ;;
      BELOW-TARGET) below=1 ;;
    esac
  done
  if ((fail)); then return 1; fi
  if ((cut)); then return 3; fi
  if ((below)); then return 4; fi
  return 0
}

case "${1:-}" in
  stage) shift; stage "$@" ;;
  compiled-versions)
    shift
    b="$REPO/build"
    [[ "${1:-}" == --build ]] && b="$2"
    compiled_versions "$b"
    ;;
  run) shift; run_main "$@" ;;
  *) die "usage: tools/gpu-check.sh stage [--build DIR] | compiled-versions [--build DIR] | run call1|call2 [STEP|tests=FILTER ...] [--steps LIST] [--carry DIR] [--build DIR] [--deadline S] [--layers N] [--results FILE] [--from FILE] [--skip LIST] [--dry-run]" ;;
esac
