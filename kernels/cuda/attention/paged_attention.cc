// LaunchPagedAttention: picks the kernel (attention_kernels.h) from what the host knows -- the
// shapes, dtypes and alignment, never the batch contents -- and checks the workspace.
#include "kernels/cuda/attention/paged_attention.h"

#include "kernels/cuda/attention/attention_kernels.h"

namespace expertmesh::cuda {
namespace {

using attention::SplitKPlan;

enum class Kernel { kNone, kSimple, kSplitK, kTensorCore };

Kernel Choose(const PagedAttentionArgs& a, SplitKPlan* plan) {
  const bool split_ok = attention::PlanSplitK(a, plan);
  switch (a.path) {
    case PagedAttentionPath::kSimple:
      return Kernel::kSimple;
    case PagedAttentionPath::kSplitK:
      return split_ok ? Kernel::kSplitK : Kernel::kNone;
    case PagedAttentionPath::kTensorCore:
      return attention::TensorCoreSupports(a) ? Kernel::kTensorCore : Kernel::kNone;
    case PagedAttentionPath::kAuto:
      // Tensor cores pay off once some sequence brings many query rows; a pure decode batch
      // (one token per sequence) is bandwidth-bound and goes to the split-K kernel.
      if (a.num_tokens > a.num_seqs && attention::TensorCoreSupports(a)) {
        return Kernel::kTensorCore;
      }
      return split_ok ? Kernel::kSplitK : Kernel::kSimple;
  }
  return Kernel::kNone;
}

bool DtypesOk(const PagedAttentionArgs& a) {
  return (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kF32) ||
         (a.q_dtype == DType::kF32 && a.cache_dtype == DType::kBF16) ||
         (a.q_dtype == DType::kBF16 && a.cache_dtype == DType::kBF16);
}

}  // namespace

size_t PagedAttentionWorkspaceBytes(const PagedAttentionArgs& args) {
  if (args.kv_heads <= 0 || args.num_tokens <= 0) return 0;
  SplitKPlan plan;
  return Choose(args, &plan) == Kernel::kSplitK ? plan.workspace_bytes : 0;
}

cudaError_t LaunchPagedAttention(const PagedAttentionArgs& args, cudaStream_t stream) {
  if (!DtypesOk(args) || args.kv_heads <= 0 || args.q_heads % args.kv_heads != 0 ||
      args.k_dim <= 0 || args.v_dim <= 0 || args.block_size <= 0) {
    return cudaErrorInvalidValue;
  }
  if (args.num_tokens == 0 || args.q_heads == 0) return cudaSuccess;
  SplitKPlan plan;
  Kernel kernel = Choose(args, &plan);
  if (kernel == Kernel::kSplitK && args.workspace_bytes < plan.workspace_bytes) {
    // A caller that sized the workspace without the final pointers (alignment decides the
    // tensor-core path) still gets an answer; a forced path gets the error.
    if (args.path != PagedAttentionPath::kAuto) return cudaErrorInvalidValue;
    kernel = Kernel::kSimple;
  }
  switch (kernel) {
    case Kernel::kSimple:
      return attention::LaunchSimple(args, stream);
    case Kernel::kSplitK:
      return attention::LaunchSplitK(args, plan, stream);
    case Kernel::kTensorCore:
      return attention::LaunchTensorCore(args, stream);
    case Kernel::kNone:
      break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace expertmesh::cuda
