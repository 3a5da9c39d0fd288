// widen_q4_bf16 of the AVX512_BF16 family (kernels_avx512_bf16_widen.cc,
// compiled with its own flags); KernelTable says what they compute.
#ifndef EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_WIDEN_H_
#define EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_WIDEN_H_

#include <cstdint>

#include "kernels/cpu/kernel_table.h"

namespace expertmesh::kernels::cpu {

// REQUIRES: CpuSupports(CpuIsa::kAvx512Bf16).
void WidenQ4Bf16(const uint8_t* w, int64_t ldw, int64_t rows, int64_t k, const Q4Groups& groups,
                 const uint8_t* next, uint16_t* out);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_KERNELS_AVX512_BF16_WIDEN_H_
