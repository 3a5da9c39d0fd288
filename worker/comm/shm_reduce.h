// The sum of the shared-memory transport's reductions: every rank adds all ranks'
// contributions itself, in rank order, so that all ranks hold bit-identical results.
#ifndef EXPERTMESH_WORKER_COMM_SHM_REDUCE_H_
#define EXPERTMESH_WORKER_COMM_SHM_REDUCE_H_

#include <cstddef>

#include "common/dtype.h"

namespace expertmesh::comm {

// out[i] = srcs[0][i] + srcs[1][i] + ... + srcs[count-1][i] for i < n elements of dtype (kF32,
// or kBF16 summed in fp32 and rounded once to nearest even), added left to right. The sources
// are 4-byte aligned; `out` may have any alignment and may alias no source.
void SumInRankOrder(const std::byte* const* srcs, int count, size_t n, DType dtype, std::byte* out);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_SHM_REDUCE_H_
