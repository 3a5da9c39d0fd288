// Which vector instruction sets this CPU has, detected at run time (binaries are built for the
// x86-64 baseline; AVX2 code lives in files compiled with their own flags).
#ifndef EXPERTMESH_KERNELS_CPU_CPU_FEATURES_H_
#define EXPERTMESH_KERNELS_CPU_CPU_FEATURES_H_

#include <string_view>

namespace expertmesh::kernels::cpu {

// The kernel families a CpuBackend can run. kScalar is portable C++ (the compiler may still use
// SSE2); kAvx2 needs AVX2 + FMA + F16C.
// kAvx512: AVX2 + FMA + F16C + AVX-512F (the GEMM at 16 lanes, the rest as kAvx2);
// kAvx512Bf16: also AVX512_BF16 (bf16 x bf16 dot products for bf16 activations), AVX512BW,
// AVX512_VBMI2 (16-bit word operations and double shifts that widen q4 weights). Every CPU with
// AVX512_BF16 has them but Cooper Lake, which lacks VBMI2 and so runs kAvx512.
// kAmx: also AMX-TILE + AMX-BF16, enabled by the OS for this process, and AVX512_VBMI (byte-table
// widening of fp8 weights for the tiles, fp8_bf16.h) (bf16 tile GEMMs; the rest as kAvx512Bf16).
enum class CpuIsa { kScalar, kAvx2, kAvx512, kAvx512Bf16, kAmx };
std::string_view CpuIsaName(CpuIsa isa);

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bf16 = false;
  bool avx512bw = false;
  bool avx512vbmi = false;
  bool avx512vbmi2 = false;
  bool amx_tile = false;  // CPUID says so and the OS saves the tile state (XCR0 bits 17, 18)
  bool amx_bf16 = false;
};
const CpuFeatures& DetectCpuFeatures();

// Whether this process may execute AMX instructions. Linux hands out the 8 KiB tile state only
// on request: the first call asks once for the whole process (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA) and logs, at info level, why the answer is no when the CPU has AMX.
// Thread-safe; later calls return the first answer.
bool AmxPermitted();

// For kAmx this includes AmxPermitted() (and so asks the OS on first use).
bool CpuSupports(CpuIsa isa);
// The best family this CPU runs.
CpuIsa BestCpuIsa();

// Where the streaming GEMMs' software prefetches put the lines of a later strip of weights.
// On AMD the L2 (measured on Zen 4, one token through bench-1b, 2 threads, alternated: bf16
// 23-27 -> 30 tok/s, fp8 37-40 -> 48-49, int4 65-67 -> 91-97: a prefetch into the L1 holds one
// of its few miss buffers until the line arrives, and those cap one core's streaming rate);
// elsewhere the L1, as tuned before (not yet measured against the L2 on Intel).
// EXPERTMESH_CPU_PREFETCH=l1 or l2 overrides. Decided once per process.
enum class PrefetchLevel { kL1, kL2 };
PrefetchLevel StreamingPrefetchLevel();
std::string_view PrefetchLevelName(PrefetchLevel level);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_FEATURES_H_
