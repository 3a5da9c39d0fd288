// MoE combine in two kernels:
//  1. The inverse of sorted_slots (the y row of each slot) into the caller's workspace, checking
//     that sorted_slots is a permutation (atomicCAS only detects duplicates; it orders nothing).
//  2. One block per token: its top_k picks sorted by (expert id, j) in shared memory, then each
//     thread sums its hidden elements in that order in fp32, adds the (gated) shared expert and
//     rounds once to the output dtype. Products and sums are rounded separately, as on the CPU.
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/moe_combine.h"

namespace expertmesh::cuda {
namespace {

using ops::Bf16;

__global__ void InverseSlotsKernel(const int32_t* sorted_slots, int32_t* row_of_slot, int64_t m,
                                   uint32_t* flags) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < m;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t s = sorted_slots[r];
    if (s < 0 || s >= m) {
      ops::SetErrorFlag(flags, kErrorMoeExpertId);
      continue;
    }
    if (atomicCAS(&row_of_slot[s], -1, static_cast<int32_t>(r)) != -1) {
      ops::SetErrorFlag(flags, kErrorMoeExpertId);  // a slot listed twice
    }
  }
}

template <typename TY, typename TS, typename TG, typename TO>
__global__ void MoeCombineKernel(MoeCombineArgs a, const int32_t* row_of_slot) {
  extern __shared__ int smem[];
  const int64_t k = a.top_k, hidden = a.hidden;
  int32_t* rows = smem;                                 // [k] y rows in summation order
  float* weights = reinterpret_cast<float*>(smem + k);  // [k]
  const TY* y = static_cast<const TY*>(a.y);
  const TS* shared = static_cast<const TS*>(a.shared);
  const TG* gate = static_cast<const TG*>(a.shared_gate);
  TO* out = static_cast<TO*>(a.out);
  for (int64_t t = blockIdx.x; t < a.num_tokens; t += gridDim.x) {
    const int32_t* ids = a.topk_ids + t * k;
    __syncthreads();  // the previous token's order is no longer read
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      int64_t rank = 0;
      for (int64_t i = 0; i < k; ++i) rank += (ids[i] < ids[j] || (ids[i] == ids[j] && i < j));
      rows[rank] = row_of_slot[t * k + j];
      weights[rank] = a.topk_weights[t * k + j];
    }
    __syncthreads();
    float g = 1.0f;
    if (gate != nullptr) g = __fdiv_rn(1.0f, 1.0f + expf(-ops::ToFloat(gate[t])));
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
      float acc = 0.0f;
      for (int64_t r = 0; r < k; ++r) {
        const int32_t row = rows[r];
        if (row < 0) continue;  // reported by InverseSlotsKernel
        acc = __fadd_rn(acc, __fmul_rn(weights[r], ops::ToFloat(y[row * hidden + i])));
      }
      if (shared != nullptr)
        acc = __fadd_rn(acc, __fmul_rn(g, ops::ToFloat(shared[t * hidden + i])));
      out[t * hidden + i] = ops::FromFloat<TO>(acc);
    }
  }
}

template <typename TY, typename TS, typename TG, typename TO>
cudaError_t Launch(const MoeCombineArgs& a, const int32_t* row_of_slot, cudaStream_t stream) {
  const int grid = static_cast<int>(a.num_tokens < 65535 ? a.num_tokens : 65535);
  const int threads = a.hidden >= 1024 ? 256 : 128;
  const size_t smem = static_cast<size_t>(a.top_k) * 8;
  MoeCombineKernel<TY, TS, TG, TO><<<grid, threads, smem, stream>>>(a, row_of_slot);
  return cudaGetLastError();
}

bool IsCompute(DType d) { return d == DType::kF32 || d == DType::kBF16; }

// Four compute dtypes (y, shared, gate, out) give 16 instantiations; absent tensors use y's.
template <typename TY, typename TS, typename TG>
cudaError_t DispatchOut(const MoeCombineArgs& a, const int32_t* inv, cudaStream_t stream) {
  return a.out_dtype == DType::kF32 ? Launch<TY, TS, TG, float>(a, inv, stream)
                                    : Launch<TY, TS, TG, Bf16>(a, inv, stream);
}
template <typename TY, typename TS>
cudaError_t DispatchGate(const MoeCombineArgs& a, const int32_t* inv, cudaStream_t stream) {
  const DType d = a.shared_gate == nullptr ? a.y_dtype : a.shared_gate_dtype;
  return d == DType::kF32 ? DispatchOut<TY, TS, float>(a, inv, stream)
                          : DispatchOut<TY, TS, Bf16>(a, inv, stream);
}
template <typename TY>
cudaError_t DispatchShared(const MoeCombineArgs& a, const int32_t* inv, cudaStream_t stream) {
  const DType d = a.shared == nullptr ? a.y_dtype : a.shared_dtype;
  return d == DType::kF32 ? DispatchGate<TY, float>(a, inv, stream)
                          : DispatchGate<TY, Bf16>(a, inv, stream);
}

}  // namespace

size_t MoeCombineWorkspaceBytes(int64_t num_slots) {
  return static_cast<size_t>(num_slots) * sizeof(int32_t);
}

cudaError_t LaunchMoeCombine(const MoeCombineArgs& a, cudaStream_t stream) {
  if (!IsCompute(a.y_dtype) || !IsCompute(a.out_dtype) ||
      (a.shared != nullptr && !IsCompute(a.shared_dtype)) ||
      (a.shared_gate != nullptr && !IsCompute(a.shared_gate_dtype))) {
    return cudaErrorInvalidValue;
  }
  const int64_t m = a.num_tokens * a.top_k;
  if (m >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  if (a.num_tokens == 0 || a.hidden == 0) return cudaSuccess;
  if (m > 0 && a.workspace == nullptr) return cudaErrorInvalidValue;
  int32_t* inv = static_cast<int32_t*>(a.workspace);
  if (m > 0) {
    cudaError_t err = cudaMemsetAsync(inv, 0xff, MoeCombineWorkspaceBytes(m), stream);  // -1
    if (err != cudaSuccess) return err;
    const int64_t blocks = ops::CeilDiv(m, 256);
    InverseSlotsKernel<<<static_cast<int>(blocks < 1024 ? blocks : 1024), 256, 0, stream>>>(
        a.sorted_slots, inv, m, a.error_flags);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return a.y_dtype == DType::kF32 ? DispatchShared<float>(a, inv, stream)
                                  : DispatchShared<Bf16>(a, inv, stream);
}

}  // namespace expertmesh::cuda
