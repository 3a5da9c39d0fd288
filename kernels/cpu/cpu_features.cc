#include "kernels/cpu/cpu_features.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/logging.h"

namespace expertmesh::kernels::cpu {
namespace {

// From the kernel's uapi (asm/prctl.h) and fpu/xstate: not in glibc 2.36's headers.
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtileData = 18;

}  // namespace

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
    case CpuIsa::kAmx:
      return "amx";
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
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
    f.avx512bw = f.avx512f && ((ebx >> 30) & 1u);
    f.avx512vbmi = f.avx512f && ((ecx >> 1) & 1u);
    f.avx512vbmi2 = f.avx512f && ((ecx >> 6) & 1u);
    const bool amx_tile = (edx >> 24) & 1u;
    const bool amx_bf16 = (edx >> 22) & 1u;
    // The OS must save the tile configuration and data (XCR0 bits 17 and 18) for AMX to be
    // usable; XGETBV needs OSXSAVE (CPUID.1:ECX bit 27).
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    bool os_tiles = false;
    if ((ecx >> 27) & 1u) {
      unsigned xcr0_lo, xcr0_hi;
      __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
      os_tiles = ((xcr0_lo >> 17) & 3u) == 3u;
    }
    f.amx_tile = amx_tile && os_tiles;
    f.amx_bf16 = f.amx_tile && amx_bf16;
#endif
    return f;
  }();
  return features;
}

bool AmxPermitted() {
  static const bool permitted = [] {
    const CpuFeatures& f = DetectCpuFeatures();
    if (!f.amx_tile || !f.amx_bf16) return false;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) != 0) {
      EM_LOG_INFO(
          "cpu backend: the CPU has AMX but Linux refused the tile state (arch_prctl "
          "ARCH_REQ_XCOMP_PERM: {}); the amx kernels are unavailable",
          std::strerror(errno));
      return false;
    }
    return true;
  }();
  return permitted;
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
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vbmi2 && f.avx512bf16;
    case CpuIsa::kAmx:
      // VBMI: the fp8 tiles widen weights through a byte table (fp8_bf16.h).
      return CpuSupports(CpuIsa::kAvx512Bf16) && f.avx512vbmi && f.amx_bf16 && AmxPermitted();
  }
  return false;
}

namespace {
bool CpuVendorIsAmd() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax, ebx, ecx, edx;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0), "c"(0));
  // "AuthenticAMD" in EBX, EDX, ECX.
  return ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;
#else
  return false;
#endif
}
}  // namespace

PrefetchLevel StreamingPrefetchLevel() {
  static const PrefetchLevel level = [] {
    if (const char* forced = std::getenv("EXPERTMESH_CPU_PREFETCH"); forced != nullptr) {
      if (std::string_view(forced) == "l1") return PrefetchLevel::kL1;
      if (std::string_view(forced) == "l2") return PrefetchLevel::kL2;
      if (*forced != '\0') {
        EM_LOG_WARN("cpu backend: EXPERTMESH_CPU_PREFETCH={} is neither l1 nor l2; ignored",
                    forced);
      }
    }
    return CpuVendorIsAmd() ? PrefetchLevel::kL2 : PrefetchLevel::kL1;
  }();
  return level;
}

std::string_view PrefetchLevelName(PrefetchLevel level) {
  return level == PrefetchLevel::kL2 ? "l2" : "l1";
}

CpuIsa BestCpuIsa() {
  if (CpuSupports(CpuIsa::kAmx)) return CpuIsa::kAmx;
  if (CpuSupports(CpuIsa::kAvx512Bf16)) return CpuIsa::kAvx512Bf16;
  if (CpuSupports(CpuIsa::kAvx512)) return CpuIsa::kAvx512;
  return CpuSupports(CpuIsa::kAvx2) ? CpuIsa::kAvx2 : CpuIsa::kScalar;
}

}  // namespace expertmesh::kernels::cpu
