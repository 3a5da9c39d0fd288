// CudaBackend with 4-bit (kQ4) weights: the upload (packed bytes as they are, scale and zero
// grids trimmed to the weight, the column order copied once) and the q4 Linear /
// MoeGroupedLinear (tensors to Q4GemmArgs; the kernels and the choice among them are in
// kernels/cuda/gemm/q4_gemm.h).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/backend/q4_weight_prep.h"
#include "kernels/cuda/gemm/q4_gemm.h"

namespace expertmesh::cuda {

using kernels::Op;
using kernels::Tensor;

absl::StatusOr<Tensor> CudaBackend::PrepareQ4Weight(const Tensor& host) {
  ASSIGN_OR_RETURN(TrimmedQ4Groups trimmed, TrimQ4Groups(host));
  ASSIGN_OR_RETURN(Tensor bytes, weights_.Allocate(host.dtype(), host.shape()));
  ASSIGN_OR_RETURN(Tensor scales, weights_.Allocate(DType::kF32, trimmed.scales.shape()));
  Tensor zeros;
  if (trimmed.zero_points.defined()) {
    ASSIGN_OR_RETURN(zeros, weights_.Allocate(DType::kF32, trimmed.zero_points.shape()));
  }
  const std::shared_ptr<const Tensor>& order = trimmed.layout.column_order;
  const bool new_order = order != nullptr && !q4_orders_.contains(order.get());
  Tensor device_order;
  if (new_order) {
    ASSIGN_OR_RETURN(device_order, weights_.Allocate(DType::kI32, order->shape()));
  }
  // As PrepareWeight: ordered after earlier work, complete on return (the host may unmap).
  const auto upload = [&](const Tensor& src, Tensor& dst) -> absl::Status {
    if (src.nbytes() == 0) return absl::OkStatus();
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                                                    cudaMemcpyHostToDevice, stream_));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(upload(host, bytes));
  RETURN_IF_ERROR(upload(trimmed.scales, scales));
  if (zeros.defined()) RETURN_IF_ERROR(upload(trimmed.zero_points, zeros));
  if (new_order) RETURN_IF_ERROR(upload(*order, device_order));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  if (new_order) {
    // Keyed by the host order's identity, which the entry keeps alive (so the address is never
    // reused for another order while the entry exists); weights sharing one order share the
    // device copy.
    q4_orders_.emplace(order.get(), Q4Order{order, std::move(device_order)});
  }
  kernels::BlockScales layout = trimmed.layout;
  layout.scales = std::make_shared<const Tensor>(std::move(scales));
  if (zeros.defined()) layout.zero_points = std::make_shared<const Tensor>(std::move(zeros));
  return bytes.WithBlockScales(std::move(layout));
}

absl::StatusOr<Q4Groups> CudaBackend::Q4GroupsFor(const Tensor& weight) const {
  const kernels::BlockScales* s = weight.block_scales();
  const int32_t* order = nullptr;
  if (s->column_order != nullptr) {
    auto it = q4_orders_.find(s->column_order.get());
    if (it == q4_orders_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cuda q4 weight ", weight.DebugString(),
                       ": its column order was not uploaded by this backend's PrepareWeight"));
    }
    order = it->second.device.data<const int32_t>();
  }
  return Q4GroupsOf(weight, order);
}

absl::StatusOr<const Q4Groups*> CudaBackend::ExpertQ4Groups(std::span<const Tensor> weights) {
  std::vector<Q4Groups> groups(weights.size());
  for (size_t e = 0; e < weights.size(); ++e) {
    if (weights[e].defined()) {
      ASSIGN_OR_RETURN(groups[e], Q4GroupsFor(weights[e]));
    }
  }
  std::string key(reinterpret_cast<const char*>(groups.data()), groups.size() * sizeof(Q4Groups));
  ASSIGN_OR_RETURN(const void* table, DeviceTable(std::move(key)));
  return static_cast<const Q4Groups*>(table);
}

absl::Status CudaBackend::Q4Linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   Tensor& out) {
  if (x.dim(0) == 0) return absl::OkStatus();
  Q4GemmArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.weight = weight.raw_data();
  ASSIGN_OR_RETURN(a.weight_groups, Q4GroupsFor(weight));
  SetBiasAndOut(bias, out, a);
  a.m = x.dim(0);
  a.k = x.dim(1);
  a.n = weight.dim(0);
  a.num_sms = num_sms_;
  return LaunchStatus(Op::kLinear, LaunchQ4Gemm(a, stream_));
}

absl::Status CudaBackend::Q4GroupedLinear(const Tensor& x, const Tensor& expert_offsets,
                                          std::span<const Tensor> weights, Tensor& out) {
  if (x.dim(0) == 0) return absl::OkStatus();
  Q4GemmArgs a;
  a.x = x.raw_data();
  a.x_dtype = x.dtype();
  a.expert_offsets = expert_offsets.data<const int32_t>();
  ASSIGN_OR_RETURN(a.weights, ExpertPointers(weights));
  ASSIGN_OR_RETURN(a.expert_groups, ExpertQ4Groups(weights));
  a.out = out.raw_data();
  a.out_dtype = out.dtype();
  a.m = x.dim(0);
  a.k = x.dim(1);
  a.n = out.dim(1);
  a.num_experts = static_cast<int>(weights.size());
  a.error_flags = error_flags();
  a.num_sms = num_sms_;
  return LaunchStatus(Op::kMoeGroupedLinear, LaunchQ4Gemm(a, stream_));
}

}  // namespace expertmesh::cuda
