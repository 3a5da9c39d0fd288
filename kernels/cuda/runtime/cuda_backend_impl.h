// CudaBackend: runtime::Backend on one CUDA device. Host code uses cuda_backend.h (no CUDA
// types); this header is for the backend's own files, its tests and GPU benchmarks.
#ifndef EXPERTMESH_KERNELS_CUDA_RUNTIME_CUDA_BACKEND_IMPL_H_
#define EXPERTMESH_KERNELS_CUDA_RUNTIME_CUDA_BACKEND_IMPL_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/runtime/cuda_backend.h"
#include "kernels/cuda/runtime/cuda_graph.h"
#include "kernels/cuda/runtime/device_memory.h"
#include "kernels/cuda/runtime/host_staging.h"
#include "worker/runtime/backend.h"

namespace expertmesh::cuda {

class CublasLtLinear;  // kernels/cuda/gemm/cublaslt_linear.h (owns the cuBLASLt handle)

// Turns set bits of the error-flag word into InvalidArgument naming the op(s); OK for 0.
absl::Status ErrorFlagsStatus(uint32_t flags);

class CudaBackend final : public runtime::Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view Name() const override { return name_; }
  runtime::Device device() const override { return runtime::Device::kCuda; }
  bool Supports(runtime::Op op) const override;
  absl::StatusOr<runtime::Tensor> Allocate(DType dtype, std::span<const int64_t> shape) override;
  using runtime::Backend::Allocate;
  // Stream{nullptr} = the backend's own stream. Work enqueued on the previous stream is waited
  // for first, so pooled blocks and the staging ring stay ordered across the switch.
  absl::Status SetStream(runtime::Stream stream) override;
  absl::Status Synchronize() override;
  absl::Status CopyFromHost(const void* host, runtime::Tensor& dst) override;
  absl::Status CopyToHost(const runtime::Tensor& src, void* host) override;
  absl::Status Zero(runtime::Tensor& t) override;
  absl::StatusOr<runtime::Tensor> PrepareWeight(const runtime::Tensor& host) override;

  // See CaptureOrReplay in cuda_backend.h.
  absl::Status CaptureOrReplay(int64_t key, const std::function<absl::Status()>& body);
  // Backend::RunGraph as CUDA graphs: CaptureOrReplay.
  bool SupportsGraphs() const override { return true; }
  absl::Status RunGraph(int64_t key, const std::function<absl::Status()>& body) override {
    return CaptureOrReplay(key, body);
  }
  void ClearGraphs() { graphs_.Clear(); }
  bool capturing() const { return capturing_; }

  CudaMemoryStats memory_stats() const;
  int device_index() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  // The device word kernels set error bits in (error_flags.h).
  uint32_t* error_flags() const { return error_word_.as<uint32_t>(); }

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
  struct PinnedWord {
    uint32_t* ptr = nullptr;
    ~PinnedWord() {
      if (ptr != nullptr) cudaFreeHost(ptr);
    }
  };

  CudaBackend() = default;

  // Makes this backend's device current for the calling thread.
  absl::Status Enter() const;
  // FailedPrecondition while a graph is being captured (`what` names the refused call).
  absl::Status RefuseWhileCapturing(std::string_view what) const;
  // Enqueues reading and clearing the error word; call the stream's synchronisation next,
  // then FlagsAfterSync().
  absl::Status EnqueueFlagsRead();
  absl::Status FlagsAfterSync();
  // A launcher's result: Unimplemented for cudaErrorInvalidValue (a combination the launcher
  // does not implement), the CUDA error otherwise.
  absl::Status LaunchStatus(runtime::Op op, cudaError_t error) const;
  // The launcher's scratch memory; ResourceExhausted if the op needs more than was reserved.
  absl::StatusOr<void*> Workspace(runtime::Op op, size_t bytes) const;
  // A device array of the experts' weight pointers (null for undefined ones), built once per
  // distinct list of pointers and cached, so captured graphs see stable addresses.
  absl::StatusOr<const void* const*> ExpertPointers(std::span<const runtime::Tensor> weights);

  std::string name_;
  int device_ = 0;
  int num_sms_ = 0;  // multiprocessors, for persistent-grid launchers
  CudaStream own_stream_;
  cudaStream_t stream_ = nullptr;
  // Uploads that must finish before the call returns (expert pointer tables) go through this
  // stream, so they never join a capture on stream_.
  CudaStream aux_stream_;
  DeviceBuffer error_word_;
  PinnedWord error_host_;
  DeviceBuffer workspace_;
  WeightArena weights_;
  ActivationPool pool_;
  HostStaging staging_;
  CudaGraphCache graphs_;
  bool capturing_ = false;
  std::unique_ptr<CublasLtLinear> linear_;
  absl::flat_hash_map<std::vector<uintptr_t>, DeviceBuffer> expert_pointers_;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_RUNTIME_CUDA_BACKEND_IMPL_H_
