// CudaBackend with fp8 e4m3 weights: the upload (bytes as they are, scales trimmed to the
// weight) and the fp8 Linear / MoeGroupedLinear (tensors to Fp8GemmArgs; the kernels and the
// choice among them are in kernels/cuda/gemm/fp8_gemm.h).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/backend/fp8_weight_prep.h"
#include "kernels/cuda/gemm/fp8_gemm.h"

namespace expertmesh::cuda {

using kernels::Op;
using kernels::Tensor;

namespace {

// W8A8 quantizes the activations into the backend's workspace; a product too large for it
// runs W8A16 (which needs none) rather than failing.
void FitWorkspace(Fp8GemmArgs& a, size_t available) {
  a.workspace_bytes = Fp8GemmWorkspaceBytes(a);
  if (a.workspace_bytes > available) {
    a.w8a8_min_rows = 0;
    a.workspace_bytes = Fp8GemmWorkspaceBytes(a);
  }
}

}  // namespace

absl::StatusOr<Tensor> CudaBackend::PrepareFp8Weight(const Tensor& host) {
  ASSIGN_OR_RETURN(TrimmedScales trimmed, TrimBlockScales(host));
  ASSIGN_OR_RETURN(Tensor bytes, weights_.Allocate(host.dtype(), host.shape()));
  ASSIGN_OR_RETURN(Tensor grid, weights_.Allocate(DType::kF32, trimmed.grid.shape()));
  // As PrepareWeight: ordered after earlier work, complete on return (the host may unmap).
  if (host.nbytes() > 0) {
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        bytes.raw_data(), host.raw_data(), host.nbytes(), cudaMemcpyHostToDevice, stream_));
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(grid.raw_data(), trimmed.grid.raw_data(),
                                                  trimmed.grid.nbytes(), cudaMemcpyHostToDevice,
                                                  stream_));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  kernels::BlockScales layout = trimmed.layout;
  layout.scales = std::make_shared<const Tensor>(std::move(grid));
  return bytes.WithBlockScales(std::move(layout));
}

absl::StatusOr<const void*> CudaBackend::DeviceTable(std::string key) {
  auto it = device_tables_.find(key);
  if (it == device_tables_.end()) {
    // As ExpertPointers: uploaded once on the side stream and waited for, never captured.
    ASSIGN_OR_RETURN(DeviceBuffer table, DeviceBuffer::Allocate(key.size()));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(table.get(), key.data(), key.size(),
                                                    cudaMemcpyHostToDevice, aux_stream_.get()));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(aux_stream_.get()));
    it = device_tables_.emplace(std::move(key), std::move(table)).first;
  }
  return static_cast<const void*>(it->second.get());
}

absl::StatusOr<const Fp8Scales*> CudaBackend::ExpertScales(std::span<const Tensor> weights) {
  std::vector<Fp8Scales> scales(weights.size());
  for (size_t e = 0; e < weights.size(); ++e) {
    if (weights[e].defined()) scales[e] = Fp8ScalesOf(weights[e]);
  }
  std::string key(reinterpret_cast<const char*>(scales.data()), scales.size() * sizeof(Fp8Scales));
  ASSIGN_OR_RETURN(const void* table, DeviceTable(std::move(key)));
  return static_cast<const Fp8Scales*>(table);
}

absl::Status CudaBackend::Fp8Linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    Tensor& out) {
  Fp8GemmArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.weight = weight.raw_data();
  a.weight_scales = Fp8ScalesOf(weight);
  SummarizeFp8Scales({&weight, 1}, a);
  SetBiasAndOut(bias, out, a);
  a.m = x.dim(0);
  a.k = x.dim(1);
  a.n = weight.dim(0);
  a.w8a8_min_rows = fp8_w8a8_min_rows_;
  a.num_sms = num_sms_;
  if (a.m == 0) return absl::OkStatus();
  FitWorkspace(a, workspace_.bytes());
  ASSIGN_OR_RETURN(a.workspace, Workspace(Op::kLinear, a.workspace_bytes));
  return LaunchStatus(Op::kLinear, LaunchFp8Gemm(a, stream_));
}

absl::Status CudaBackend::Fp8GroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                           std::span<const Tensor> weights, Tensor& out) {
  if (x.dim(0) == 0) return absl::OkStatus();
  for (const Tensor& w : weights) {
    if (w.defined() && w.block_scales() == nullptr) {
      return absl::UnimplementedError(
          "moe_grouped_linear: the cuda backend needs every expert's fp8 weight with scales");
    }
  }
  Fp8GemmArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.expert_offsets = expert_offsets.data<const int32_t>();
  ASSIGN_OR_RETURN(a.weights, ExpertPointers(weights));
  ASSIGN_OR_RETURN(a.expert_scales, ExpertScales(weights));
  SummarizeFp8Scales(weights, a);
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
  a.m = x.dim(0);
  a.k = x.dim(1);
  a.n = out.dim(1);
  a.num_experts = static_cast<int>(weights.size());
  a.error_flags = error_flags();
  a.w8a8_min_rows = fp8_w8a8_min_rows_;
  a.num_sms = num_sms_;
  FitWorkspace(a, workspace_.bytes());
  ASSIGN_OR_RETURN(a.workspace, Workspace(Op::kMoeGroupedLinear, a.workspace_bytes));
  return LaunchStatus(Op::kMoeGroupedLinear, LaunchFp8Gemm(a, stream_));
}

}  // namespace expertmesh::cuda
