#include "kernels/cuda/backend/cuda_graph.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_util.h"

namespace expertmesh::cuda {

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    Reset();
    graph_ = std::exchange(other.graph_, nullptr);
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void CudaGraph::Reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  if (graph_ != nullptr) cudaGraphDestroy(graph_);
  exec_ = nullptr;
  graph_ = nullptr;
}

absl::StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream,
                                             const std::function<absl::Status()>& body) {
  if (stream == nullptr) {
    // The legacy default stream cannot be captured.
    return absl::InvalidArgumentError("cuda graph: cannot capture the legacy default stream");
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  const absl::Status body_status = body();
  CudaGraph graph;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph.graph_);
  if (!body_status.ok()) {
    (void)cudaGetLastError();  // a capture invalidated by the failed body
    return body_status;
  }
  if (end != cudaSuccess) {
    (void)cudaGetLastError();
    return CudaStatus(end, "cuda graph: cudaStreamEndCapture (did the body synchronise?)");
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&graph.exec_, graph.graph_, 0));
  return graph;
}

absl::Status CudaGraph::Launch(cudaStream_t stream) const {
  if (exec_ == nullptr)
    return absl::FailedPreconditionError("cuda graph: launch of an empty graph");
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec_, stream));
  return absl::OkStatus();
}

absl::Status CudaGraphCache::CaptureOrReplay(
    int64_t key, cudaStream_t stream, const std::function<absl::Status()>& body,
    const std::function<void()>& on_capture_begin,
    const std::function<std::vector<std::shared_ptr<const void>>()>& on_capture_end) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (on_capture_begin) on_capture_begin();
    absl::StatusOr<CudaGraph> graph = CudaGraph::Capture(stream, body);
    std::vector<std::shared_ptr<const void>> keep_alive;
    if (on_capture_end) keep_alive = on_capture_end();
    if (!graph.ok()) {
      return absl::Status(graph.status().code(),
                          absl::StrCat("cuda graph capture for key ", key, ": ",
                                       std::string(graph.status().message())));
    }
    it = entries_.emplace(key, Entry{std::move(*graph), std::move(keep_alive)}).first;
  }
  return it->second.graph.Launch(stream);
}

}  // namespace expertmesh::cuda
