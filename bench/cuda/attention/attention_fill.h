// Device-side random fill for the attention benchmark (never zeros: they can run faster than
// real data).
#ifndef EXPERTMESH_BENCH_CUDA_ATTENTION_ATTENTION_FILL_H_
#define EXPERTMESH_BENCH_CUDA_ATTENTION_ATTENTION_FILL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace expertmesh::cuda {

// bf16 values uniform in [-amplitude, amplitude) from a hash of (seed, index).
cudaError_t FillRandomBf16(uint16_t* data, int64_t count, uint32_t seed, float amplitude,
                           cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_BENCH_CUDA_ATTENTION_ATTENTION_FILL_H_
