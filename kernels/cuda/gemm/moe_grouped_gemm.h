// The per-expert linear of MoE layers on the GPU (kernels::Backend::MoeGroupedLinear):
//   out[r] = x[r] @ W_e^T   for expert_offsets[e] <= r < expert_offsets[e + 1],
// one launch for all experts of a layer, fp32 accumulation, a bf16 output rounded once.
//
// The per-expert row counts stay on the device (no host read, so a decode step can be captured
// into a CUDA graph): a persistent grid walks (expert, m-tile, n-tile) work items that every CTA
// derives from the offsets itself.
//
// Paths:
//  - bf16 x, bf16 W, in % 8 == 0, x and out 16-byte aligned: tensor cores (mma.sync m16n8k16,
//    cp.async 3-4 stage pipeline, ldmatrix over a swizzled tile). Two tile shapes: 128x128 for
//    prefill-sized groups, 32x128 for decode-sized ones (fewer wasted rows per expert).
//  - any other mix of f32/bf16 x and W (the exact-mode f32 activations), or in % 8 != 0: a
//    tiled fp32 SIMT kernel with the same scheduling.
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// The most experts per launch (the schedule lives in shared memory); as kMoePermuteMaxExperts.
inline constexpr int kMoeGroupedGemmMaxExperts = 1024;

// Which kernel to run; kAuto picks by dtypes, alignment and rows per expert. The others exist
// for tests and benchmarks (a forced path that cannot run the arguments is InvalidValue).
enum class MoeGemmPath : uint8_t { kAuto, kTensorCoreLarge, kTensorCoreSmall, kSimt };

struct MoeGroupedGemmArgs {
  const void* x = nullptr;                  // [m, in_features] x_dtype, rows grouped by expert
  DType x_dtype = DType::kBF16;             // kBF16 or kF32
  const int32_t* expert_offsets = nullptr;  // device [num_experts + 1], 0 .. m, non-decreasing
  // Device array of num_experts pointers, each to an [out_features, in_features] row-major
  // matrix of weight_dtype, 16-byte aligned; nullptr for an expert without rows (e.g. one that
  // lives on another rank). Built once per layer by the caller (weights do not move).
  const void* const* weights = nullptr;
  DType weight_dtype = DType::kBF16;  // kBF16 or kF32, the same for every expert
  void* out = nullptr;                // [m, out_features] out_dtype
  DType out_dtype = DType::kBF16;     // kBF16 or kF32
  int64_t m = 0;                      // rows of x and out (= expert_offsets[num_experts])
  int64_t in_features = 0;
  int64_t out_features = 0;
  int num_experts = 0;
  // kErrorExpertOffsets (offsets not non-decreasing from 0 to m) and kErrorMissingExpertWeight
  // (rows for an expert whose weight pointer is null: those rows are not written). May be null.
  uint32_t* error_flags = nullptr;
  MoeGemmPath path = MoeGemmPath::kAuto;
  // Multiprocessors to size the persistent grid for; 0 = ask the current device.
  int num_sms = 0;
};

// Needs no workspace. cudaErrorInvalidValue for dtypes other than kF32/kBF16, num_experts
// outside [1, kMoeGroupedGemmMaxExperts], sizes over INT32_MAX, or a forced path that cannot
// run these arguments.
cudaError_t LaunchMoeGroupedGemm(const MoeGroupedGemmArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_MOE_GROUPED_GEMM_H_
