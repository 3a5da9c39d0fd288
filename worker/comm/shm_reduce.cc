#include "worker/comm/shm_reduce.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace expertmesh::comm {
namespace {

// Blocks of this many elements stay in L1 between the passes over the ranks. The loops below are
// written for the vectorizer (this file is built with -O3): fixed-stride loads, an fp32
// accumulator array, one store pass. Each function is also compiled for AVX2 and picked at load
// time (an ifunc; shipped binaries target plain x86-64): a bf16 sum of two ranks in L1 takes
// 1.0 ns per element with SSE2 and 0.54 with AVX2 on the 2-core Xeon.
constexpr size_t kBlock = 1024;

#define EXPERTMESH_SHM_REDUCE_CLONES __attribute__((target_clones("avx2", "default")))

EXPERTMESH_SHM_REDUCE_CLONES void SumF32(const std::byte* const* srcs, int count, size_t n,
                                         std::byte* out) {
  alignas(64) float acc[kBlock];
  for (size_t base = 0; base < n; base += kBlock) {
    const size_t m = std::min(kBlock, n - base);
    const float* first = reinterpret_cast<const float*>(srcs[0]) + base;
    for (size_t i = 0; i < m; ++i) acc[i] = first[i];
    for (int q = 1; q < count; ++q) {
      const float* s = reinterpret_cast<const float*>(srcs[q]) + base;
      for (size_t i = 0; i < m; ++i) acc[i] += s[i];
    }
    std::memcpy(out + base * sizeof(float), acc, m * sizeof(float));
  }
}

EXPERTMESH_SHM_REDUCE_CLONES void SumBf16(const std::byte* const* srcs, int count, size_t n,
                                          std::byte* out) {
  alignas(64) float acc[kBlock];
  alignas(64) uint16_t rounded[kBlock];
  for (size_t base = 0; base < n; base += kBlock) {
    const size_t m = std::min(kBlock, n - base);
    const uint16_t* first = reinterpret_cast<const uint16_t*>(srcs[0]) + base;
    for (size_t i = 0; i < m; ++i) acc[i] = Bf16ToFloat(first[i]);
    for (int q = 1; q < count; ++q) {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(srcs[q]) + base;
      for (size_t i = 0; i < m; ++i) acc[i] += Bf16ToFloat(s[i]);
    }
    for (size_t i = 0; i < m; ++i) rounded[i] = FloatToBf16(acc[i]);
    std::memcpy(out + base * sizeof(uint16_t), rounded, m * sizeof(uint16_t));
  }
}

}  // namespace

void SumInRankOrder(const std::byte* const* srcs, int count, size_t n, DType dtype,
                    std::byte* out) {
  if (dtype == DType::kF32) {
    SumF32(srcs, count, n, out);
  } else {
    SumBf16(srcs, count, n, out);
  }
}

}  // namespace expertmesh::comm
