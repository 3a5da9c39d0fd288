// Products with 4-bit (kQ4) weights on the GPU (kernels::Backend::Linear and MoeGroupedLinear
// when the weight is DType::kQ4): out[r] = x[r] @ W_e^T (+ bias), where W_e's element [i][j] is
// (q - zero) * scale of its group (kernels::BlockScales; zero 8 unless the weight has zero
// points, as asymmetric GPTQ). The weights stay packed on the device, half a byte each, in the
// CPU kernels' layout (kernels/q4_layout.h: 64-wide units, byte j = value j low nibble, value
// j + 32 high nibble, a last unit 32 wide): a 16-byte load then holds two runs of 16 consecutive
// values, each inside one group (groups and their offsets are multiples of 32), so every run
// takes one scale and one zero point and the layout needs no repacking.
//
// One launcher serves the dense linear (one "expert" with rows [0, m), optional bias) and the
// grouped expert GEMM (offsets on the device, as LaunchMoeGroupedGemm; graph-capturable).
//
// Paths:
//  - kGemv (W4A16, decode-sized): each warp streams whole weight rows once, 16 bytes (32 values)
//    per lane per load, unpacked in registers; each run of 16 values is multiplied as (q - zero)
//    against x in fp32 and the run's sum scaled once by its group scale; up to 8 token rows share
//    each weight load. Any x/out dtype, bias.
//  - kMma (prefill-sized): tensor cores (mma.sync bf16) over bf16 x; each 64-wide k step's packed
//    bytes are copied to shared memory and dequantized there once per CTA as bf16((q - zero) *
//    scale), then multiplied like the bf16 grouped GEMM's tiles.
//  - kSimt: an fp32 SIMT kernel, any shape (exact mode with many rows, a bias with many rows).
// Act-order weights (GPTQ desc_act; BlockScales::column_order) carry their column order on the
// device: every path reads activation column order[j] for weight column j (gathered as it
// loads x), so nothing is copied or widened for them.
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// The groups of one q4 weight as kernels read them: element [r][c] (a packed [n, k] weight) is
// (q - zero) * scales[g], g = ((r + row_offset) / block_rows) * ld + (c + col_offset) /
// group_size; zero = zero_points[g], or 8 without zero points.
struct Q4Groups {
  const float* scales = nullptr;       // device f32 grid
  const float* zero_points = nullptr;  // device f32 grid shaped as scales, or null
  // Act-order: device i32 [k], 16-byte aligned; column j multiplies x[column_order[j]]. Or null.
  const int32_t* column_order = nullptr;
  int32_t ld = 0;  // grid columns
  int32_t row_offset = 0;
  int32_t col_offset = 0;  // a multiple of 32
  int32_t block_rows = 1;
  int32_t group_size = 128;  // a multiple of 32
};

enum class Q4GemmPath : uint8_t { kAuto, kGemv, kMma, kSimt };

// Average rows per expert up to which kAuto streams weights (kGemv) rather than tiling.
inline constexpr int64_t kQ4GemvMaxRowsPerExpert = 8;

struct Q4GemmArgs {
  const void* x = nullptr;  // [m, k] x_dtype (kBF16 or kF32), rows grouped by expert
  DType x_dtype = DType::kBF16;
  // Grouped: device [num_experts + 1] i32 offsets (0 .. m, non-decreasing), device arrays of
  // num_experts weight pointers ([n, k / 2] packed bytes, 16-byte aligned, null for an expert
  // without rows) and of their groups. Dense: all three null, `weight` and `weight_groups`
  // describe the one weight, rows [0, m).
  const int32_t* expert_offsets = nullptr;
  const void* const* weights = nullptr;
  const Q4Groups* expert_groups = nullptr;
  const void* weight = nullptr;
  Q4Groups weight_groups;
  const void* bias = nullptr;  // [n] bias_dtype (kBF16|kF32), dense only; null for none
  DType bias_dtype = DType::kBF16;
  void* out = nullptr;  // [m, n] out_dtype (kBF16 or kF32)
  DType out_dtype = DType::kBF16;
  int64_t m = 0;
  int64_t k = 0;  // in_features, a multiple of 32
  int64_t n = 0;  // out_features
  int num_experts = 1;
  uint32_t* error_flags = nullptr;  // as MoeGroupedGemmArgs (grouped only); may be null
  Q4GemmPath path = Q4GemmPath::kAuto;
  int num_sms = 0;  // 0 = ask the current device
};

// The path kAuto (or a forced path) runs for these arguments, or kAuto when a forced path
// cannot run them. For tests and benchmarks.
Q4GemmPath PlannedQ4GemmPath(const Q4GemmArgs& args);

// Enqueues the product. cudaErrorInvalidValue for dtypes other than kBF16/kF32 (x, out, bias),
// k not a multiple of 32, sizes over INT32_MAX, num_experts outside [1,
// kMoeGroupedGemmMaxExperts], a bias with experts, unaligned weights, or a forced path that
// cannot run these arguments. Needs no workspace, allocates nothing and never synchronises
// (graph-capturable).
cudaError_t LaunchQ4Gemm(const Q4GemmArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_Q4_GEMM_H_
