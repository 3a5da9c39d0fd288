// The CUDA implementation of kernels::Backend, as host code sees it: no CUDA types here, so the
// engine, the worker and tests can include this header without the CUDA toolkit's headers.
//
// Memory (see kernels/cuda/backend/device_memory.h for the details):
//  - Weights (PrepareWeight) are copied once into a weight arena: large cudaMalloc chunks,
//    bump-allocated, 256-byte aligned, kept for the backend's lifetime; dtypes are kept as given
//    (fp8 e4m3 weights stay one byte each, with their block scales trimmed to the weight; kQ4
//    weights stay packed, half a byte each, with their group scales and zero points trimmed).
//  - Activations (Allocate) come from a caching pool: a tensor's block returns to the pool when
//    the last copy of the tensor (and of every view of it) dies, and the next Allocate of a
//    similar size reuses it. The model's Workspace allocates its scratch buffers once, so a
//    steady-state step allocates nothing from the driver.
//  - The KV cache is also one Allocate: the model sizes it once at load, as one pre-sized
//    allocation per layer and kind, which then lives as long as the model.
//
// Streams: ops, copies and Zero are enqueued on the current stream (the backend's own, or the
// cudaStream_t passed to SetStream as Stream{handle}). Synchronize waits for that stream and
// reports data-dependent kernel errors (error_flags.h) as InvalidArgument naming the op.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace expertmesh::cuda {

struct CudaBackendOptions {
  // CUDA device index (cudaSetDevice) this backend uses for everything it does.
  int device = 0;
  // Weight arena size: 0 grows it in chunks (256 MiB, or one chunk of exactly a weight's size
  // for a bigger weight); non-zero reserves one chunk of this many bytes up front and fails
  // PrepareWeight with ResourceExhausted when it is full (the caller knows the model's size).
  size_t weight_arena_bytes = 0;
  // Scratch memory for launchers that need it (grouped GEMM, split-K attention, cuBLASLt),
  // allocated once at creation; a launcher asking for more reports ResourceExhausted.
  size_t workspace_bytes = size_t{256} << 20;
  // Pinned host staging buffer for CopyFromHost (grows when a bigger copy comes).
  size_t staging_bytes = size_t{16} << 20;
  // fp8 weights (SupportsFp8Weights): products of at least this many rows quantize their
  // activations to e4m3 and run FP8 x FP8 on tensor cores (W8A8, docs/fp8.md); 0 keeps W8A16
  // everywhere. Off by default until the W8A8 path has been validated on a GPU.
  int64_t fp8_w8a8_min_rows = 0;
};

// A CUDA backend on options.device.
// Errors: UNAVAILABLE when there is no usable GPU (no driver, no device, or device index out of
// range); the CUDA error otherwise.
absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateCudaBackend(
    const CudaBackendOptions& options);

// Whether `backend` was made by CreateCudaBackend.
bool IsCudaBackend(const kernels::Backend& backend);

// CUDA graphs for steps that repeat with the same shapes (decode at a given batch size).
//
// The first call with a `key` runs `body` under stream capture on the backend's current stream
// (the ops are recorded, not run), instantiates the graph, caches it under `key` and launches
// it; later calls with the same key launch the cached graph without calling `body`. The key
// should name everything that changes the recorded work (e.g. the batch size, when the padded
// batch layout is otherwise fixed).
//
// Preconditions (the caller's duty; a graph replays the exact kernels and addresses it recorded):
//  - Stable addresses: every tensor `body` reads or writes stays allocated, at the same address,
//    for as long as the graph is replayed. Per-step inputs (token ids, positions, slot mapping,
//    block tables, seq lens) are written into those same tensors with CopyFromHost BEFORE
//    calling CaptureOrReplay, never inside `body` (a recorded host copy would replay stale bytes
//    from the staging buffer). Tensors `body` allocates are kept alive by the cached graph.
//  - No host synchronisation inside `body`: no Synchronize, CopyToHost or PrepareWeight, and
//    nothing that reads device data on the host. Such a call fails with FailedPrecondition and
//    aborts the capture.
//  - Same shapes, same control flow: `body` must not branch on anything that differs between
//    steps sharing a key (its host-side effects also run only once, at capture).
// Errors: InvalidArgument when `backend` is not a CUDA backend; body's error (the capture is
// discarded, nothing cached); the CUDA error of capture, instantiation or launch.
absl::Status CaptureOrReplay(kernels::Backend& backend, int64_t key,
                             const std::function<absl::Status()>& body);
// Drops every cached graph (and the tensors they kept alive). For a model reload.
absl::Status ClearCudaGraphs(kernels::Backend& backend);

// What the backend's memory holds, for logs, metrics and tests.
struct CudaMemoryStats {
  size_t weight_bytes = 0;               // bytes handed out by the weight arena
  size_t weight_reserved_bytes = 0;      // bytes of cudaMalloc'd arena chunks
  size_t pool_in_use_bytes = 0;          // activation blocks held by live tensors
  size_t pool_cached_bytes = 0;          // activation blocks free for reuse
  uint64_t pool_device_allocations = 0;  // cudaMalloc calls the pool made so far
  uint64_t pool_reuses = 0;              // Allocate calls served from the cache
  size_t cached_graphs = 0;
};
// Errors: InvalidArgument when `backend` is not a CUDA backend.
absl::StatusOr<CudaMemoryStats> GetCudaMemoryStats(const kernels::Backend& backend);

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_BACKEND_H_
