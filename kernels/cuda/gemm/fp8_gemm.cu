// LaunchFp8Gemm: validates the arguments and picks the kernel (see fp8_gemm.h).
#include "kernels/cuda/gemm/fp8_gemm.h"

#include <cstdint>

#include "kernels/cuda/gemm/fp8_gemm_internal.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"
#include "kernels/cuda/gemm/weight_only_launch.cuh"

namespace expertmesh::cuda {
namespace {

// Average rows per expert up to which the 32-row tensor-core tile beats the 128-row one (as the
// bf16 grouped GEMM).
constexpr int64_t kSmallTileMaxRowsPerExpert = 48;

using gemm_internal::Aligned16;
size_t Align256(size_t b) { return (b + 255) / 256 * 256; }

bool Valid(const Fp8GemmArgs& a) {
  if (!gemm_internal::ValidActivations(a)) return false;
  const bool grouped = a.weights != nullptr;
  if (grouped) {
    if (a.expert_offsets == nullptr || a.expert_scales == nullptr || a.bias != nullptr) {
      return false;
    }
    if (a.num_experts < 1 || a.num_experts > kMoeGroupedGemmMaxExperts) return false;
  } else {
    if (a.expert_offsets != nullptr || a.num_experts != 1) return false;
    if (a.weight == nullptr && a.m > 0 && a.n > 0) return false;
  }
  return true;
}

// What the 16-byte chunk paths need: whole chunks per weight row, aligned rows of x, at most one
// block boundary per chunk.
bool ChunkEligible(const Fp8GemmArgs& a) {
  return a.k > 0 && a.k % 16 == 0 && Aligned16(a.x) && a.min_block_cols >= 16 &&
         (a.weights != nullptr || Aligned16(a.weight));
}

bool MmaEligible(const Fp8GemmArgs& a) {
  return ChunkEligible(a) && a.x_dtype == DType::kBF16 && a.bias == nullptr && Aligned16(a.out);
}

bool W8A8Eligible(const Fp8GemmArgs& a) { return MmaEligible(a) && a.blocks_128_aligned; }

size_t W8A8WorkspaceBytes(const Fp8GemmArgs& a) {
  const size_t m = static_cast<size_t>(a.m);
  const size_t k = static_cast<size_t>(a.k);
  return Align256(m * k) + Align256(m * ((k + 127) / 128) * sizeof(float));
}

}  // namespace

Fp8GemmPath PlannedFp8GemmPath(const Fp8GemmArgs& a) {
  switch (a.path) {
    case Fp8GemmPath::kSimt:
      return Fp8GemmPath::kSimt;
    case Fp8GemmPath::kGemv:
      return ChunkEligible(a) ? Fp8GemmPath::kGemv : Fp8GemmPath::kAuto;
    case Fp8GemmPath::kMmaW8A16:
      return MmaEligible(a) ? Fp8GemmPath::kMmaW8A16 : Fp8GemmPath::kAuto;
    case Fp8GemmPath::kW8A8:
      return W8A8Eligible(a) ? Fp8GemmPath::kW8A8 : Fp8GemmPath::kAuto;
    case Fp8GemmPath::kAuto:
      break;
  }
  if (!ChunkEligible(a)) return Fp8GemmPath::kSimt;
  if (a.m <= kFp8GemvMaxRowsPerExpert * a.num_experts) return Fp8GemmPath::kGemv;
  if (a.w8a8_min_rows > 0 && a.m >= a.w8a8_min_rows && W8A8Eligible(a)) {
    return Fp8GemmPath::kW8A8;
  }
  if (MmaEligible(a)) return Fp8GemmPath::kMmaW8A16;
  return Fp8GemmPath::kSimt;  // f32 activations (exact mode) or a bias, many rows
}

size_t Fp8GemmWorkspaceBytes(const Fp8GemmArgs& args) {
  return PlannedFp8GemmPath(args) == Fp8GemmPath::kW8A8 ? W8A8WorkspaceBytes(args) : 0;
}

cudaError_t LaunchFp8Gemm(const Fp8GemmArgs& args, cudaStream_t stream) {
  const auto launch = [&](Fp8GemmPath path, int num_sms) -> cudaError_t {
    switch (path) {
      case Fp8GemmPath::kGemv:
        return gemm_internal::LaunchFp8Gemv(args, num_sms, stream);
      case Fp8GemmPath::kMmaW8A16:
        return gemm_internal::LaunchFp8MmaW8A16(
            args, args.m <= kSmallTileMaxRowsPerExpert * args.num_experts, num_sms, stream);
      case Fp8GemmPath::kW8A8:
        if (args.workspace == nullptr || args.workspace_bytes < W8A8WorkspaceBytes(args)) {
          return cudaErrorInvalidValue;
        }
        return gemm_internal::LaunchFp8W8A8(args, num_sms, stream);
      case Fp8GemmPath::kSimt:
        return gemm_internal::LaunchFp8Simt(args, num_sms, stream);
      case Fp8GemmPath::kAuto:
        break;
    }
    return cudaErrorInvalidValue;
  };
  return gemm_internal::LaunchPlanned(args, Valid(args), &PlannedFp8GemmPath, launch);
}

}  // namespace expertmesh::cuda
