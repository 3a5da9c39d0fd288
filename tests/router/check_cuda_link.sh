#!/usr/bin/env bash
# check_cuda_link.sh BINARY absent|present
# Whether BINARY links anything of CUDA: its dynamic dependencies (the direct ones from
# readelf -d and the whole closure from ldd) and its own symbol table, where a statically
# linked CUDA runtime or NCCL shows as cuda*/nccl* symbols. The router must say "absent"
# (docs: the router never links CUDA); a CUDA worker says "present", which shows that the
# check sees CUDA where it is.
set -euo pipefail
binary=$1
expect=$2
[[ -x "$binary" ]] || { echo "FAIL: $binary is not an executable (build it first)"; exit 1; }

libs='lib(cudart|cuda|nccl|cublas|cublasLt|cudnn[a-z_]*|nvrtc|nvJitLink|cufft|curand|cusparse|cusolver|nvidia-ml)\.so[.0-9]*'
deps=$({ readelf -dW "$binary" | grep NEEDED || true; ldd "$binary" 2>&1 || true; } |
  grep -oE "$libs" | sort -u || true)
symbols=$(readelf -sW "$binary" | awk '{print $8}' |
  grep -E '^(cuda[A-Z]|nccl[A-Z]|cublas|cudnn[A-Z]|cuInit($|@)|cuDriverGetVersion|__cudaRegister)' |
  sed 's/@.*//' | sort -u || true)

found=""
[[ -n "$deps" ]] && found+="libraries: $(echo $deps); "
[[ -n "$symbols" ]] && found+="symbols: $(echo "$symbols" | head -5 | tr '\n' ' ')"

case "$expect" in
  absent)
    if [[ -n "$found" ]]; then
      echo "FAIL: $binary links CUDA: $found"
      exit 1
    fi
    echo "PASS: $binary links no CUDA library and has no CUDA symbol"
    ;;
  present)
    if [[ -z "$found" ]]; then
      echo "FAIL: $binary shows no CUDA library or symbol, but it is built with CUDA"
      exit 1
    fi
    echo "PASS: $binary links CUDA ($found)"
    ;;
  *)
    echo "usage: $0 BINARY absent|present"
    exit 2
    ;;
esac
