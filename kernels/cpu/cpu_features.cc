#include "kernels/cpu/cpu_features.h"

namespace expertmesh::kernels::cpu {

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512bf16";
  }
  return "unknown";
}

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    // GCC 12's __builtin_cpu_supports knows neither f16c nor avx512bf16: read CPUID.
    unsigned eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    f.f16c = (ecx >> 29) & 1u;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
    f.avx512bf16 = f.avx512f && ((eax >> 5) & 1u);
#endif
    return f;
  }();
  return features;
}

bool CpuSupports(CpuIsa isa) {
  const CpuFeatures& f = DetectCpuFeatures();
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
    case CpuIsa::kAvx2:
      return f.avx2 && f.fma && f.f16c;
    case CpuIsa::kAvx512:
      return f.avx2 && f.fma && f.f16c && f.avx512f;
    case CpuIsa::kAvx512Bf16:
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bf16;
  }
  return false;
}

CpuIsa BestCpuIsa() {
  if (CpuSupports(CpuIsa::kAvx512Bf16)) return CpuIsa::kAvx512Bf16;
  if (CpuSupports(CpuIsa::kAvx512)) return CpuIsa::kAvx512;
  return CpuSupports(CpuIsa::kAvx2) ? CpuIsa::kAvx2 : CpuIsa::kScalar;
}

}  // namespace expertmesh::kernels::cpu
