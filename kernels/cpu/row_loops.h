// EXPERTMESH_ROW_LOOP: a plain C++ loop over a row built for the x86-64 baseline and for AVX2 and
// AVX-512 (GCC's target_clones, the dynamic linker picks one at load time), for element-wise
// loops that the baseline's 4-lane SSE would hold back. The clones compute the same bits only in
// files compiled with -ffp-contract=off (kernels/cpu/CMakeLists.txt): AVX-512F brings FMA, and
// GCC's default contraction fused a * b + c in that clone alone. GCC vectorises a loop only
// where each value sees the same operations in the same order (reductions it would reorder stay
// scalar unless written as fixed lanes).
#ifndef EXPERTMESH_KERNELS_CPU_ROW_LOOPS_H_
#define EXPERTMESH_KERNELS_CPU_ROW_LOOPS_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EXPERTMESH_ROW_LOOP __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXPERTMESH_ROW_LOOP
#endif

#endif  // EXPERTMESH_KERNELS_CPU_ROW_LOOPS_H_
