#!/usr/bin/env python3
"""The CUDA libraries our binaries load on this machine, beside the ones they were compiled
against, for tools/gpu-check.sh's versions step.

The build machine compiles against its own headers (CUDA 13.0 runtime, cuBLAS 13.1, NCCL 2.28)
and carries libcudart, but not cuBLAS/cuBLASLt or NCCL: on the GPU machine those come from its
CUDA toolkit or from torch's nvidia wheels, which may be older. An older libnccl.so.2 can reject
a newer ncclConfig_t (ncclCommInitRankConfig checks the struct's size and version), and an
older cuBLAS may lack what the headers promised. So this asks the libraries themselves:

  - which file each carried binary resolves libcudart / libcublasLt / libcublas / libnccl to
    (`ldd` under --ld-library-path, the LD_LIBRARY_PATH the binaries run with; python itself
    runs without it, so the carried libraries never meet python's own);
  - the version each of those files reports (cudaRuntimeGetVersion, cublasLtGetVersion,
    cublasGetProperty, ncclGetVersion), and the driver's CUDA version (cuDriverGetVersion of
    libcuda.so.1);

and compares them with the compiled-against versions given as --compiled KEY=VERSION
(cudart=13.0 cublas=13.1.0 nccl=2.28.9: `tools/gpu-check.sh stage` reads them from the headers
the build used and writes them into the manifest).

Prints a markdown table, then one line "verdict=WORD note=TEXT". Exit status: 0 every loaded
library is at least as new as its headers (same major version) and the driver runs the runtime;
4 a library is older than its headers (the word BELOW-TARGET; the lines say which); 1 a library
is missing, has another major version, there is no driver, or the driver is older than the
runtime's major (FAIL); 2 bad arguments.

  lib_versions.py --compiled cudart=13.0 cublas=13.1.0 nccl=2.28.9 \
      --ld-library-path /tmp/gpu-check/payload/lib:/usr/local/cuda/lib64 --binaries bin/a bin/b
"""
import argparse
import ctypes
import os
import re
import subprocess
import sys

# soname pattern -> our key
LIBS = [
    ("cudart", re.compile(r"^libcudart\.so")),
    ("cublasLt", re.compile(r"^libcublasLt\.so")),
    ("cublas", re.compile(r"^libcublas\.so")),
    ("nccl", re.compile(r"^libnccl\.so")),
]
# Which compiled-against version each library is held to (cuBLASLt ships with cuBLAS).
COMPILED_KEY = {"cudart": "cudart", "cublasLt": "cublas", "cublas": "cublas", "nccl": "nccl"}


def resolve(binaries, ld_library_path):
    """{key: {path: [binary names]}} from ldd, plus {binary: [unresolved sonames]}."""
    found, missing = {}, {}
    env = dict(os.environ, LD_LIBRARY_PATH=ld_library_path)
    for b in binaries:
        try:
            out = subprocess.run(["ldd", b], capture_output=True, text=True, timeout=20,
                                 env=env).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(.*?)\s+\(0x", line) or re.match(
                r"\s*(\S+)\s+=>\s+(not found)", line)
            if not m:
                continue
            soname, path = m.group(1), m.group(2)
            for key, pattern in LIBS:
                if pattern.match(soname):
                    if path == "not found":
                        missing.setdefault(os.path.basename(b), []).append(soname)
                    else:
                        found.setdefault(key, {}).setdefault(os.path.realpath(path), []).append(
                            os.path.basename(b))
    return found, missing


def cuda_str(v):  # 13000 -> "13.0"
    return f"{v // 1000}.{v % 1000 // 10}"


def query(key, path):
    """The version the library at `path` reports, as a string, or an error text."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return None, f"cannot load: {e}"
    v = ctypes.c_int(0)
    try:
        if key == "cudart":
            if lib.cudaRuntimeGetVersion(ctypes.byref(v)) != 0:
                return None, "cudaRuntimeGetVersion failed"
            return cuda_str(v.value), ""
        if key == "cublasLt":
            lib.cublasLtGetVersion.restype = ctypes.c_size_t
            n = lib.cublasLtGetVersion()
            return f"{n // 10000}.{n // 100 % 100}.{n % 100}", ""
        if key == "cublas":
            parts = []
            for prop in (0, 1, 2):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                if lib.cublasGetProperty(prop, ctypes.byref(v)) != 0:
                    return None, "cublasGetProperty failed"
                parts.append(str(v.value))
            return ".".join(parts), ""
        if key == "nccl":
            if lib.ncclGetVersion(ctypes.byref(v)) != 0:
                return None, "ncclGetVersion failed"
            code = v.value  # >= 2.9: major * 10000 + minor * 100 + patch; before: * 1000 + * 100
            if code >= 20900:
                return f"{code // 10000}.{code % 10000 // 100}.{code % 100}", ""
            return f"{code // 1000}.{code % 1000 // 100}.{code % 100}", ""
    except AttributeError as e:
        return None, f"no version function: {e}"
    return None, "unknown library"


def driver_version():
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return None, f"no libcuda.so.1 ({e})"
    v = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value == 0:
        return None, "cuDriverGetVersion failed"
    return cuda_str(v.value), ""


def parse(version):
    return tuple(int(x) for x in re.findall(r"\d+", version or ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compiled", nargs="*", default=[], help="KEY=VERSION (cudart, cublas, nccl)")
    p.add_argument("--binaries", nargs="*", default=[])
    p.add_argument("--ld-library-path", default=os.environ.get("LD_LIBRARY_PATH", ""))
    a = p.parse_args()
    compiled = {}
    for item in a.compiled:
        if "=" not in item:
            print(f"lib_versions: --compiled takes KEY=VERSION, not {item}", file=sys.stderr)
            return 2
        k, val = item.split("=", 1)
        compiled[k] = val
    found, missing = resolve(a.binaries, a.ld_library_path)

    rows, warnings, worst = [], [], 0  # worst: 0 ok, 4 below, 1 fail
    drv, drv_err = driver_version()
    rows.append(("driver (libcuda.so.1)", "-", drv or f"none: {drv_err}", "-"))
    if drv is None:
        worst = 1
        warnings.append(f"no usable CUDA driver: {drv_err}")
    for key, _ in LIBS:
        want = compiled.get(COMPILED_KEY[key], "unknown")
        paths = found.get(key, {})
        if not paths:
            rows.append((key, want, "not linked by any carried binary", "-"))
            continue
        for path, users in sorted(paths.items()):
            have, err = query(key, path)
            where = f"{have or err} ({path}; {len(users)} binar{'y' if len(users) == 1 else 'ies'})"
            if have is None:
                verdict = "FAIL: unreadable"
                worst = 1
            elif want == "unknown":
                verdict = "compiled version unknown"
            elif parse(have)[:1] != parse(want)[:1]:
                verdict = "FAIL: other major version"
                worst = 1
                warnings.append(
                    f"version mismatch: {key} {have} loaded from {path}, compiled against {want}")
            elif parse(have)[:2] < parse(want)[:2]:
                verdict = "OLDER than its headers"
                worst = worst or 4
                extra = (" (an older libnccl.so.2 may reject the newer ncclConfig_t: "
                         "ncclCommInitRankConfig then fails with ncclInvalidArgument)"
                         if key == "nccl" else
                         " (functions or enums of the newer headers may be missing)")
                warnings.append(f"version mismatch: {key} {have} loaded from {path}, "
                                f"compiled against {want}{extra}")
            elif parse(have)[:2] == parse(want)[:2]:
                verdict = "match"
            else:
                verdict = "newer (fine)"
            rows.append((key, want, where, verdict))
    if drv and "cudart" in found:
        for path in found["cudart"]:
            have, _ = query("cudart", path)
            if have and parse(drv)[:1] < parse(have)[:1]:
                worst = 1
                warnings.append(
                    f"the driver runs CUDA {drv}, the runtime is {have}: nothing starts")
            elif have and parse(drv)[:2] < parse(have)[:2]:
                warnings.append(f"the driver runs CUDA {drv}, older than the runtime {have} "
                                "(minor-version compatibility: runs, but PTX newer than the "
                                "driver's is refused)")
    for binary, sonames in sorted(missing.items()):
        worst = 1
        warnings.append(f"{binary}: {', '.join(sorted(set(sonames)))} not found")

    print("| library | compiled against | loaded here | verdict |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for w in warnings:
        print(f"WARNING: {w}")
    word = {0: "PASS", 4: "BELOW-TARGET", 1: "FAIL"}[worst]
    loaded = ", ".join(f"{r[0].split(' ')[0]} {r[2].split(' (')[0]}" for r in rows
                       if not r[2].startswith("not linked"))
    note = "; ".join(warnings) if warnings else f"loaded as compiled or newer: {loaded}"
    print(f"verdict={word} note={note}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
