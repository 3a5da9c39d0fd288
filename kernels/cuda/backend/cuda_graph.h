// CUDA graphs: record a sequence of stream work once, replay it with one launch.
//
// A decode step is ~10 small kernels per layer; at batch 1 their launch overhead is comparable
// with their run time, and a graph replay removes it. CudaGraph owns one captured, instantiated
// graph (RAII); CudaGraphCache keeps one per key (the engine uses the batch size).
//
// Preconditions for a body to be captured (see also CaptureOrReplay in cuda_backend.h):
//  - everything it does is enqueued on the capturing stream (or on streams forked from it with
//    events), and every buffer it touches keeps its address for as long as the graph replays;
//  - it does not synchronise with the host (cudaStreamSynchronize, cudaMemcpy to pageable host
//    memory, event queries on captured events) and does not read device data on the host;
//  - what it records does not depend on data that changes between replays, except through the
//    contents of those stable buffers.
#ifndef EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_GRAPH_H_
#define EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_GRAPH_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace expertmesh::cuda {

class CudaGraph {
 public:
  CudaGraph() = default;
  // Runs `body` with `stream` in capture mode and instantiates what it recorded. The capture
  // is always ended, also when `body` fails (then its error is returned and nothing is kept).
  // Relaxed capture mode: `body` may cudaMalloc (a pool growing during the first capture).
  static absl::StatusOr<CudaGraph> Capture(cudaStream_t stream,
                                           const std::function<absl::Status()>& body);
  ~CudaGraph() { Reset(); }
  CudaGraph(CudaGraph&& other) noexcept
      : graph_(std::exchange(other.graph_, nullptr)), exec_(std::exchange(other.exec_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Enqueues one replay on `stream`.
  absl::Status Launch(cudaStream_t stream) const;
  bool valid() const { return exec_ != nullptr; }
  void Reset();

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// Graphs by key. A graph's entry also holds `keep_alive` handles (the memory its kernels were
// recorded with), released when the entry is dropped.
class CudaGraphCache {
 public:
  // Launches the graph cached under `key`; if there is none, captures `body` first.
  // `on_capture_begin` / `on_capture_end` run around the capture (the backend uses them to pin
  // the tensors the body allocates, which on_capture_end returns; those stay with the entry).
  // Errors: body's error, or the CUDA error of capture/instantiate/launch (nothing cached).
  absl::Status CaptureOrReplay(
      int64_t key, cudaStream_t stream, const std::function<absl::Status()>& body,
      const std::function<void()>& on_capture_begin = nullptr,
      const std::function<std::vector<std::shared_ptr<const void>>()>& on_capture_end = nullptr);

  bool Contains(int64_t key) const { return entries_.count(key) > 0; }
  size_t size() const { return entries_.size(); }
  void Clear() { entries_.clear(); }

 private:
  struct Entry {
    CudaGraph graph;
    std::vector<std::shared_ptr<const void>> keep_alive;
  };
  std::map<int64_t, Entry> entries_;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_BACKEND_CUDA_GRAPH_H_
