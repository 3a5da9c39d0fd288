// The reference of Backend::MaskLogits (kernels/backend.h): one logits row masked by one token
// bitmask on the host. The CPU backend runs it per listed row; the engine's host sampler uses it
// for the rows it draws itself, so both paths mask with the very same code.
#ifndef EXPERTMESH_KERNELS_CPU_CPU_MASK_H_
#define EXPERTMESH_KERNELS_CPU_CPU_MASK_H_

#include <cstdint>
#include <span>

namespace expertmesh::kernels::cpu {

// row[t] = -inf for every t whose bit t % 32 of mask[t / 32] is clear; nothing else is written.
// Uses AVX-512 masked stores where the CPU has them, else MaskLogitsRowPortable (the results are
// the same bits).
// REQUIRES: mask.size() >= ceil(row.size() / 32).
void MaskLogitsRow(std::span<const uint32_t> mask, std::span<float> row);

// The portable path of MaskLogitsRow, exposed so that tests cover it on any CPU.
void MaskLogitsRowPortable(std::span<const uint32_t> mask, std::span<float> row);

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_MASK_H_
