// gemm_q4_xbf16 of the AVX512_BF16 family (kernels_avx512_bf16_q4.cc, compiled with its own
// flags); KernelTable::gemm_q4_xbf16 says what it computes.
#ifndef EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_Q4_H_
#define EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_Q4_H_

#include <cstdint>

#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {

// REQUIRES: CpuSupports(CpuIsa::kAvx512Bf16).
void GemmQ4XBf16(const uint16_t* x, int64_t ldx, int64_t n, int64_t k, const uint8_t* w,
                 int64_t ldw, int64_t rows, const Q4Groups& groups, float* out, int64_t ldo);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_Q4_H_
