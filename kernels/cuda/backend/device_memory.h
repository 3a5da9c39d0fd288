// Device memory of the CUDA backend: the weight arena and the activation pool.
//
// Both hand out kernels::Tensor views whose keep-alive handle shares ownership of the allocator's
// state, so a tensor that outlives the backend (a model torn down after it) still frees safely.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_DEVICE_MEMORY_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_DEVICE_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/dtype.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/tensor.h"

namespace expertmesh::cuda {

// Every device allocation the backend hands out is aligned to this (cudaMalloc gives 256 too;
// vectorised and TMA loads need 16, cuBLASLt prefers 256).
inline constexpr size_t kDeviceAlignment = 256;

// Weights live as long as the model: a bump allocator over large cudaMalloc chunks, never freed
// piecemeal (no fragmentation, no per-weight cudaMalloc cost at load time).
class WeightArena {
 public:
  WeightArena() = default;  // empty: Create() makes a usable one
  // fixed_bytes == 0: grow in chunks of `chunk_bytes` (or one chunk exactly the size of a larger
  // request). fixed_bytes > 0: one chunk of that size, reserved now; Allocate fails when full.
  static absl::StatusOr<WeightArena> Create(size_t fixed_bytes,
                                            size_t chunk_bytes = size_t{256} << 20);

  // A kCuda tensor of `dtype` and `shape` in the arena (uninitialised).
  // Errors: ResourceExhausted when the arena (or the device) is full; InvalidArgument shape.
  absl::StatusOr<kernels::Tensor> Allocate(DType dtype, std::span<const int64_t> shape);

  size_t used_bytes() const;
  size_t reserved_bytes() const;

 private:
  struct State {
    absl::Mutex mu;
    std::vector<DeviceBuffer> chunks ABSL_GUARDED_BY(mu);
    size_t offset ABSL_GUARDED_BY(mu) = 0;  // next free byte of chunks.back()
    size_t used ABSL_GUARDED_BY(mu) = 0;
    size_t reserved ABSL_GUARDED_BY(mu) = 0;
    // Set by Create() before the state is shared, read-only afterwards.
    size_t chunk_bytes = 0;
    bool fixed = false;
  };
  explicit WeightArena(std::shared_ptr<State> state) : state_(std::move(state)) {}

  std::shared_ptr<State> state_;
};

// The allocator behind Backend::Allocate: a caching pool. A block goes back to the pool when the
// last copy of its tensor dies and is handed out again to the next request it fits (best fit, at
// most twice the request, so a tiny tensor does not pin a huge block). Memory is returned to the
// driver only when a cudaMalloc fails (then every cached block is freed and the call retried)
// or by Trim().
//
// Reuse is safe without events because the backend runs everything on one stream at a time, in
// order: work enqueued on a freed block precedes work enqueued by its next owner. (The backend
// synchronises the old stream when SetStream switches streams.)
class ActivationPool {
 public:
  ActivationPool() : state_(std::make_shared<State>()) {}

  // A kCuda tensor over a pooled block (uninitialised). Zero-element tensors get a non-null,
  // unowned pointer so views stay valid.
  // Errors: InvalidArgument (bad shape), ResourceExhausted (device memory full).
  absl::StatusOr<kernels::Tensor> Allocate(DType dtype, std::span<const int64_t> shape);

  // Frees every cached (unused) block. Call with no work in flight on the blocks (Synchronize).
  void Trim();

  // While pinning is on, every block handed out is also recorded, and TakePinned() returns
  // handles that keep those blocks out of the pool (a CUDA graph holds them: its recorded
  // kernels keep using those addresses on every replay).
  void BeginPinning();
  std::vector<std::shared_ptr<const void>> TakePinned();

  struct Stats {
    size_t in_use_bytes = 0;
    size_t cached_bytes = 0;
    uint64_t device_allocations = 0;
    uint64_t reuses = 0;
  };
  Stats stats() const;

 private:
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  struct State {
    mutable absl::Mutex mu;
    std::multimap<size_t, void*> free_blocks ABSL_GUARDED_BY(mu);  // bytes -> pointer
    Stats stats ABSL_GUARDED_BY(mu);
    bool pinning ABSL_GUARDED_BY(mu) = false;
    std::vector<std::shared_ptr<const void>> pinned ABSL_GUARDED_BY(mu);
    ~State();
    void Release(Block block) ABSL_LOCKS_EXCLUDED(mu);
    void FreeCachedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  };

  std::shared_ptr<State> state_;
};

// Bytes a pooled block of a `bytes` request has (rounded up so similar sizes share blocks).
size_t PoolBlockBytes(size_t bytes);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_DEVICE_MEMORY_H_
