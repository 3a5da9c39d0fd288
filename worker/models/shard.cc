#include "worker/models/shard.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::models {
namespace {

std::span<std::byte> Bytes(kernels::Tensor& t) {
  return {static_cast<std::byte*>(t.raw_data()), t.nbytes()};
}

}  // namespace

absl::StatusOr<Collectives::Route> Collectives::TensorRoute() {
  const bool host_tensors = backend_->device() == kernels::Device::kCpu;
  if (host_tensors == !world_->device_buffers()) return Route::kDirect;
  if (!host_tensors) return Route::kStageHost;
  return absl::FailedPreconditionError(absl::StrCat(
      "shard: the ", std::string(world_->name()),
      " communicator takes device buffers, but the backend is ", std::string(backend_->Name())));
}

absl::StatusOr<kernels::Tensor> Collectives::DeviceStage(kernels::Tensor& buffer, size_t bytes) {
  const int64_t need = static_cast<int64_t>(bytes);
  if (!buffer.defined() || buffer.numel() < need) {
    ASSIGN_OR_RETURN(buffer, backend_->Allocate(DType::kU8, {std::max<int64_t>(need, 1)}));
  }
  return buffer.Slice(0, need);
}

absl::Status Collectives::AllReduceTp(kernels::Tensor& t) {
  if (!active() || spec_.tp == 1) return absl::OkStatus();
  if (spec_.ep > 1 && spec_.EpRank() > 0) RETURN_IF_ERROR(backend_->Zero(t));
  return AllReduceWorld(t);
}

absl::Status Collectives::AllReduceWorld(kernels::Tensor& t) {
  if (!active()) return absl::OkStatus();
  ASSIGN_OR_RETURN(Route route, TensorRoute());
  if (route == Route::kDirect) {
    RETURN_IF_ERROR(backend_->Synchronize());
    std::span<std::byte> b = Bytes(t);
    return world_->AllReduce(b, b, t.dtype());
  }
  host_send_.resize(std::max(host_send_.size(), t.nbytes()));
  std::span<std::byte> b(host_send_.data(), t.nbytes());
  RETURN_IF_ERROR(backend_->CopyToHost(t, b.data()));
  RETURN_IF_ERROR(world_->AllReduce(b, b, t.dtype()));
  return backend_->CopyFromHost(b.data(), t);
}

absl::Status Collectives::AllGatherWorld(const kernels::Tensor& send, kernels::Tensor& recv) {
  if (!active()) return absl::FailedPreconditionError("shard: all-gather in a group of one rank");
  ASSIGN_OR_RETURN(Route route, TensorRoute());
  if (route == Route::kDirect) {
    RETURN_IF_ERROR(backend_->Synchronize());
    const std::span<const std::byte> bytes(static_cast<const std::byte*>(send.raw_data()),
                                           send.nbytes());
    return world_->AllGather(bytes, Bytes(recv), send.dtype());
  }
  host_send_.resize(std::max(host_send_.size(), send.nbytes()));
  host_recv_.resize(std::max(host_recv_.size(), recv.nbytes()));
  RETURN_IF_ERROR(backend_->CopyToHost(send, host_send_.data()));
  RETURN_IF_ERROR(world_->AllGather({host_send_.data(), send.nbytes()},
                                    {host_recv_.data(), recv.nbytes()}, send.dtype()));
  return backend_->CopyFromHost(host_recv_.data(), recv);
}

absl::Status Collectives::AllToAllWorld(const kernels::Tensor& send,
                                        std::span<const int64_t> send_counts, kernels::Tensor& recv,
                                        std::span<const int64_t> recv_counts, DType dtype) {
  if (!active()) {
    return absl::FailedPreconditionError("shard: all-to-all in a group of one rank");
  }
  ASSIGN_OR_RETURN(Route route, TensorRoute());
  if (route == Route::kDirect) {
    RETURN_IF_ERROR(backend_->Synchronize());
    return world_->AllToAll({static_cast<const std::byte*>(send.raw_data()), send.nbytes()},
                            send_counts, Bytes(recv), recv_counts, dtype);
  }
  host_send_.resize(std::max(host_send_.size(), send.nbytes()));
  host_recv_.resize(std::max(host_recv_.size(), recv.nbytes()));
  RETURN_IF_ERROR(backend_->CopyToHost(send, host_send_.data()));
  RETURN_IF_ERROR(world_->AllToAll({host_send_.data(), send.nbytes()}, send_counts,
                                   {host_recv_.data(), recv.nbytes()}, recv_counts, dtype));
  return backend_->CopyFromHost(host_recv_.data(), recv);
}

absl::Status Collectives::AllToAllHost(std::span<const std::byte> send,
                                       std::span<const int64_t> send_counts,
                                       std::span<std::byte> recv,
                                       std::span<const int64_t> recv_counts, DType dtype) {
  if (!active()) {
    return absl::FailedPreconditionError("shard: all-to-all in a group of one rank");
  }
  if (!world_->device_buffers()) {
    return world_->AllToAll(send, send_counts, recv, recv_counts, dtype);
  }
  if (backend_->device() == kernels::Device::kCpu) {
    RETURN_IF_ERROR(TensorRoute().status());  // the refusal of this combination
  }
  ASSIGN_OR_RETURN(kernels::Tensor ds, DeviceStage(dev_send_, send.size()));
  ASSIGN_OR_RETURN(kernels::Tensor dr, DeviceStage(dev_recv_, recv.size()));
  RETURN_IF_ERROR(backend_->CopyFromHost(send.data(), ds));
  RETURN_IF_ERROR(backend_->Synchronize());
  RETURN_IF_ERROR(world_->AllToAll({static_cast<const std::byte*>(ds.raw_data()), send.size()},
                                   send_counts, Bytes(dr), recv_counts, dtype));
  return backend_->CopyToHost(dr, recv.data());
}

}  // namespace expertmesh::models
