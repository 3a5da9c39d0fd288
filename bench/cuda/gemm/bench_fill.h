// Device-side random fills for the GEMM benchmarks (gigabytes of weights would take seconds to
// generate and copy from the host).
#ifndef EXPERTMESH_BENCH_CUDA_GEMM_BENCH_FILL_H_
#define EXPERTMESH_BENCH_CUDA_GEMM_BENCH_FILL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// data[i] = a hash of (seed, i) mapped uniformly to [-scale, scale), as bf16 (never zeros:
// zeros run faster than real data on tensor cores).
cudaError_t LaunchFillRandomBf16(void* data, size_t count, uint32_t seed, float scale,
                                 cudaStream_t stream);

// data[i] = a hash of (seed, i) as an e4m3 byte, never NaN (0x7f / 0xff become 0x7e / 0xfe) nor
// zero.
cudaError_t LaunchFillRandomE4m3(void* data, size_t count, uint32_t seed, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_BENCH_CUDA_GEMM_BENCH_FILL_H_
