// Host-side helpers every CUDA file of expertmesh shares: CUDA errors as absl::Status, and RAII
// owners for device memory, streams and events. Host code only (no kernels): include it from .cc
// files and from .cu launchers alike; it pulls in only the CUDA runtime API header.
#ifndef EXPERTMESH_KERNELS_CUDA_CUDA_UTIL_H_
#define EXPERTMESH_KERNELS_CUDA_CUDA_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace expertmesh::cuda {

// INTERNAL (ResourceExhausted for out-of-memory) with "<what>: <cudaErrorName> (<text>)".
absl::Status CudaStatus(cudaError_t error, std::string_view what);

// Returns from the enclosing function (absl::Status or StatusOr) when `expr` is not cudaSuccess.
#define EXPERTMESH_CUDA_RETURN_IF_ERROR(expr)                               \
  do {                                                                      \
    const cudaError_t expertmesh_cuda_error_ = (expr);                      \
    if (expertmesh_cuda_error_ != cudaSuccess) {                            \
      return ::expertmesh::cuda::CudaStatus(expertmesh_cuda_error_, #expr); \
    }                                                                       \
  } while (false)

// Whether this process sees at least one CUDA device (false, without aborting, when there is no
// driver or no GPU).
bool CudaDeviceAvailable();

// One cudaMalloc'd allocation; freed in the destructor. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  void Reset();

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// An owned cudaStream_t (non-blocking with respect to the legacy default stream). Move-only.
class CudaStream {
 public:
  CudaStream() = default;
  static absl::StatusOr<CudaStream> Create();
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// An owned cudaEvent_t (timing enabled when asked). Move-only.
class CudaEvent {
 public:
  CudaEvent() = default;
  static absl::StatusOr<CudaEvent> Create(bool timing = false);
  ~CudaEvent();
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& other) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_CUDA_UTIL_H_
