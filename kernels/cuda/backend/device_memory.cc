#include "kernels/cuda/backend/device_memory.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::cuda {
namespace {

size_t RoundUp(size_t bytes, size_t to) { return (bytes + to - 1) / to * to; }

// Bytes of a dtype/shape, after validating the shape the way Tensor does (DTypeBytes: a kQ4
// tensor takes half a byte per element, where DTypeSize says 0).
absl::StatusOr<size_t> TensorBytes(DType dtype, std::span<const int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kernels::kMaxTensorRank)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda allocate: rank ", shape.size(), " > ", kernels::kMaxTensorRank));
  }
  size_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat("cuda allocate: negative dim ", d));
    numel *= static_cast<size_t>(d);
  }
  return DTypeBytes(dtype, static_cast<int64_t>(numel));
}

}  // namespace

size_t PoolBlockBytes(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  // Small tensors: 512-byte steps. Large ones: 2 MiB steps (the driver's page size for big
  // allocations), so a buffer regrown by a few bytes still reuses its old block.
  if (bytes <= (size_t{1} << 20)) return RoundUp(bytes, 512);
  return RoundUp(bytes, size_t{2} << 20);
}

// ---- WeightArena ----

absl::StatusOr<WeightArena> WeightArena::Create(size_t fixed_bytes, size_t chunk_bytes) {
  auto state = std::make_shared<State>();
  state->chunk_bytes = RoundUp(std::max<size_t>(chunk_bytes, kDeviceAlignment), kDeviceAlignment);
  if (fixed_bytes > 0) {
    state->fixed = true;
    ASSIGN_OR_RETURN(DeviceBuffer chunk,
                     DeviceBuffer::Allocate(RoundUp(fixed_bytes, kDeviceAlignment)));
    absl::MutexLock lock(&state->mu);  // not shared yet: taken for the annotations only
    state->reserved = chunk.bytes();
    state->chunks.push_back(std::move(chunk));
  }
  return WeightArena(std::move(state));
}

absl::StatusOr<kernels::Tensor> WeightArena::Allocate(DType dtype, std::span<const int64_t> shape) {
  ASSIGN_OR_RETURN(size_t bytes, TensorBytes(dtype, shape));
  const size_t need = RoundUp(std::max<size_t>(bytes, 1), kDeviceAlignment);
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  const bool fits = !s.chunks.empty() && s.offset + need <= s.chunks.back().bytes();
  if (!fits) {
    if (s.fixed) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cuda weight arena: ", need, " bytes do not fit (", s.used, " of ",
                       s.reserved, " bytes used; raise weight_arena_bytes or use 0 to grow)"));
    }
    // The tail of the current chunk is abandoned: weights come in load order and a chunk is
    // large compared with most weights, so the waste is small.
    ASSIGN_OR_RETURN(DeviceBuffer chunk, DeviceBuffer::Allocate(std::max(need, s.chunk_bytes)));
    s.reserved += chunk.bytes();
    s.chunks.push_back(std::move(chunk));
    s.offset = 0;
  }
  char* ptr = s.chunks.back().as<char>() + s.offset;
  s.offset += need;
  s.used += need;
  // The view keeps the whole arena alive: a weight may outlive the backend that loaded it.
  return kernels::Tensor::View(ptr, dtype, shape, kernels::Device::kCuda,
                               std::shared_ptr<const void>(state_));
}

size_t WeightArena::used_bytes() const {
  absl::MutexLock lock(&state_->mu);
  return state_->used;
}

size_t WeightArena::reserved_bytes() const {
  absl::MutexLock lock(&state_->mu);
  return state_->reserved;
}

// ---- ActivationPool ----

ActivationPool::State::~State() { FreeCachedLocked(); }

void ActivationPool::State::Release(Block block) {
  absl::MutexLock lock(&mu);
  stats.in_use_bytes -= block.bytes;
  stats.cached_bytes += block.bytes;
  free_blocks.emplace(block.bytes, block.ptr);
}

void ActivationPool::State::FreeCachedLocked() {
  for (auto& [bytes, ptr] : free_blocks) cudaFree(ptr);
  free_blocks.clear();
  stats.cached_bytes = 0;
}

absl::StatusOr<kernels::Tensor> ActivationPool::Allocate(DType dtype,
                                                         std::span<const int64_t> shape) {
  ASSIGN_OR_RETURN(size_t bytes, TensorBytes(dtype, shape));
  const size_t need = PoolBlockBytes(bytes);
  Block block;
  {
    State& s = *state_;
    absl::MutexLock lock(&s.mu);
    // Best fit among blocks of [need, 2 * need].
    auto it = s.free_blocks.lower_bound(need);
    if (it != s.free_blocks.end() && it->first <= 2 * need) {
      block = {it->second, it->first};
      s.free_blocks.erase(it);
      s.stats.cached_bytes -= block.bytes;
      ++s.stats.reuses;
    } else {
      void* ptr = nullptr;
      cudaError_t err = cudaMalloc(&ptr, need);
      if (err == cudaErrorMemoryAllocation && !s.free_blocks.empty() && !s.pinning) {
        // Give the cache back to the driver and try once more. Freed blocks have no pending
        // work of their own that matters (stream order), but cudaFree synchronises anyway.
        (void)cudaGetLastError();
        s.FreeCachedLocked();
        err = cudaMalloc(&ptr, need);
      }
      if (err != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky-free allocation error
        return CudaStatus(err, absl::StrCat("cuda allocate ", need, " bytes (",
                                            s.stats.in_use_bytes, " in use)"));
      }
      block = {ptr, need};
      ++s.stats.device_allocations;
    }
    s.stats.in_use_bytes += block.bytes;
  }
  std::shared_ptr<const void> owner(
      block.ptr, [state = state_, block](const void*) { state->Release(block); });
  ASSIGN_OR_RETURN(kernels::Tensor t,
                   kernels::Tensor::View(block.ptr, dtype, shape, kernels::Device::kCuda, owner));
  absl::MutexLock lock(&state_->mu);
  if (state_->pinning) state_->pinned.push_back(std::move(owner));
  return t;
}

void ActivationPool::Trim() {
  absl::MutexLock lock(&state_->mu);
  state_->FreeCachedLocked();
}

void ActivationPool::BeginPinning() {
  std::vector<std::shared_ptr<const void>> stale;
  {
    absl::MutexLock lock(&state_->mu);
    state_->pinning = true;
    stale.swap(state_->pinned);
  }
  // `stale` dies here, outside the lock: dropping a handle returns its block (Release locks).
}

std::vector<std::shared_ptr<const void>> ActivationPool::TakePinned() {
  absl::MutexLock lock(&state_->mu);
  state_->pinning = false;
  return std::exchange(state_->pinned, {});
}

ActivationPool::Stats ActivationPool::stats() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stats;
}

}  // namespace expertmesh::cuda
