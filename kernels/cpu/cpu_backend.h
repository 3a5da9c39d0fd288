// The CPU implementation of kernels::Backend: multi-threaded (ThreadPool), vectorised with
// run-time ISA dispatch (KernelTable: AVX2 or portable scalar), bf16 weights widened to fp32 in
// registers, fp32 accumulation, OpenBLAS sgemm for token counts where compute dominates.
// Weights are copied once into huge-page memory (weight_arena.h) unless told otherwise.
#ifndef EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_
#define EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu_sampling.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/weight_arena.h"

namespace expertmesh::kernels::cpu {

// Products with fewer tokens per weight than this take the AVX512_BF16 streaming kernel on the
// AMX family (measurement and what it costs: cpu_linear.cc).
inline constexpr int64_t kDefaultAmxMinTokens = 4;
// Products of q4 weights with at least this many tokens per weight multiply weights widened to
// bf16 on the AVX512_BF16 family (measurement and what it costs: cpu_linear.cc).
inline constexpr int64_t kDefaultQ4WidenMinTokens = 4;

struct CpuBackendOptions {
  // Threads including the caller; 0 = std::thread::hardware_concurrency().
  int num_threads = 0;
  // Kernel family; unset = the best this CPU runs. Tests force kScalar to cover the portable path.
  std::optional<CpuIsa> isa;
  // Linear/grouped-linear calls with at least this many tokens (per weight) go through OpenBLAS
  // sgemm on fp32 copies of weight tiles; fewer use the streaming kernel. 0 disables BLAS, and
  // so does an OpenBLAS running its pre-AVX2 kernels under a vector kernel family (slower).
  int64_t blas_min_tokens = 64;
  // On the AMX family, products of bf16 activations (bf16 or fp8 weights) with at least this
  // many tokens per weight take the tile GEMM, fewer the AVX512_BF16 streaming kernel; 0
  // disables the tiles. See cpu_linear.cc for the measurement behind the default and what it
  // means for batching invariance.
  int64_t amx_min_tokens = kDefaultAmxMinTokens;
  // Where the activations are bf16 and the CPU has AVX512_BF16, products of q4 weights with at
  // least this many tokens per weight (and not on AMX tiles) widen the weights a few rows at a
  // time to bf16 ((q - zero) x scale, rounded to bf16) and multiply them with the bf16 kernel;
  // fewer take the exact group-scaled kernel. 0 disables the widening. See cpu_linear.cc for the
  // measurement behind the default and what it means for batching invariance.
  int64_t q4_widen_min_tokens = kDefaultQ4WidenMinTokens;
  // Every product on one kernel whatever its token count (amx_min_tokens 1 on the AMX family, no
  // widening, and no OpenBLAS), so that a token's output never depends on its batch.
  bool batch_invariant = false;
  // Weights copied into huge-page memory (weight_arena.h) rather than used in place from the
  // checkpoint's mapping; unset = when this kernel offers transparent huge pages.
  std::optional<bool> copy_weights;
};

// The per-backend state every CPU op needs.
struct CpuContext {
  ThreadPool* pool;
  const KernelTable* kernels;
  int64_t blas_min_tokens;
  int64_t amx_min_tokens;
  int64_t q4_widen_min_tokens;
};

class CpuBackend final : public kernels::Backend {
 public:
  // Errors: FailedPrecondition when options.isa is not supported by this CPU.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const CpuBackendOptions& options);

  std::string_view Name() const override { return name_; }
  kernels::Device device() const override { return kernels::Device::kCpu; }
  bool Supports(kernels::Op op) const override { return true; }
  // fp8 e4m3 weights are multiplied as stored (W8A16: widened in registers, kernel_table.h).
  bool SupportsFp8Weights() const override { return true; }
  bool SupportsQ4Weights() const override { return true; }
  absl::StatusOr<kernels::Tensor> Allocate(DType dtype, std::span<const int64_t> shape) override {
    return kernels::Tensor::Empty(dtype, shape);
  }
  using kernels::Backend::Allocate;
  absl::Status SetStream(kernels::Stream stream) override { return absl::OkStatus(); }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  absl::Status CopyFromHost(const void* host, kernels::Tensor& dst) override;
  absl::Status CopyToHost(const kernels::Tensor& src, void* host) override;
  absl::Status Zero(kernels::Tensor& t) override;
  absl::StatusOr<kernels::Tensor> PrepareWeight(const kernels::Tensor& host) override;

  CpuIsa isa() const { return isa_; }
  int num_threads() const { return pool_->num_threads(); }

 protected:
  absl::Status DoEmbedding(const kernels::Tensor& table, const kernels::Tensor& ids,
                           kernels::Tensor& out) override;
  absl::Status DoRmsNorm(const kernels::Tensor& x, kernels::Tensor* residual,
                         const kernels::Tensor& weight, float eps, kernels::Tensor& out) override;
  absl::Status DoRope(const kernels::Tensor& cos_sin, const kernels::Tensor& positions,
                      const kernels::RopeParams& params, kernels::Tensor& q,
                      kernels::Tensor& k) override;
  absl::Status DoLinear(const kernels::Tensor& x, const kernels::Tensor& weight,
                        const kernels::Tensor& bias, kernels::Tensor& out) override;
  absl::Status DoSiluMul(const kernels::Tensor& gate_up, kernels::Tensor& out) override;
  absl::Status DoMoeTopK(const kernels::Tensor& logits, const kernels::Tensor& bias,
                         const kernels::MoeRoutingParams& params, kernels::Tensor& topk_ids,
                         kernels::Tensor& topk_weights) override;
  absl::Status DoMoePermute(const kernels::Tensor& x, const kernels::Tensor& topk_ids,
                            int num_experts, kernels::Tensor& out_x,
                            kernels::Tensor& expert_offsets,
                            kernels::Tensor& sorted_slots) override;
  absl::Status DoMoeGroupedLinear(const kernels::Tensor& x, const kernels::Tensor& expert_offsets,
                                  std::span<const kernels::Tensor> weights,
                                  kernels::Tensor& out) override;
  absl::Status DoMoeCombine(const kernels::Tensor& y, const kernels::Tensor& sorted_slots,
                            const kernels::Tensor& topk_ids, const kernels::Tensor& topk_weights,
                            const kernels::Tensor& shared, const kernels::Tensor& shared_gate,
                            kernels::Tensor& out) override;
  absl::Status DoKvCacheWrite(const kernels::Tensor& k, const kernels::Tensor& v,
                              const kernels::Tensor& slot_mapping, kernels::Tensor& k_cache,
                              kernels::Tensor& v_cache) override;
  absl::Status DoPagedAttention(const kernels::Tensor& q, const kernels::Tensor& k_cache,
                                const kernels::Tensor& v_cache,
                                const kernels::PagedAttentionBatch& batch, float scale,
                                kernels::Tensor& out) override;
  absl::Status DoSampleTokens(const kernels::Tensor& logits,
                              std::span<const kernels::SamplingRow> params,
                              kernels::Tensor& tokens) override;
  absl::Status DoMaskLogits(const kernels::Tensor& masks, std::span<const int32_t> rows,
                            kernels::Tensor& logits) override;

 private:
  CpuBackend(CpuIsa isa, int num_threads, int64_t blas_min_tokens, int64_t amx_min_tokens,
             int64_t q4_widen_min_tokens, bool copy_weights);

  CpuIsa isa_;
  std::string name_;
  std::unique_ptr<ThreadPool> pool_;
  CpuContext ctx_;
  // Set when weights are copied (CpuBackendOptions::copy_weights).
  std::unique_ptr<WeightArena> weights_;
  RowSampler sampler_;
};

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_
