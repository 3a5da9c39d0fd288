// Host-side launch of the weight-only kernels (fp8 and q4 weights; bf16 or f32 x) on the grouped
// GEMM's persistent grid: the launchers' common checks and front (fp8_gemm.cu, q4_gemm.cu), the
// SIMT-style kernels' dispatch on x's, the bias's and out's dtypes (fp8_gemv.cu,
// fp8_gemm_simt.cu, q4_gemv.cu, q4_gemm_simt.cu) and the tensor-core kernels' dispatch on the
// tile and out's dtype (fp8_gemm_mma.cu, q4_gemm_mma.cu).
//
// One template serves both weight formats because the launch does not depend on it: Fp8GemmArgs
// and Q4GemmArgs name x, bias, out and the sizes alike, and what the kernels read of the weights
// is one by-value `Source` (Fp8Source, Q4Source) the caller builds with SourceOf(args).
//
// Internal to kernels/cuda/gemm (included by .cu files only).
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_WEIGHT_ONLY_LAUNCH_CUH_
#define EXPERTMESH_KERNELS_CUDA_GEMM_WEIGHT_ONLY_LAUNCH_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "common/dtype.h"
#include "kernels/cuda/gemm/moe_grouped_gemm_internal.h"
#include "kernels/cuda/gemm/moe_tile_scheduler.cuh"

namespace expertmesh::cuda::gemm_internal {

inline bool IsF32OrBf16(DType d) { return d == DType::kF32 || d == DType::kBF16; }
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// What every weight-only launcher requires of the activations before its own checks: x, out and
// a bias f32 or bf16; m, k and n within int (the kernels index with int).
template <typename Args>
bool ValidActivations(const Args& a) {
  if (!IsF32OrBf16(a.x_dtype) || !IsF32OrBf16(a.out_dtype)) return false;
  if (a.bias != nullptr && !IsF32OrBf16(a.bias_dtype)) return false;
  return a.m >= 0 && a.k >= 0 && a.n >= 0 && a.m <= INT_MAX && a.k <= INT_MAX && a.n <= INT_MAX;
}

// The launchers' front, after their own validation (`valid`): the planned path (kAuto: a forced
// path that cannot run these arguments, refused), nothing launched for an empty output, the SM
// count resolved; then `launch(path, num_sms)` runs the path.
template <typename Args, typename Path, typename Launch>
cudaError_t LaunchPlanned(const Args& args, bool valid, Path (*plan)(const Args&), Launch launch) {
  if (!valid) return cudaErrorInvalidValue;
  const Path path = plan(args);
  if (path == Path::kAuto) return cudaErrorInvalidValue;  // a forced path cannot run
  if (args.m == 0 || args.n == 0) return cudaSuccess;

  int num_sms = 0;
  if (const cudaError_t err = ResolveNumSms(args.num_sms, &num_sms); err != cudaSuccess) {
    return err;
  }
  return launch(path, num_sms);
}

// The shape of a SIMT-style path; a path derives from it and adds
//   template <typename XT, typename BT, typename OT> static auto Kernel();  // &kernel<XT, BT, OT>
// where every kernel takes (x, expert_offsets, Source, bias, out, m, k, n, num_experts,
// error_flags) and no dynamic shared memory.
template <int kTileM_, int kTileN_, int kThreads_, int kCtasPerSm_>
struct PersistentShape {
  static constexpr int kTileM = kTileM_;  // a work item's token rows
  static constexpr int kTileN = kTileN_;  // a work item's weight rows
  static constexpr int kThreads = kThreads_;
  static constexpr int kCtasPerSm = kCtasPerSm_;
};

template <typename Path, typename XT, typename BT, typename OT, typename Args, typename Source>
cudaError_t LaunchTyped(const Args& a, const Source& src, int num_sms, cudaStream_t stream) {
  const unsigned grid =
      MoeGridSize<Path::kTileM, Path::kTileN>(a.m, a.n, a.num_experts, num_sms, Path::kCtasPerSm);
  auto* kernel = Path::template Kernel<XT, BT, OT>();
  kernel<<<grid, Path::kThreads, 0, stream>>>(
      static_cast<const XT*>(a.x), a.expert_offsets, src, static_cast<const BT*>(a.bias),
      static_cast<OT*>(a.out), static_cast<int>(a.m), static_cast<int>(a.k), static_cast<int>(a.n),
      a.num_experts, a.error_flags);
  return cudaGetLastError();
}

template <typename Path, typename XT, typename BT, typename Args, typename Source>
cudaError_t LaunchByOut(const Args& a, const Source& src, int num_sms, cudaStream_t stream) {
  return a.out_dtype == DType::kF32
             ? LaunchTyped<Path, XT, BT, float>(a, src, num_sms, stream)
             : LaunchTyped<Path, XT, BT, __nv_bfloat16>(a, src, num_sms, stream);
}

template <typename Path, typename XT, typename Args, typename Source>
cudaError_t LaunchByBias(const Args& a, const Source& src, int num_sms, cudaStream_t stream) {
  if (a.bias == nullptr || a.bias_dtype == DType::kF32) {
    return LaunchByOut<Path, XT, float>(a, src, num_sms, stream);
  }
  return LaunchByOut<Path, XT, __nv_bfloat16>(a, src, num_sms, stream);
}

// x, bias and out each f32 or bf16 (validated by the caller); no bias launches the f32 one.
template <typename Path, typename Args, typename Source>
cudaError_t LaunchByDtype(const Args& a, const Source& src, int num_sms, cudaStream_t stream) {
  return a.x_dtype == DType::kF32 ? LaunchByBias<Path, float>(a, src, num_sms, stream)
                                  : LaunchByBias<Path, __nv_bfloat16>(a, src, num_sms, stream);
}

// `MmaPath` names a tensor-core kernel:
//   template <typename Cfg, bool kOutF32> static auto Kernel();  // &kernel<Cfg, kOutF32>
// where every kernel takes (bf16 x, expert_offsets, Source, out, m, k, n, num_experts,
// error_flags) and Cfg::kSmemBytes of dynamic shared memory.
template <typename MmaPath, typename Cfg, bool kOutF32, typename Args, typename Source>
cudaError_t LaunchMmaTyped(const Args& a, const Source& src, int num_sms, cudaStream_t stream) {
  auto* kernel = MmaPath::template Kernel<Cfg, kOutF32>();
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
  if (err != cudaSuccess) return err;
  const unsigned grid =
      MoeGridSize<Cfg::kTileM, Cfg::kTileN>(a.m, a.n, a.num_experts, num_sms, Cfg::kCtasPerSm);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
      static_cast<const __nv_bfloat16*>(a.x), a.expert_offsets, src, a.out, static_cast<int>(a.m),
      static_cast<int>(a.k), static_cast<int>(a.n), a.num_experts, a.error_flags);
  return cudaGetLastError();
}

// `small_tile`: SmallCfg (a few rows per expert), else LargeCfg; out f32 or bf16.
template <typename MmaPath, typename LargeCfg, typename SmallCfg, typename Args, typename Source>
cudaError_t LaunchMmaByTile(const Args& a, const Source& src, bool small_tile, int num_sms,
                            cudaStream_t stream) {
  const bool f32 = a.out_dtype == DType::kF32;
  if (!small_tile) {
    return f32 ? LaunchMmaTyped<MmaPath, LargeCfg, true>(a, src, num_sms, stream)
               : LaunchMmaTyped<MmaPath, LargeCfg, false>(a, src, num_sms, stream);
  }
  return f32 ? LaunchMmaTyped<MmaPath, SmallCfg, true>(a, src, num_sms, stream)
             : LaunchMmaTyped<MmaPath, SmallCfg, false>(a, src, num_sms, stream);
}

}  // namespace expertmesh::cuda::gemm_internal

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_WEIGHT_ONLY_LAUNCH_CUH_
