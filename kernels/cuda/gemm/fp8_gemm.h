// Products with fp8 e4m3 block-quantized weights on the GPU (kernels::Backend::Linear and
// MoeGroupedLinear when the weight is kF8E4M3): out[r] = x[r] @ W_e^T (+ bias), where W_e's
// element [i][j] is its e4m3 value times its block's f32 scale (kernels::BlockScales). The
// weights stay one byte each on the device; nothing is widened in device memory.
//
// One launcher serves the dense linear (one "expert" with rows [0, m), optional bias) and the
// grouped expert GEMM (offsets on the device, as LaunchMoeGroupedGemm; graph-capturable).
//
// Paths (docs/fp8.md says which runs when):
//  - kGemv (W8A16, decode-sized): each warp streams whole weight rows once, 16 e4m3 bytes per
//    lane per load, converted in registers (cvt e4m3x2 -> f16x2 -> f32) and multiplied by their
//    block scale, so every product is x * (q * s) with q * s rounded once, as the CPU's
//    dequantized reference; up to 8 token rows share each weight load. Any x/out dtype, bias.
//  - kMmaW8A16 (prefill-sized, the default for many rows): tensor cores (mma.sync bf16) over
//    bf16 x; each fp8 weight tile is copied to shared memory, dequantized there once per CTA as
//    bf16(q * s), and multiplied. Numerically the bf16-widened weights the backend used before.
//  - kW8A8 (prefill-sized, opt-in: CudaBackendOptions::fp8_w8a8_min_rows): DeepSeek-V3's
//    recipe. x is quantized per token and 128-wide k block to e4m3 (scale = amax / 448, into
//    the workspace), products run on fp8 tensor cores (mma.sync m16n8k32 e4m3, fp32 accumulate)
//    and each 128-wide k step's partial sums are multiplied by x's and W's block scales in the
//    fp32 accumulators. Needs every weight's column blocks 128 wide and aligned to the k steps.
//  - kSimt: an fp32 SIMT kernel, any shape, offsets and block shape (exact mode, fallbacks).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace expertmesh::cuda {

// The block scales of one fp8 weight as kernels read them: weight element [r][c] is multiplied
// by scales[((r + row_offset) / block_rows) * ld + (c + col_offset) / block_cols].
struct Fp8Scales {
  const float* scales = nullptr;  // device f32 grid
  int32_t ld = 0;                 // grid columns
  int32_t row_offset = 0;
  int32_t col_offset = 0;
  int32_t block_rows = 128;
  int32_t block_cols = 128;
};

enum class Fp8GemmPath : uint8_t { kAuto, kGemv, kMmaW8A16, kW8A8, kSimt };

// Average rows per expert up to which kAuto streams weights (kGemv) rather than tiling.
inline constexpr int64_t kFp8GemvMaxRowsPerExpert = 8;

struct Fp8GemmArgs {
  const void* x = nullptr;  // [m, k] x_dtype (kBF16 or kF32), rows grouped by expert
  DType x_dtype = DType::kBF16;
  // Grouped: device [num_experts + 1] i32 offsets (0 .. m, non-decreasing), device arrays of
  // num_experts weight pointers ([n, k] e4m3 row-major, 16-byte aligned, null for an expert
  // without rows) and of their scales. Dense: all three null, `weight` and `weight_scales`
  // describe the one weight, rows [0, m).
  const int32_t* expert_offsets = nullptr;
  const void* const* weights = nullptr;
  const Fp8Scales* expert_scales = nullptr;
  const void* weight = nullptr;
  Fp8Scales weight_scales;
  const void* bias = nullptr;  // [n] bias_dtype (kBF16|kF32), dense only; null for none
  DType bias_dtype = DType::kBF16;
  void* out = nullptr;  // [m, n] out_dtype (kBF16 or kF32)
  DType out_dtype = DType::kBF16;
  int64_t m = 0;
  int64_t k = 0;  // in_features
  int64_t n = 0;  // out_features
  int num_experts = 1;
  // What the host knows about every weight's scales (the caller computes it when it builds the
  // arrays): the smallest block_cols, and whether every weight's column blocks are multiples of
  // 128 wide starting at column offsets that are multiples of 128 (W8A8's k steps).
  int32_t min_block_cols = 128;
  bool blocks_128_aligned = true;
  uint32_t* error_flags = nullptr;  // as MoeGroupedGemmArgs (grouped only); may be null
  Fp8GemmPath path = Fp8GemmPath::kAuto;
  // kAuto takes kW8A8 for products of at least this many rows (where it can run); 0 never.
  int64_t w8a8_min_rows = 0;
  int num_sms = 0;  // 0 = ask the current device
  // Scratch for kW8A8 (Fp8GemmWorkspaceBytes); other paths need none.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The path kAuto (or a forced path) runs for these arguments, or kAuto when a forced path
// cannot run them. For tests, benchmarks and the workspace size.
Fp8GemmPath PlannedFp8GemmPath(const Fp8GemmArgs& args);

// Workspace the planned path needs: for kW8A8, m * k e4m3 activations plus m * ceil(k / 128)
// f32 scales (256-byte aligned parts); 0 otherwise.
size_t Fp8GemmWorkspaceBytes(const Fp8GemmArgs& args);

// Enqueues the product. cudaErrorInvalidValue for dtypes other than kBF16/kF32 (x, out, bias),
// sizes over INT32_MAX, num_experts outside [1, kMoeGroupedGemmMaxExperts], a bias with
// experts, a forced path that cannot run these arguments, or a workspace smaller than needed.
// Allocates nothing and never synchronises (graph-capturable).
cudaError_t LaunchFp8Gemm(const Fp8GemmArgs& args, cudaStream_t stream);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_FP8_GEMM_H_
