#include "kernels/cuda/backend/host_staging.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/status_macros.h"

namespace expertmesh::cuda {
namespace {

// Regions start on 64-byte boundaries (a cache line; DMA from aligned sources is fastest).
constexpr size_t kStagingAlign = 64;

}  // namespace

absl::StatusOr<HostStaging> HostStaging::Create(size_t bytes) {
  HostStaging staging;
  staging.bytes_ =
      std::max<size_t>((bytes + kStagingAlign - 1) / kStagingAlign * kStagingAlign, kStagingAlign);
  void* host = nullptr;
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host, staging.bytes_));
  staging.host_ = static_cast<char*>(host);
  ASSIGN_OR_RETURN(staging.last_copy_, CudaEvent::Create());
  return staging;
}

HostStaging::~HostStaging() { Free(); }

void HostStaging::Free() {
  if (host_ != nullptr) {
    // A copy may still be reading the buffer.
    if (pending_) cudaEventSynchronize(last_copy_.get());
    cudaFreeHost(host_);
  }
  host_ = nullptr;
}

HostStaging::HostStaging(HostStaging&& other) noexcept
    : host_(std::exchange(other.host_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      offset_(std::exchange(other.offset_, 0)),
      last_copy_(std::move(other.last_copy_)),
      pending_(std::exchange(other.pending_, false)) {}

HostStaging& HostStaging::operator=(HostStaging&& other) noexcept {
  if (this != &other) {
    Free();
    host_ = std::exchange(other.host_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    offset_ = std::exchange(other.offset_, 0);
    last_copy_ = std::move(other.last_copy_);
    pending_ = std::exchange(other.pending_, false);
  }
  return *this;
}

absl::Status HostStaging::CopyToDevice(const void* src, void* dst, size_t bytes,
                                       cudaStream_t stream) {
  const char* from = static_cast<const char*>(src);
  char* to = static_cast<char*>(dst);
  while (bytes > 0) {
    const size_t piece = std::min(bytes, bytes_);
    if (offset_ + piece > bytes_) {
      // Wrap: every region of the ring was enqueued before `last_copy_`.
      if (pending_) EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(last_copy_.get()));
      pending_ = false;
      offset_ = 0;
    }
    std::memcpy(host_ + offset_, from, piece);
    EXPERTMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(to, host_ + offset_, piece, cudaMemcpyHostToDevice, stream));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(last_copy_.get(), stream));
    pending_ = true;
    offset_ += (piece + kStagingAlign - 1) / kStagingAlign * kStagingAlign;
    from += piece;
    to += piece;
    bytes -= piece;
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::cuda
