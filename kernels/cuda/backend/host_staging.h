// Pinned host staging for CopyFromHost: the caller's bytes are copied into page-locked memory
// and the device copy is enqueued asynchronously from there, so the call returns before the
// GPU has read them (pageable cudaMemcpyAsync would be synchronous) and the caller may reuse its
// buffer at once.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_HOST_STAGING_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_HOST_STAGING_H_

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_util.h"

namespace expertmesh::cuda {

// A ring over one pinned buffer. Each copy takes the next region; when the ring wraps, the call
// first waits for the last copy enqueued from the buffer (so no region still being read is
// overwritten). With small per-step inputs a wrap is rare, and a step's copies never wait for the
// GPU. A copy larger than the ring is split into ring-sized pieces.
class HostStaging {
 public:
  static absl::StatusOr<HostStaging> Create(size_t bytes);
  HostStaging() = default;
  ~HostStaging();
  HostStaging(HostStaging&& other) noexcept;
  HostStaging& operator=(HostStaging&& other) noexcept;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Enqueues dst[0, bytes) = src[0, bytes) on `stream`; src may be reused on return.
  absl::Status CopyToDevice(const void* src, void* dst, size_t bytes, cudaStream_t stream);

  size_t bytes() const { return bytes_; }

 private:
  void Free();

  char* host_ = nullptr;
  size_t bytes_ = 0;
  size_t offset_ = 0;
  CudaEvent last_copy_;  // recorded after every copy from the ring
  bool pending_ = false;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_HOST_STAGING_H_
