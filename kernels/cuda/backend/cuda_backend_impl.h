// CudaBackend: kernels::Backend on one CUDA device. Host code uses cuda_backend.h (no CUDA
// types); this header is for the backend's own files, its tests and GPU benchmarks.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_IMPL_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_IMPL_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/backend/cuda_graph.h"
#include "kernels/cuda/backend/device_memory.h"
#include "kernels/cuda/backend/host_staging.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/gemm/fp8_gemm.h"
#include "kernels/cuda/gemm/q4_gemm.h"

namespace expertmesh::cuda {

class CublasLtLinear;  // kernels/cuda/gemm/cublaslt_linear.h (owns the cuBLASLt handle)

// Turns set bits of the error-flag word into InvalidArgument naming the op(s); OK for 0.
absl::Status ErrorFlagsStatus(uint32_t flags);

// The optional bias and the output of a linear's launch arguments (LinearArgs, Fp8GemmArgs).
template <typename LinearLikeArgs>
void SetBiasAndOut(const kernels::Tensor& bias, kernels::Tensor& out, LinearLikeArgs& a) {
  if (bias.defined()) {
    a.bias = bias.raw_data();
    a.bias_dtype = bias.dtype();
  }
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
}

class CudaBackend final : public kernels::Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view Name() const override { return name_; }
  kernels::Device device() const override { return kernels::Device::kCuda; }
  bool Supports(kernels::Op op) const override;
  // fp8 e4m3 weights with block scales stay fp8 on the device (kernels/cuda/gemm/fp8_gemm.h).
  bool SupportsFp8Weights() const override { return true; }
  // kQ4 weights stay packed on the device, half a byte each (kernels/cuda/gemm/q4_gemm.h).
  bool SupportsQ4Weights() const override { return true; }
  absl::StatusOr<kernels::Tensor> Allocate(DType dtype, std::span<const int64_t> shape) override;
  using kernels::Backend::Allocate;
  // Stream{nullptr} = the backend's own stream. Work enqueued on the previous stream is waited
  // for first, so pooled blocks and the staging ring stay ordered across the switch.
  absl::Status SetStream(kernels::Stream stream) override;
  absl::Status Synchronize() override;
  absl::Status CopyFromHost(const void* host, kernels::Tensor& dst) override;
  absl::Status CopyToHost(const kernels::Tensor& src, void* host) override;
  absl::Status Zero(kernels::Tensor& t) override;
  absl::StatusOr<kernels::Tensor> PrepareWeight(const kernels::Tensor& host) override;

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
  // A device q4 weight's groups as the kernels take them (kernels/cuda/gemm/q4_gemm.h), with
  // its column order's device copy. InvalidArgument for a column order that this backend's
  // PrepareWeight did not upload (a device tensor made elsewhere).
  absl::StatusOr<Q4Groups> Q4GroupsFor(const kernels::Tensor& weight) const;

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
  absl::Status LaunchStatus(kernels::Op op, cudaError_t error) const;
  // The launcher's scratch memory; ResourceExhausted if the op needs more than was reserved.
  absl::StatusOr<void*> Workspace(kernels::Op op, size_t bytes) const;
  // A device array of the experts' weight pointers (null for undefined ones), built once per
  // distinct list of pointers and cached, so captured graphs see stable addresses.
  absl::StatusOr<const void* const*> ExpertPointers(std::span<const kernels::Tensor> weights);
  // The same for the experts' fp8 block scales (Fp8Scales, zero for undefined experts).
  absl::StatusOr<const Fp8Scales*> ExpertScales(std::span<const kernels::Tensor> weights);
  // A device copy of `bytes`, made once per distinct contents (see ExpertPointers).
  absl::StatusOr<const void*> DeviceTable(std::string key);
  // fp8 Linear / MoeGroupedLinear (DoLinear and DoMoeGroupedLinear route fp8 weights here).
  absl::Status Fp8Linear(const kernels::Tensor& x, const kernels::Tensor& weight,
                         const kernels::Tensor& bias, kernels::Tensor& out);
  absl::Status Fp8GroupedLinear(const kernels::Tensor& x, const kernels::Tensor& expert_offsets,
                                std::span<const kernels::Tensor> weights, kernels::Tensor& out);
  // PrepareWeight of an fp8 host weight: its bytes and its trimmed scales.
  absl::StatusOr<kernels::Tensor> PrepareFp8Weight(const kernels::Tensor& host);
  // q4 Linear / MoeGroupedLinear (DoLinear and DoMoeGroupedLinear route kQ4 weights here).
  absl::Status Q4Linear(const kernels::Tensor& x, const kernels::Tensor& weight,
                        const kernels::Tensor& bias, kernels::Tensor& out);
  absl::Status Q4GroupedLinear(const kernels::Tensor& x, const kernels::Tensor& expert_offsets,
                               std::span<const kernels::Tensor> weights, kernels::Tensor& out);
  // PrepareWeight of a q4 host weight: its packed bytes, its trimmed scale (and zero-point)
  // grids, and its column order's device copy (q4_orders_).
  absl::StatusOr<kernels::Tensor> PrepareQ4Weight(const kernels::Tensor& host);
  // A device array of the experts' Q4Groups (zero for undefined experts), as ExpertScales.
  absl::StatusOr<const Q4Groups*> ExpertQ4Groups(std::span<const kernels::Tensor> weights);

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
  absl::flat_hash_map<std::string, DeviceBuffer> device_tables_;
  // Act-order q4 weights' column orders: the host order (kept alive, so its address keys the
  // entry for the backend's lifetime) and its device copy in the weight arena.
  struct Q4Order {
    std::shared_ptr<const kernels::Tensor> host;
    kernels::Tensor device;
  };
  absl::flat_hash_map<const kernels::Tensor*, Q4Order> q4_orders_;
  int64_t fp8_w8a8_min_rows_ = 0;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_IMPL_H_
