// LaunchQ4Gemm: validates the arguments and picks the kernel (see q4_gemm.h).
#include "kernels/cuda/gemm/q4_gemm.h"

#include <cstdint>

#include "kernels/cuda/gemm/moe_grouped_gemm.h"
#include "kernels/cuda/gemm/q4_gemm_internal.h"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda {
namespace {

// Average rows per expert up to which the 32-row tensor-core tile beats the 128-row one (as the
// bf16 grouped GEMM).
constexpr int64_t kSmallTileMaxRowsPerExpert = 48;

using gemm_internal::Aligned16;

bool Valid(const Q4GemmArgs& a) {
  if (!gemm_internal::ValidActivations(a)) return false;
  // The packed layout's units: every kernel reads whole 16-byte chunks of 32 values.
  if (a.k % 32 != 0) return false;
  const bool grouped = a.weights != nullptr;
  if (grouped) {
    if (a.expert_offsets == nullptr || a.expert_groups == nullptr || a.bias != nullptr) {
      return false;
    }
    if (a.num_experts < 1 || a.num_experts > kMoeGroupedGemmMaxExperts) return false;
  } else {
    if (a.expert_offsets != nullptr || a.num_experts != 1) return false;
    if (a.m > 0 && a.n > 0 && (a.weight == nullptr || !Aligned16(a.weight))) return false;
    if (a.m > 0 && a.n > 0 && a.k > 0 && a.weight_groups.scales == nullptr) return false;
  }
  return true;
}

bool GemvEligible(const Q4GemmArgs& a) { return a.k > 0 && Aligned16(a.x); }

bool MmaEligible(const Q4GemmArgs& a) {
  return GemvEligible(a) && a.x_dtype == DType::kBF16 && a.bias == nullptr && Aligned16(a.out);
}

}  // namespace

Q4GemmPath PlannedQ4GemmPath(const Q4GemmArgs& a) {
  switch (a.path) {
    case Q4GemmPath::kSimt:
      return Q4GemmPath::kSimt;
    case Q4GemmPath::kGemv:
      return GemvEligible(a) ? Q4GemmPath::kGemv : Q4GemmPath::kAuto;
    case Q4GemmPath::kMma:
      return MmaEligible(a) ? Q4GemmPath::kMma : Q4GemmPath::kAuto;
    case Q4GemmPath::kAuto:
      break;
  }
  if (!GemvEligible(a)) return Q4GemmPath::kSimt;
  if (a.m <= kQ4GemvMaxRowsPerExpert * a.num_experts) return Q4GemmPath::kGemv;
  if (MmaEligible(a)) return Q4GemmPath::kMma;
  return Q4GemmPath::kSimt;  // f32 activations (exact mode) or a bias, many rows
}

cudaError_t LaunchQ4Gemm(const Q4GemmArgs& args, cudaStream_t stream) {
  const auto launch = [&](Q4GemmPath path, int num_sms) -> cudaError_t {
    switch (path) {
      case Q4GemmPath::kGemv:
        return gemm_internal::LaunchQ4Gemv(args, num_sms, stream);
      case Q4GemmPath::kMma:
        return gemm_internal::LaunchQ4Mma(
            args, args.m <= kSmallTileMaxRowsPerExpert * args.num_experts, num_sms, stream);
      case Q4GemmPath::kSimt:
        return gemm_internal::LaunchQ4Simt(args, num_sms, stream);
      case Q4GemmPath::kAuto:
        break;
    }
    return cudaErrorInvalidValue;
  };
  return gemm_internal::LaunchPlanned(args, Valid(args), &PlannedQ4GemmPath, launch);
}

}  // namespace expertmesh::cuda
