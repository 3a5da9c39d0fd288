// bf16 <-> fp32 conversion on the GPU for the NCCL communicator: the Communicator contract sums
// bf16 in fp32 and rounds once, while NCCL's own bf16 reductions round after every hop. So the
// communicator widens bf16 to fp32 scratch, reduces that, and narrows the result once.
#ifndef EXPERTMESH_WORKER_COMM_NCCL_CONVERT_H_
#define EXPERTMESH_WORKER_COMM_NCCL_CONVERT_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace expertmesh::comm {

// dst[i] = src[i] as fp32 (exact), for i < count. Enqueues on `stream` only.
cudaError_t LaunchBf16ToF32(const uint16_t* src, float* dst, size_t count, cudaStream_t stream);

// dst[i] = src[i] rounded to bf16 (nearest even, NaN stays NaN: common/dtype.h's FloatToBf16),
// for i < count. Enqueues on `stream` only.
cudaError_t LaunchF32ToBf16(const float* src, uint16_t* dst, size_t count, cudaStream_t stream);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_NCCL_CONVERT_H_
