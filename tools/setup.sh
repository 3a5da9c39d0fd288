#!/usr/bin/env bash
# Prepares a machine and builds expertmesh, incrementally.
#   - installs the Debian 12 packages that are missing (as root, or through sudo);
#   - configures build/ with CMake + Ninja (+ ccache) the first time;
#   - builds everything that changed.
# Environment: BUILD_DIR (default build), BUILD_TYPE (default RelWithDebInfo),
# EXPERTMESH_CMAKE_ARGS (extra -D flags), JOBS (default: number of cores).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
JOBS="${JOBS:-$(nproc)}"

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git ca-certificates
  python3 python3-venv python3-pip clang libclang-rt-14-dev iproute2 procps
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libgloo-dev libpcre2-dev libutf8proc-dev nlohmann-json3-dev libspdlog-dev libcli11-dev
  libcpp-httplib-dev libboost1.81-dev libssl-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $EUID -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi

if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  # shellcheck disable=SC2086
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    ${EXPERTMESH_CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
