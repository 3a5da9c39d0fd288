#!/usr/bin/env bash
# Stages what a runtime image needs from a build tree, and checks a staged tree.
#
#   stage-runtime.sh BUILD_DIR DEST [debian|cuda]   (in the build stage)
#   stage-runtime.sh --check DEST [debian|cuda]     (in the runtime stage)
#
# Staging copies the three programs (expertmesh, expertmesh-router, expertmesh-worker) from
# BUILD_DIR/bin into DEST/bin, stripped, and the shared libraries they load (their ldd
# closure) into DEST/lib, then points the programs at DEST/lib with an RPATH (not
# LD_LIBRARY_PATH, so the base image's own tools keep their own libraries). Left out are the
# libraries every base image must provide itself: glibc, libstdc++ and libgcc_s (the runtime
# base must be at least as new as Debian 12: glibc 2.36, GCC 12); with "cuda" also the CUDA
# runtime, cuBLAS, NCCL and the driver libraries, which come from the NVIDIA base image and
# the NVIDIA container toolkit.
#
# --check runs in the runtime image (and in CI on the staged build): every library resolves
# (except the driver's, mounted when a GPU container starts), every library that the base
# does not provide resolves inside DEST/lib, every program answers --help, and with "cuda"
# the NCCL runtime is installed.
set -euo pipefail

PROGRAMS=(expertmesh expertmesh-router expertmesh-worker)
# Provided by every base image: the C library family and the GCC runtime.
BASE_LIBS='^(linux-vdso\.so|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so|libstdc\+\+\.so|libgcc_s\.so)'
# Provided by the NVIDIA CUDA runtime image (toolkit libraries) or mounted by the NVIDIA
# container toolkit (driver libraries).
CUDA_LIBS='^(libcuda\.so|libnvidia-|libcudart\.so|libcublas\.so|libcublasLt\.so|libnccl\.so|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver|libcudnn)'
# Driver libraries: absent in an image, present in a running GPU container.
DRIVER_LIBS='^(libcuda\.so|libnvidia-)'

die() {
  echo "stage-runtime: $*" >&2
  exit 1
}

stage() {
  local build_dir="$1" dest="$2" flavor="$3"
  mkdir -p "$dest/bin" "$dest/lib"
  local program
  for program in "${PROGRAMS[@]}"; do
    [[ -x "$build_dir/bin/$program" ]] || die "$build_dir/bin/$program is missing: build first"
    install -m 0755 "$build_dir/bin/$program" "$dest/bin/$program"
    strip --strip-unneeded "$dest/bin/$program"
  done
  # ldd lists the whole closure (transitive dependencies too): "name => /path (0x...)".
  local name path copied=0
  while read -r name path; do
    [[ "$name" =~ $BASE_LIBS ]] && continue
    [[ "$flavor" == cuda && "$name" =~ $CUDA_LIBS ]] && continue
    [[ "$path" == /* ]] || die "cannot locate $name (ldd: '$path')"
    if [[ ! -e "$dest/lib/$name" ]]; then
      # -L: Debian reaches some libraries through symlinks (alternatives for OpenBLAS).
      cp -L "$path" "$dest/lib/$name"
      chmod 0644 "$dest/lib/$name"
      copied=$((copied + 1))
    fi
  done < <(for program in "${PROGRAMS[@]}"; do ldd "$dest/bin/$program"; done |
    awk '$2 == "=>" { print $1, $3 }' | sort -u)
  # DT_RPATH (--force-rpath) rather than DT_RUNPATH: it also applies to the dependencies of
  # dependencies, so the whole closure comes from DEST/lib.
  for program in "${PROGRAMS[@]}"; do
    # shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader, not the shell
    patchelf --force-rpath --set-rpath '$ORIGIN/../lib' "$dest/bin/$program"
  done
  echo "stage-runtime: ${#PROGRAMS[@]} programs and $copied libraries in $dest ($flavor base)"
}

check() {
  local dest="$1" flavor="$2" program missing
  for program in "${PROGRAMS[@]}"; do
    [[ -x "$dest/bin/$program" ]] || die "$dest/bin/$program is missing"
    missing="$(ldd "$dest/bin/$program" | awk '/not found/ { print $1 }')"
    local unresolved=() lib
    for lib in $missing; do
      [[ "$flavor" == cuda && "$lib" =~ $DRIVER_LIBS ]] && continue
      unresolved+=("$lib")
    done
    ((${#unresolved[@]} == 0)) || die "$program: libraries not found: ${unresolved[*]}"
    local name path outside=()
    while read -r name path; do
      [[ "$name" =~ $BASE_LIBS || "$path" != /* ]] && continue
      [[ "$flavor" == cuda && "$name" =~ $CUDA_LIBS ]] && continue
      [[ "$(readlink -f "$path")" == "$(readlink -f "$dest/lib")"/* ]] || outside+=("$path")
    done < <(ldd "$dest/bin/$program" | awk '$2 == "=>" { print $1, $3 }')
    ((${#outside[@]} == 0)) || die "$program: loads ${outside[*]} from outside $dest/lib"
    if [[ -z "$missing" ]]; then
      "$dest/bin/$program" --help >/dev/null || die "$program --help failed"
    else
      echo "stage-runtime: $program links the driver (${missing//$'\n'/ }): --help skipped"
    fi
  done
  if [[ "$flavor" == cuda ]]; then
    # Not `ldconfig -p | grep -q`: grep stops at the first match, ldconfig dies of SIGPIPE on a
    # long cache, and pipefail reports the pipeline failed.
    local cache
    cache="$(ldconfig -p)"
    [[ "$cache" == *'libnccl.so.2 '* ]] || die "the base image has no NCCL runtime (libnccl.so.2)"
  fi
  echo "stage-runtime: $dest checked ($flavor base)"
}

if [[ "${1:-}" == --check ]]; then
  (($# >= 2)) || die "usage: $0 --check DEST [debian|cuda]"
  check "$2" "${3:-debian}"
else
  (($# >= 2)) || die "usage: $0 BUILD_DIR DEST [debian|cuda]"
  case "${3:-debian}" in debian | cuda) ;; *) die "flavor must be debian or cuda" ;; esac
  stage "$1" "$2" "${3:-debian}"
fi
