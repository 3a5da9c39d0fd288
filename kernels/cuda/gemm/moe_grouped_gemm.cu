// LaunchMoeGroupedGemm: validates the arguments and picks the kernel (see the header).
#include "kernels/cuda/gemm/moe_grouped_gemm.h"

#include <climits>
#include <cstdint>

#include "kernels/cuda/gemm/moe_grouped_gemm_internal.h"

namespace expertmesh::cuda {
namespace {

// Average rows per expert up to which the 32-row tile wastes less than the 128-row tile gains.
constexpr int64_t kSmallTileMaxRowsPerExpert = 48;

bool IsF32OrBf16(DType d) { return d == DType::kF32 || d == DType::kBF16; }

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

bool TensorCoreEligible(const MoeGroupedGemmArgs& a) {
  return a.x_dtype == DType::kBF16 && a.weight_dtype == DType::kBF16 && a.in_features > 0 &&
         a.in_features % 8 == 0 && Aligned16(a.x) && Aligned16(a.out);
}

}  // namespace

namespace gemm_internal {

cudaError_t ResolveNumSms(int requested, int* num_sms) {
  *num_sms = requested;
  if (requested > 0) return cudaSuccess;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  return cudaDeviceGetAttribute(num_sms, cudaDevAttrMultiProcessorCount, device);
}

}  // namespace gemm_internal

cudaError_t LaunchMoeGroupedGemm(const MoeGroupedGemmArgs& args, cudaStream_t stream) {
  if (!IsF32OrBf16(args.x_dtype) || !IsF32OrBf16(args.weight_dtype) ||
      !IsF32OrBf16(args.out_dtype)) {
    return cudaErrorInvalidValue;
  }
  if (args.num_experts < 1 || args.num_experts > kMoeGroupedGemmMaxExperts || args.m < 0 ||
      args.in_features < 0 || args.out_features < 0 || args.m > INT_MAX ||
      args.in_features > INT_MAX || args.out_features > INT_MAX || args.expert_offsets == nullptr ||
      args.weights == nullptr) {
    return cudaErrorInvalidValue;
  }
  // Nothing to write. (The offsets of an empty batch are not checked: no kernel runs.)
  if (args.m == 0 || args.out_features == 0) return cudaSuccess;

  int num_sms = 0;
  if (const cudaError_t err = gemm_internal::ResolveNumSms(args.num_sms, &num_sms);
      err != cudaSuccess) {
    return err;
  }

  const bool tensor_cores = TensorCoreEligible(args);
  switch (args.path) {
    case MoeGemmPath::kAuto:
      if (!tensor_cores) return gemm_internal::LaunchMoeGemmSimt(args, num_sms, stream);
      return gemm_internal::LaunchMoeGemmMma(args,
                                             args.m <= kSmallTileMaxRowsPerExpert * args.num_experts
                                                 ? gemm_internal::MmaTile::kSmall
                                                 : gemm_internal::MmaTile::kLarge,
                                             num_sms, stream);
    case MoeGemmPath::kTensorCoreLarge:
    case MoeGemmPath::kTensorCoreSmall:
      if (!tensor_cores) return cudaErrorInvalidValue;
      return gemm_internal::LaunchMoeGemmMma(args,
                                             args.path == MoeGemmPath::kTensorCoreLarge
                                                 ? gemm_internal::MmaTile::kLarge
                                                 : gemm_internal::MmaTile::kSmall,
                                             num_sms, stream);
    case MoeGemmPath::kSimt:
      return gemm_internal::LaunchMoeGemmSimt(args, num_sms, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace expertmesh::cuda
