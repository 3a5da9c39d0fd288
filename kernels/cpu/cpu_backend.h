// The CPU implementation of runtime::Backend: multi-threaded (ThreadPool), vectorised with
// run-time ISA dispatch (KernelTable: AVX2 or portable scalar), bf16 weights widened to fp32 in
// registers, fp32 accumulation, OpenBLAS sgemm for token counts where compute dominates.
// Weights are copied once into huge-page memory (weight_arena.h) unless told otherwise.
#ifndef EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_
#define EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/weight_arena.h"
#include "worker/runtime/backend.h"

namespace expertmesh::kernels::cpu {

struct CpuBackendOptions {
  // Threads including the caller; 0 = std::thread::hardware_concurrency().
  int num_threads = 0;
  // Kernel family; unset = the best this CPU runs. Tests force kScalar to cover the portable path.
  std::optional<CpuIsa> isa;
  // Linear/grouped-linear calls with at least this many tokens (per weight) go through OpenBLAS
  // sgemm on fp32 copies of weight tiles; fewer use the streaming kernel. 0 disables BLAS, and
  // so does an OpenBLAS running its pre-AVX2 kernels under a vector kernel family (slower).
  int64_t blas_min_tokens = 64;
  // Weights copied into huge-page memory (weight_arena.h) rather than used in place from the
  // checkpoint's mapping; unset = when this kernel offers transparent huge pages.
  std::optional<bool> copy_weights;
};

// The per-backend state every CPU op needs.
struct CpuContext {
  ThreadPool* pool;
  const KernelTable* kernels;
  int64_t blas_min_tokens;
};

class CpuBackend final : public runtime::Backend {
 public:
  // Errors: FailedPrecondition when options.isa is not supported by this CPU.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const CpuBackendOptions& options);

  std::string_view Name() const override { return name_; }
  runtime::Device device() const override { return runtime::Device::kCpu; }
  bool Supports(runtime::Op op) const override { return true; }
  absl::StatusOr<runtime::Tensor> Allocate(DType dtype, std::span<const int64_t> shape) override {
    return runtime::Tensor::Empty(dtype, shape);
  }
  using runtime::Backend::Allocate;
  absl::Status SetStream(runtime::Stream stream) override { return absl::OkStatus(); }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  absl::Status CopyFromHost(const void* host, runtime::Tensor& dst) override;
  absl::Status CopyToHost(const runtime::Tensor& src, void* host) override;
  absl::Status Zero(runtime::Tensor& t) override;
  absl::StatusOr<runtime::Tensor> PrepareWeight(const runtime::Tensor& host) override;

  CpuIsa isa() const { return isa_; }
  int num_threads() const { return pool_->num_threads(); }

 protected:
  absl::Status DoEmbedding(const runtime::Tensor& table, const runtime::Tensor& ids,
                           runtime::Tensor& out) override;
  absl::Status DoRmsNorm(const runtime::Tensor& x, runtime::Tensor* residual,
                         const runtime::Tensor& weight, float eps, runtime::Tensor& out) override;
  absl::Status DoRope(const runtime::Tensor& cos_sin, const runtime::Tensor& positions,
                      const runtime::RopeParams& params, runtime::Tensor& q,
                      runtime::Tensor& k) override;
  absl::Status DoLinear(const runtime::Tensor& x, const runtime::Tensor& weight,
                        const runtime::Tensor& bias, runtime::Tensor& out) override;
  absl::Status DoSiluMul(const runtime::Tensor& gate_up, runtime::Tensor& out) override;
  absl::Status DoMoeTopK(const runtime::Tensor& logits, const runtime::Tensor& bias,
                         const runtime::MoeRoutingParams& params, runtime::Tensor& topk_ids,
                         runtime::Tensor& topk_weights) override;
  absl::Status DoMoePermute(const runtime::Tensor& x, const runtime::Tensor& topk_ids,
                            int num_experts, runtime::Tensor& out_x,
                            runtime::Tensor& expert_offsets,
                            runtime::Tensor& sorted_slots) override;
  absl::Status DoMoeGroupedLinear(const runtime::Tensor& x, const runtime::Tensor& expert_offsets,
                                  std::span<const runtime::Tensor> weights,
                                  runtime::Tensor& out) override;
  absl::Status DoMoeCombine(const runtime::Tensor& y, const runtime::Tensor& sorted_slots,
                            const runtime::Tensor& topk_ids, const runtime::Tensor& topk_weights,
                            const runtime::Tensor& shared, const runtime::Tensor& shared_gate,
                            runtime::Tensor& out) override;
  absl::Status DoKvCacheWrite(const runtime::Tensor& k, const runtime::Tensor& v,
                              const runtime::Tensor& slot_mapping, runtime::Tensor& k_cache,
                              runtime::Tensor& v_cache) override;
  absl::Status DoPagedAttention(const runtime::Tensor& q, const runtime::Tensor& k_cache,
                                const runtime::Tensor& v_cache,
                                const runtime::PagedAttentionBatch& batch, float scale,
                                runtime::Tensor& out) override;

 private:
  CpuBackend(CpuIsa isa, int num_threads, int64_t blas_min_tokens, bool copy_weights);

  CpuIsa isa_;
  std::string name_;
  std::unique_ptr<ThreadPool> pool_;
  CpuContext ctx_;
  // Set when weights are copied (CpuBackendOptions::copy_weights).
  std::unique_ptr<WeightArena> weights_;
};

}  // namespace expertmesh::kernels::cpu

#endif  // EXPERTMESH_KERNELS_CPU_CPU_BACKEND_H_
