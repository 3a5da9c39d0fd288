#!/usr/bin/env bash
# Validates deploy/ without a cluster or a container daemon (CTest runs it: label deploy):
#   - yamllint on deploy/ (config deploy/.yamllint.yaml), hadolint on the Dockerfiles, the
#     scripts through shellcheck;
#   - every overlay rendered with `kubectl kustomize`; its Kubernetes objects, and the pod
#     templates of its LeaderWorkerSets, validated with `kubernetes-validate --strict` for the
#     oldest and the newest Kubernetes it targets; its LeaderWorkerSets validated with
#     check-jsonschema against the CRD's openAPIV3Schema (from shared/k8s, closed to unknown
#     fields) and for unique list-map keys; a strictness self-test of both validators;
#   - the invariants of tests/deploy/check_invariants.py, with their negative self-checks;
#   - when the programs are built: deploy/docker/stage-runtime.sh stages them as the image
#     build does (the cuda flavor for a CUDA build) and checks the result; the cpu-small
#     overlay's commands run for real on loopback, including a follower killed and its group
#     recreated (tests/deploy/smoke_cpu_small.py).
# Tools come from PyPI, pinned in tests/deploy/requirements.txt, in a virtualenv kept between
# runs and rebuilt when that file changes.
#
# Environment: DEPLOY_VENV (default ${BUILD_DIR:-build}/deploy-venv), DEPLOY_OUT (rendered
# files and logs, default ${BUILD_DIR:-build}/deploy-out), EXPERTMESH_BIN_DIR (built programs,
# default ${BUILD_DIR:-build}/bin), DEPLOY_REQUIRE_PROGRAMS=1 (fail instead of skipping the
# cpu-small run when they are missing; CTest sets it), EXPERTMESH_SHARED_DIR (default
# ../shared beside the repository).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/deploy"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
VENV="${DEPLOY_VENV:-$BUILD_DIR/deploy-venv}"
OUT="${DEPLOY_OUT:-$BUILD_DIR/deploy-out}"
BIN_DIR="${EXPERTMESH_BIN_DIR:-$BUILD_DIR/bin}"
SHARED="${EXPERTMESH_SHARED_DIR:-$ROOT/../shared}"
CRD="$SHARED/k8s/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
# 1.30: the oldest release these manifests use features of (preStop sleep, gRPC probes GA);
# 1.37: the newest kubernetes-validate knows.
K8S_VERSIONS=(1.30.0 1.37.0)

if [[ ! -f "$CRD" ]]; then
  echo "deploy: the LeaderWorkerSet CRD is missing: $CRD" >&2
  echo "deploy: shared/ must lie beside the repository (or set EXPERTMESH_SHARED_DIR)" >&2
  echo "deploy: 0 passed, 1 failed"
  exit 1
fi

# --- tools ----------------------------------------------------------------------------------
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]]; then
  echo "deploy: installing the tools into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" ||
    ! "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
      -r "$HERE/requirements.txt"; then
    echo "deploy: cannot install the tools (tests/deploy/requirements.txt) from PyPI" >&2
    echo "deploy: 0 passed, 1 failed"
    exit 1
  fi
  echo "$want" >"$VENV/.requirements"
fi
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1  # nothing written into the source tree

# --- steps ----------------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT/rendered" "$OUT/logs"
passed=0
failed=0
step_id=0

# step LABEL COMMAND...: runs COMMAND, shows its output when it fails.
step() {
  local label="$1"
  shift
  step_id=$((step_id + 1))
  local log
  log="$OUT/logs/$(printf '%02d' "$step_id")-${label//[^A-Za-z0-9._-]/_}.log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "  PASS $label"
  else
    failed=$((failed + 1))
    echo "  FAIL $label"
    sed 's/^/       /' "$log"
  fi
}

# rejects FILE COMMAND...: succeeds when COMMAND fails on FILE, which must exist (the
# validators' self-tests: a validator that accepts anything proves nothing).
rejects() {
  local file="$1"
  shift
  if [[ ! -f "$file" ]]; then
    echo "no input $file"
    return 1
  fi
  if "$@" "$file"; then
    echo "expected a rejection, got success: $* $file"
    return 1
  fi
  return 0
}

# add_counts FILE: adds "N M" from FILE to the totals (a sub-checker's own counts).
add_counts() {
  local n=0 m=1
  if [[ -f "$1" ]]; then read -r n m <"$1"; fi
  passed=$((passed + n))
  failed=$((failed + m))
}

render() { kubectl kustomize "$1" >"$2"; }
lws_against_crd() { check-jsonschema --schemafile "$1" "$2"/lws-*.json; }
lws_list_maps() { "$PY" "$HERE/deploy_tools.py" list-maps "$1" "$2"/lws-*.json; }

cd "$ROOT" || exit 1
echo "deploy: linting"
step "yamllint deploy/" yamllint --strict -c deploy/.yamllint.yaml deploy
for dockerfile in deploy/docker/Dockerfile deploy/docker/Dockerfile.cuda; do
  step "hadolint $dockerfile" hadolint "$dockerfile"
done
step "shellcheck" shellcheck deploy/docker/stage-runtime.sh tests/deploy/validate.sh

echo "deploy: rendering and validating the overlays"
step "LeaderWorkerSet schema from $(basename "$CRD")" \
  "$PY" "$HERE/deploy_tools.py" lws-schema "$CRD" "$OUT/lws-schema.json"
overlays=()
for dir in deploy/k8s/overlays/*/; do
  overlay="$(basename "$dir")"
  overlays+=("$overlay")
  rendered="$OUT/rendered/$overlay.yaml"
  split="$OUT/split/$overlay"
  step "$overlay: kubectl kustomize" render "$dir" "$rendered"
  step "$overlay: split" "$PY" "$HERE/deploy_tools.py" split "$rendered" "$split"
  for version in "${K8S_VERSIONS[@]}"; do
    step "$overlay: kubernetes-validate --strict (Kubernetes $version)" \
      kubernetes-validate --strict --quiet -k "$version" "$split/core.yaml" \
      "$split/podtemplates.yaml"
  done
  step "$overlay: LeaderWorkerSet against the CRD schema" \
    lws_against_crd "$OUT/lws-schema.json" "$split"
  step "$overlay: LeaderWorkerSet list-map keys" lws_list_maps "$CRD" "$split"
done
# Not part of an overlay: the Prometheus Adapter's rule.
adapter_rule=deploy/k8s/prometheus-adapter-rules.yaml
for version in "${K8S_VERSIONS[@]}"; do
  step "$adapter_rule: kubernetes-validate --strict (Kubernetes $version)" \
    kubernetes-validate --strict --quiet -k "$version" "$adapter_rule"
done

# The validators must be able to fail: each rejects a copy with one unknown field.
selftest() {
  "$PY" - "$1" "$2" <<'EOF'
import json, os, sys, yaml
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
with open(os.path.join(src, "lws-1.json")) as f:
    lws = json.load(f)
lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["startupProbes"] = {}
with open(os.path.join(dst, "lws.json"), "w") as f:
    json.dump(lws, f)
with open(os.path.join(src, "core.yaml")) as f:
    deploy = next(d for d in yaml.safe_load_all(f) if d["kind"] == "Deployment")
deploy["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
with open(os.path.join(dst, "core.yaml"), "w") as f:
    yaml.safe_dump(deploy, f)
EOF
}
step "self-test inputs (one unknown field each)" selftest "$OUT/split/${overlays[0]}" \
  "$OUT/selftest"
step "self-test: check-jsonschema rejects an unknown LeaderWorkerSet field" \
  rejects "$OUT/selftest/lws.json" check-jsonschema --schemafile "$OUT/lws-schema.json"
step "self-test: kubernetes-validate rejects an unknown Deployment field" \
  rejects "$OUT/selftest/core.yaml" kubernetes-validate --strict --quiet -k "${K8S_VERSIONS[0]}"

echo "deploy: invariants of the rendered overlays"
"$PY" "$HERE/check_invariants.py" --rendered "$OUT/rendered" --repo "$ROOT" \
  --bin-dir "$BIN_DIR" --counts "$OUT/invariants.counts"
add_counts "$OUT/invariants.counts"

if [[ -x "$BIN_DIR/expertmesh-worker" && -x "$BIN_DIR/expertmesh-router" &&
  -x "$BIN_DIR/expertmesh" ]]; then
  # A CUDA build is staged as Dockerfile.cuda stages it: the CUDA libraries come from the
  # NVIDIA base image, not from the staged tree (copying them would take ~800 MB of disk).
  flavor=debian
  # Read whole, not piped into grep -q (see stage-runtime.sh --check: SIGPIPE under pipefail).
  worker_libs="$(ldd "$BIN_DIR/expertmesh-worker")"
  if [[ "$worker_libs" == *libcudart.so* ]]; then flavor=cuda; fi
  echo "deploy: the built programs, staged as the $flavor image stages them"
  rm -rf "$OUT/stage"
  step "stage-runtime.sh: programs and their libraries" \
    deploy/docker/stage-runtime.sh "$(dirname "$BIN_DIR")" "$OUT/stage" "$flavor"
  step "stage-runtime.sh --check: everything resolves inside the staged tree" \
    deploy/docker/stage-runtime.sh --check "$OUT/stage" "$flavor"
  # The staged copies are only checked; the rest of the suite runs the build's own programs.
  rm -rf "$OUT/stage"
  echo "deploy: the cpu-small overlay's commands, run on loopback"
  timeout 300 "$PY" "$HERE/smoke_cpu_small.py" --rendered "$OUT/rendered/cpu-small.yaml" \
    --bin-dir "$BIN_DIR" --work "$OUT/smoke" --counts "$OUT/smoke.counts"
  add_counts "$OUT/smoke.counts"
elif [[ "${DEPLOY_REQUIRE_PROGRAMS:-0}" == 1 ]]; then
  echo "deploy: FAIL no built programs in $BIN_DIR for the cpu-small run"
  failed=$((failed + 1))
else
  echo "deploy: SKIPPED the cpu-small run: no built programs in $BIN_DIR"
fi

echo "deploy: $passed passed, $failed failed"
((failed == 0))
