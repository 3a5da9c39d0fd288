#include "kernels/cpu/cpu_backend.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/cpu_mask.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {

using kernels::Tensor;

namespace {

// Whether OpenBLAS picked kernels of the AVX2/AVX-512 generation for this CPU. An OpenBLAS
// that does not know a CPU model (0.3.21 on some virtualised Xeons) falls back to its SSE3
// "Prescott" kernels; measured on such a machine, sgemm reached 53 GFLOP/s where our own
// streaming kernel does 82 (2 threads, bf16 weights), so prefill is better off without BLAS.
bool OpenBlasHasVectorKernels() {
  const char* name = openblas_get_corename();
  if (name == nullptr) return false;
  const std::string core = absl::AsciiStrToLower(name);
  for (const char* fast : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"}) {
    if (core == fast) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const CpuBackendOptions& options) {
  CpuIsa isa = options.isa.value_or(BestCpuIsa());
  // An operator (or a benchmark) may pin the kernel family: EXPERTMESH_CPU_ISA=avx2 etc.
  if (!options.isa.has_value()) {
    if (const char* forced = std::getenv("EXPERTMESH_CPU_ISA"); forced != nullptr && *forced) {
      bool known = false;
      for (CpuIsa candidate :
           {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
        if (CpuIsaName(candidate) == forced) {
          isa = candidate;
          known = true;
        }
      }
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("cpu backend: EXPERTMESH_CPU_ISA=", forced,
                         " is not one of scalar, avx2, avx512, avx512bf16, amx"));
      }
    }
  }
  if (!CpuSupports(isa)) {
    return absl::FailedPreconditionError(absl::StrCat("cpu backend: this CPU does not support the ",
                                                      std::string(CpuIsaName(isa)), " kernels"));
  }
  int threads = options.num_threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t blas_min_tokens = options.blas_min_tokens;
  if (isa != CpuIsa::kScalar && blas_min_tokens > 0 && !OpenBlasHasVectorKernels()) {
    blas_min_tokens = 0;
  }
  // OpenBLAS sums in its own order, which depends on the token count.
  if (options.batch_invariant) blas_min_tokens = 0;
  const bool copy_weights = options.copy_weights.value_or(TransparentHugePagesAvailable());
  const int64_t amx_min_tokens =
      options.batch_invariant ? 1 : std::max<int64_t>(0, options.amx_min_tokens);
  // Widened weights are rounded to bf16; the exact kernel is not.
  const int64_t q4_widen_min_tokens =
      options.batch_invariant ? 0 : std::max<int64_t>(0, options.q4_widen_min_tokens);
  return std::unique_ptr<CpuBackend>(new CpuBackend(isa, threads, blas_min_tokens, amx_min_tokens,
                                                    q4_widen_min_tokens, copy_weights));
}

CpuBackend::CpuBackend(CpuIsa isa, int num_threads, int64_t blas_min_tokens, int64_t amx_min_tokens,
                       int64_t q4_widen_min_tokens, bool copy_weights)
    : isa_(isa),
      name_(absl::StrCat("cpu-", std::string(CpuIsaName(isa)))),
      pool_(std::make_unique<ThreadPool>(num_threads)),
      ctx_{pool_.get(), &KernelsFor(isa), blas_min_tokens, amx_min_tokens, q4_widen_min_tokens},
      weights_(copy_weights ? std::make_unique<WeightArena>() : nullptr) {}

namespace {
absl::Status CheckCpu(const char* op, const Tensor& t) {
  if (t.defined() && t.device() == kernels::Device::kCpu) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", t.DebugString(), " is not a tensor of the cpu backend"));
}
}  // namespace

absl::StatusOr<Tensor> CpuBackend::PrepareWeight(const Tensor& host) {
  if (!host.defined() || weights_ == nullptr) return host;
  RETURN_IF_ERROR(CheckCpu("prepare_weight", host));
  ASSIGN_OR_RETURN(Tensor copy, weights_->Copy(host, pool_.get()));
  // The block scales of an fp8 weight are small (one per 128 x 128 block): they stay where they
  // are and go with the copy.
  if (const BlockScales* scales = host.block_scales(); scales != nullptr) {
    return copy.WithBlockScales(*scales);
  }
  return copy;
}

absl::Status CpuBackend::CopyFromHost(const void* host, Tensor& dst) {
  RETURN_IF_ERROR(CheckCpu("copy_from_host", dst));
  if (dst.nbytes() > 0) std::memcpy(dst.raw_data(), host, dst.nbytes());
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(const Tensor& src, void* host) {
  RETURN_IF_ERROR(CheckCpu("copy_to_host", src));
  if (src.nbytes() > 0) std::memcpy(host, src.raw_data(), src.nbytes());
  return absl::OkStatus();
}

absl::Status CpuBackend::Zero(Tensor& t) {
  RETURN_IF_ERROR(CheckCpu("zero", t));
  if (t.nbytes() > 0) std::memset(t.raw_data(), 0, t.nbytes());
  return absl::OkStatus();
}

absl::Status CpuBackend::DoEmbedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  return CpuEmbedding(ctx_, table, ids, out);
}
absl::Status CpuBackend::DoRmsNorm(const Tensor& x, Tensor* residual, const Tensor& weight,
                                   float eps, Tensor& out) {
  return CpuRmsNorm(ctx_, x, residual, weight, eps, out);
}
absl::Status CpuBackend::DoRope(const Tensor& cos_sin, const Tensor& positions,
                                const kernels::RopeParams& params, Tensor& q, Tensor& k) {
  return CpuRope(ctx_, cos_sin, positions, params, q, k);
}
absl::Status CpuBackend::DoLinear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  Tensor& out) {
  return CpuLinear(ctx_, x, weight, bias, out);
}
absl::Status CpuBackend::DoSiluMul(const Tensor& gate_up, Tensor& out) {
  return CpuSiluMul(ctx_, gate_up, out);
}
absl::Status CpuBackend::DoMoeTopK(const Tensor& logits, const Tensor& bias,
                                   const kernels::MoeRoutingParams& params, Tensor& topk_ids,
                                   Tensor& topk_weights) {
  return CpuMoeTopK(ctx_, logits, bias, params, topk_ids, topk_weights);
}
absl::Status CpuBackend::DoMoePermute(const Tensor& x, const Tensor& topk_ids, int num_experts,
                                      Tensor& out_x, Tensor& expert_offsets, Tensor& sorted_slots) {
  return CpuMoePermute(ctx_, x, topk_ids, num_experts, out_x, expert_offsets, sorted_slots);
}
absl::Status CpuBackend::DoMoeGroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                            std::span<const Tensor> weights, Tensor& out) {
  return CpuMoeGroupedLinear(ctx_, x, expert_offsets, weights, out);
}
absl::Status CpuBackend::DoMoeCombine(const Tensor& y, const Tensor& sorted_slots,
                                      const Tensor& topk_ids, const Tensor& topk_weights,
                                      const Tensor& shared, const Tensor& shared_gate,
                                      Tensor& out) {
  return CpuMoeCombine(ctx_, y, sorted_slots, topk_ids, topk_weights, shared, shared_gate, out);
}
absl::Status CpuBackend::DoKvCacheWrite(const Tensor& k, const Tensor& v,
                                        const Tensor& slot_mapping, Tensor& k_cache,
                                        Tensor& v_cache) {
  return CpuKvCacheWrite(ctx_, k, v, slot_mapping, k_cache, v_cache);
}
absl::Status CpuBackend::DoPagedAttention(const Tensor& q, const Tensor& k_cache,
                                          const Tensor& v_cache,
                                          const kernels::PagedAttentionBatch& batch, float scale,
                                          Tensor& out) {
  return CpuPagedAttention(ctx_, q, k_cache, v_cache, batch, scale, out);
}
absl::Status CpuBackend::DoSampleTokens(const Tensor& logits,
                                        std::span<const kernels::SamplingRow> params,
                                        Tensor& tokens) {
  const size_t vocab = static_cast<size_t>(logits.dim(1));
  for (size_t r = 0; r < params.size(); ++r) {
    const std::span<const float> row(logits.data<float>() + r * vocab, vocab);
    if (absl::Status s = CheckSamplingLogits(row); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("sample_tokens: row ", r, ": ", s.message()));
    }
    tokens.data<int32_t>()[r] = sampler_.Sample(row, params[r]);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::DoMaskLogits(const Tensor& masks, std::span<const int32_t> rows,
                                      Tensor& logits) {
  const size_t vocab = static_cast<size_t>(logits.dim(1));
  const size_t words = static_cast<size_t>(masks.dim(1));
  const uint32_t* bits = reinterpret_cast<const uint32_t*>(masks.data<int32_t>());
  for (size_t i = 0; i < rows.size(); ++i) {
    MaskLogitsRow({bits + i * words, words},
                  {logits.data<float>() + static_cast<size_t>(rows[i]) * vocab, vocab});
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
