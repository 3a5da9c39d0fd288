// CudaBackend: creation, memory, copies, synchronisation, error flags and CUDA graphs. The ops
// (tensors to launcher arguments) are in cuda_backend_ops.cc.
#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/gemm/cublaslt_linear.h"

namespace expertmesh::cuda {

using kernels::Op;
using kernels::Tensor;

absl::Status ErrorFlagsStatus(uint32_t flags) {
  if (flags == 0) return absl::OkStatus();
  struct Known {
    uint32_t bit;
    Op op;
    const char* what;
  };
  // Each bit is set by exactly one kind of kernel; name the op the caller called.
  static constexpr Known kKnown[] = {
      {kErrorEmbeddingId, Op::kEmbedding, "a token id outside [0, vocab)"},
      {kErrorMoeExpertId, Op::kMoePermute,
       "an expert id outside [0, num_experts) (or sorted_slots not a permutation, in "
       "moe_combine)"},
      {kErrorKvSlot, Op::kKvCacheWrite, "a slot >= num_blocks * block_size"},
      {kErrorBlockId, Op::kPagedAttention,
       "a block id outside [0, num_blocks) or an inconsistent batch layout"},
      {kErrorRopePosition, Op::kRope, "a position outside [0, max_positions)"},
      {kErrorExpertOffsets, Op::kMoeGroupedLinear,
       "expert offsets not non-decreasing from 0 to the row count"},
      {kErrorMissingExpertWeight, Op::kMoeGroupedLinear,
       "rows routed to an expert whose weight is undefined"},
  };
  std::vector<std::string> parts;
  uint32_t rest = flags;
  for (const Known& k : kKnown) {
    if ((flags & k.bit) == 0) continue;
    parts.push_back(absl::StrCat(std::string(OpName(k.op)), ": ", k.what));
    rest &= ~k.bit;
  }
  if (rest & kErrorSampling) {
    parts.push_back("sampling: no finite logit to sample from");
    rest &= ~static_cast<uint32_t>(kErrorSampling);
  }
  if (rest != 0) parts.push_back(absl::StrCat("unknown error flags 0x", absl::Hex(rest)));
  return absl::InvalidArgumentError(
      absl::StrCat("cuda kernels reported: ", absl::StrJoin(parts, "; ")));
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return absl::UnavailableError(
        absl::StrCat("cuda backend: no usable CUDA device (",
                     err != cudaSuccess ? cudaGetErrorString(err) : "no device", ")"));
  }
  if (options.device < 0 || options.device >= count) {
    return absl::UnavailableError(
        absl::StrCat("cuda backend: device ", options.device, " requested, ", count, " visible"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->device_ = options.device;
  b->name_ = absl::StrCat("cuda:", options.device);
  b->fp8_w8a8_min_rows_ = options.fp8_w8a8_min_rows;
  RETURN_IF_ERROR(b->Enter());
  EXPERTMESH_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&b->num_sms_, cudaDevAttrMultiProcessorCount, b->device_));
  ASSIGN_OR_RETURN(b->own_stream_, CudaStream::Create());
  ASSIGN_OR_RETURN(b->aux_stream_, CudaStream::Create());
  b->stream_ = b->own_stream_.get();
  ASSIGN_OR_RETURN(b->error_word_, DeviceBuffer::Allocate(kDeviceAlignment));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemset(b->error_word_.get(), 0, kDeviceAlignment));
  void* pinned = nullptr;
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned, sizeof(uint32_t)));
  b->error_host_.ptr = static_cast<uint32_t*>(pinned);
  *b->error_host_.ptr = 0;
  if (options.workspace_bytes > 0) {
    ASSIGN_OR_RETURN(b->workspace_, DeviceBuffer::Allocate(options.workspace_bytes));
  }
  ASSIGN_OR_RETURN(b->weights_, WeightArena::Create(options.weight_arena_bytes));
  ASSIGN_OR_RETURN(b->staging_, HostStaging::Create(options.staging_bytes));
  // cuBLASLt shares the backend's workspace: every op runs in order on one stream.
  CublasLtLinearOptions lt;
  if (b->workspace_.bytes() > 0) {
    lt.workspace = b->workspace_.get();
    lt.workspace_bytes = std::min(lt.workspace_bytes, b->workspace_.bytes());
  }
  ASSIGN_OR_RETURN(b->linear_, CublasLtLinear::Create(lt));
  return b;
}

CudaBackend::~CudaBackend() {
  // Nothing may still run on memory that is about to be freed; errors are moot here.
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  graphs_.Clear();
}

absl::Status CudaBackend::Enter() const {
  int current = -1;
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaGetDevice(&current));
  if (current != device_) EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  return absl::OkStatus();
}

absl::Status CudaBackend::RefuseWhileCapturing(std::string_view what) const {
  if (!capturing_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "cuda backend: ", std::string(what),
      " inside a CUDA graph capture (it would synchronise with the host or record stale host "
      "bytes; do it before CaptureOrReplay)"));
}

absl::StatusOr<Tensor> CudaBackend::Allocate(DType dtype, std::span<const int64_t> shape) {
  RETURN_IF_ERROR(Enter());
  return pool_.Allocate(dtype, shape);
}

absl::Status CudaBackend::SetStream(kernels::Stream stream) {
  RETURN_IF_ERROR(RefuseWhileCapturing("SetStream"));
  RETURN_IF_ERROR(Enter());
  cudaStream_t next =
      stream.handle != nullptr ? static_cast<cudaStream_t>(stream.handle) : own_stream_.get();
  if (next == stream_) return absl::OkStatus();
  // Pooled blocks and staging regions are reused in stream order: finish the old stream first.
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  stream_ = next;
  return absl::OkStatus();
}

absl::Status CudaBackend::EnqueueFlagsRead() {
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      error_host_.ptr, error_word_.get(), sizeof(uint32_t), cudaMemcpyDeviceToHost, stream_));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(error_word_.get(), 0, sizeof(uint32_t), stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::FlagsAfterSync() {
  const uint32_t flags = *error_host_.ptr;
  *error_host_.ptr = 0;
  return ErrorFlagsStatus(flags);
}

absl::Status CudaBackend::Synchronize() {
  RETURN_IF_ERROR(RefuseWhileCapturing("Synchronize"));
  RETURN_IF_ERROR(Enter());
  RETURN_IF_ERROR(EnqueueFlagsRead());
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return FlagsAfterSync();
}

absl::Status CudaBackend::CopyFromHost(const void* host, Tensor& dst) {
  if (!dst.defined() || dst.device() != kernels::Device::kCuda) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda CopyFromHost: dst ", dst.DebugString(), " is not a cuda tensor"));
  }
  RETURN_IF_ERROR(RefuseWhileCapturing("CopyFromHost"));
  RETURN_IF_ERROR(Enter());
  if (dst.nbytes() == 0) return absl::OkStatus();
  return staging_.CopyToDevice(host, dst.raw_data(), dst.nbytes(), stream_);
}

absl::Status CudaBackend::CopyToHost(const Tensor& src, void* host) {
  if (!src.defined() || src.device() != kernels::Device::kCuda) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda CopyToHost: src ", src.DebugString(), " is not a cuda tensor"));
  }
  RETURN_IF_ERROR(RefuseWhileCapturing("CopyToHost"));
  RETURN_IF_ERROR(Enter());
  if (src.nbytes() > 0) {
    // Pageable destination: the copy is complete when the stream is.
    EXPERTMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host, src.raw_data(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  }
  RETURN_IF_ERROR(EnqueueFlagsRead());
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return FlagsAfterSync();
}

absl::Status CudaBackend::Zero(Tensor& t) {
  if (!t.defined() || t.device() != kernels::Device::kCuda) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda Zero: ", t.DebugString(), " is not a cuda tensor"));
  }
  RETURN_IF_ERROR(Enter());
  if (t.nbytes() == 0) return absl::OkStatus();
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), stream_));
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CudaBackend::PrepareWeight(const Tensor& host) {
  if (!host.defined()) return host;  // optional weights (no bias) stay undefined
  if (host.device() == kernels::Device::kCuda) return host;
  RETURN_IF_ERROR(RefuseWhileCapturing("PrepareWeight"));
  RETURN_IF_ERROR(Enter());
  if (host.block_scales() != nullptr) {
    return host.dtype() == DType::kQ4 ? PrepareQ4Weight(host) : PrepareFp8Weight(host);
  }
  ASSIGN_OR_RETURN(Tensor dev, weights_.Allocate(host.dtype(), host.shape()));
  if (host.nbytes() > 0) {
    // Ordered after earlier work on the stream (a weight may be replaced between steps) and
    // complete on return, so the caller may unmap the host bytes. Pageable sources are staged
    // by the driver; loading is bound by reading the checkpoint anyway.
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dev.raw_data(), host.raw_data(), host.nbytes(),
                                                    cudaMemcpyHostToDevice, stream_));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  }
  return dev;
}

absl::Status CudaBackend::CaptureOrReplay(int64_t key, const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(RefuseWhileCapturing("CaptureOrReplay"));
  RETURN_IF_ERROR(Enter());
  return graphs_.CaptureOrReplay(
      key, stream_, body,
      [this] {
        capturing_ = true;
        pool_.BeginPinning();
      },
      [this] {
        capturing_ = false;
        return pool_.TakePinned();
      });
}

CudaMemoryStats CudaBackend::memory_stats() const {
  CudaMemoryStats s;
  s.weight_bytes = weights_.used_bytes();
  s.weight_reserved_bytes = weights_.reserved_bytes();
  const ActivationPool::Stats pool = pool_.stats();
  s.pool_in_use_bytes = pool.in_use_bytes;
  s.pool_cached_bytes = pool.cached_bytes;
  s.pool_device_allocations = pool.device_allocations;
  s.pool_reuses = pool.reuses;
  s.cached_graphs = graphs_.size();
  return s;
}

// ---- the CUDA-free entry points of cuda_backend.h ----

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateCudaBackend(
    const CudaBackendOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend, CudaBackend::Create(options));
  return std::unique_ptr<kernels::Backend>(std::move(backend));
}

bool IsCudaBackend(const kernels::Backend& backend) {
  return dynamic_cast<const CudaBackend*>(&backend) != nullptr;
}

namespace {

absl::StatusOr<CudaBackend*> AsCuda(kernels::Backend& backend, std::string_view what) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ": backend ", std::string(backend.Name()), " is not a CUDA backend"));
  }
  return cuda;
}

}  // namespace

absl::Status CaptureOrReplay(kernels::Backend& backend, int64_t key,
                             const std::function<absl::Status()>& body) {
  ASSIGN_OR_RETURN(CudaBackend * cuda, AsCuda(backend, "CaptureOrReplay"));
  return cuda->CaptureOrReplay(key, body);
}

absl::Status ClearCudaGraphs(kernels::Backend& backend) {
  ASSIGN_OR_RETURN(CudaBackend * cuda, AsCuda(backend, "ClearCudaGraphs"));
  cuda->ClearGraphs();
  return absl::OkStatus();
}

absl::StatusOr<CudaMemoryStats> GetCudaMemoryStats(const kernels::Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GetCudaMemoryStats: backend ", std::string(backend.Name()), " is not a CUDA backend"));
  }
  return cuda->memory_stats();
}

}  // namespace expertmesh::cuda
