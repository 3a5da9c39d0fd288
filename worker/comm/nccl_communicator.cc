#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_util.h"
#include "worker/comm/comm_util.h"
#include "worker/comm/nccl_convert.h"

namespace expertmesh::comm {
namespace {

// The failure of an NCCL call. Network and system errors mean a peer (or the link to it) is
// gone; anything else is INTERNAL. Both break the communicator.
absl::Status NcclStatus(ncclResult_t result, ncclComm_t comm, absl::string_view what) {
  const char* last = ncclGetLastError(comm);
  std::string message = absl::StrCat(what, ": ", ncclGetErrorString(result));
  if (last != nullptr && last[0] != '\0') absl::StrAppend(&message, " (", last, ")");
  if (result == ncclRemoteError || result == ncclSystemError) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

// cuda_util.h speaks std::string_view; absl here is built without the std alias.
absl::Status CudaError(cudaError_t error, absl::string_view what) {
  return cuda::CudaStatus(error, std::string_view(what.data(), what.size()));
}

bool Breaks(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kInternal || code == absl::StatusCode::kAborted;
}

// INVALID_ARGUMENT unless `bytes` at `ptr` are device memory of `device` (NCCL would fault or
// hang on host memory, and the peers would wait for this rank in vain).
absl::Status CheckDeviceMemory(absl::string_view what, absl::string_view buffer, const void* ptr,
                               size_t bytes, int device) {
  if (bytes == 0) return absl::OkStatus();
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, ptr);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it so that later error checks do not see it
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", buffer, " is not a CUDA pointer (",
                                                   cudaGetErrorString(error), ")"));
  }
  if (attributes.type == cudaMemoryTypeManaged) return absl::OkStatus();
  if (attributes.type != cudaMemoryTypeDevice) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", buffer, " is host memory; the nccl communicator takes device ",
                     "memory of device ", device));
  }
  if (attributes.device != device) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", buffer, " is memory of device ",
                                                   attributes.device, ", this rank uses device ",
                                                   device));
  }
  return absl::OkStatus();
}

// The bf16 reductions' fp32 scratch: stream-ordered allocations from the communicator's own
// pool (safe when calls alternate between streams), returned to the pool on the same stream.
class MemPool {
 public:
  MemPool() = default;
  MemPool(const MemPool&) = delete;
  MemPool& operator=(const MemPool&) = delete;
  ~MemPool() {
    if (pool_ != nullptr) (void)cudaMemPoolDestroy(pool_);
  }

  absl::Status Create(int device) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemPoolCreate(&pool_, &props));
    // Keep freed blocks: the same sizes come back every step.
    uint64_t keep = std::numeric_limits<uint64_t>::max();
    EXPERTMESH_CUDA_RETURN_IF_ERROR(
        cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
    return absl::OkStatus();
  }
  cudaMemPool_t get() const { return pool_; }

 private:
  cudaMemPool_t pool_ = nullptr;
};

// `count` floats from `pool`, valid on `stream` from now until the destructor's free.
class Scratch {
 public:
  Scratch(cudaMemPool_t pool, cudaStream_t stream) : pool_(pool), stream_(stream) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
  }
  absl::StatusOr<float*> Allocate(size_t count) {
    void* ptr = nullptr;
    EXPERTMESH_CUDA_RETURN_IF_ERROR(
        cudaMallocFromPoolAsync(&ptr, count * sizeof(float), pool_, stream_));
    ptr_ = ptr;
    return static_cast<float*>(ptr);
  }

 private:
  cudaMemPool_t pool_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

// What a rank needs before it joins: its device checked and made current, and its stream,
// completion event and scratch pool created (a failure later would leave the peers waiting).
struct DeviceResources {
  cuda::CudaStream stream;
  cuda::CudaEvent done;
  std::unique_ptr<MemPool> pool;
};

absl::StatusOr<DeviceResources> PrepareDevice(int device) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::UnavailableError(
        absl::StrCat("no usable CUDA device: cudaGetDeviceCount: ", cudaGetErrorName(error), " (",
                     cudaGetErrorString(error), ")"));
  }
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " out of range: ", count, " visible"));
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  DeviceResources resources;
  ASSIGN_OR_RETURN(resources.stream, cuda::CudaStream::Create());
  ASSIGN_OR_RETURN(resources.done, cuda::CudaEvent::Create());
  resources.pool = std::make_unique<MemPool>();
  RETURN_IF_ERROR(resources.pool->Create(device));
  return resources;
}

// Polling with a short spin first: a tensor-parallel all-reduce of a decode step completes in
// tens of microseconds, and sleeping would add more than that.
class Backoff {
 public:
  void Wait() {
    if (++polls_ < 4096) {
      std::this_thread::yield();
    } else {
      absl::SleepFor(absl::Microseconds(100));
    }
  }

 private:
  int polls_ = 0;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world_size, const NcclOptions& options,
                   Communicator& host, DeviceResources resources)
      : rank_(rank),
        world_size_(world_size),
        device_(options.device),
        timeout_(options.timeout),
        host_(host),
        resources_(std::move(resources)),
        comm_(comm) {}

  ~NcclCommunicator() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (watchdog_.joinable()) watchdog_.join();
    (void)cudaSetDevice(device_);
    absl::MutexLock lock(&mu_);
    if (comm_ != nullptr) {
      // Let the enqueued work finish and leave the group cleanly; abort where that does not
      // happen in time (ncclCommDestroy would wait forever for a dead peer).
      const absl::Time deadline = absl::Now() + std::min(timeout_, absl::Seconds(10));
      bool clean = IdleLocked(deadline);
      if (clean) {
        ncclResult_t result = ncclCommFinalize(comm_);
        Backoff backoff;
        while (result == ncclInProgress && absl::Now() < deadline) {
          backoff.Wait();
          if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) result = ncclInternalError;
        }
        clean = result == ncclSuccess;
      }
      if (clean) {
        (void)ncclCommDestroy(comm_);
      } else {
        (void)ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
    for (const Pending& p : pending_) (void)cudaEventDestroy(p.event);
    for (cudaEvent_t event : free_events_) (void)cudaEventDestroy(event);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string_view name() const override { return "nccl"; }
  bool device_buffers() const override { return true; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle stream) override {
    RETURN_IF_ERROR(CheckAllReduceArgs(send, recv, dtype));
    RETURN_IF_ERROR(CheckBuffers("AllReduce", send, recv));
    const size_t n = send.size() / DTypeSize(dtype);
    if (n == 0) return Usable();  // every rank sees the same size: all skip together
    // Run calls it with mu_ held.
    const auto enqueue = [&](cudaStream_t s, absl::string_view what)
                             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      if (dtype == DType::kF32) {
        return Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return ncclAllReduce(send.data(), recv.data(), n, ncclFloat32, ncclSum, comm_, s);
        });
      }
      // bf16: sum in fp32, round once (NCCL's bf16 sum would round at every hop).
      Scratch scratch(resources_.pool->get(), s);
      ASSIGN_OR_RETURN(float* acc, scratch.Allocate(n));
      EXPERTMESH_CUDA_RETURN_IF_ERROR(
          LaunchBf16ToF32(reinterpret_cast<const uint16_t*>(send.data()), acc, n, s));
      RETURN_IF_ERROR(Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return ncclAllReduce(acc, acc, n, ncclFloat32, ncclSum, comm_, s);
      }));
      EXPERTMESH_CUDA_RETURN_IF_ERROR(
          LaunchF32ToBf16(acc, reinterpret_cast<uint16_t*>(recv.data()), n, s));
      return absl::OkStatus();
    };
    return Run("AllReduce", stream, enqueue);
  }

  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle stream) override {
    RETURN_IF_ERROR(CheckAllGatherArgs(world_size_, send, recv, dtype));
    RETURN_IF_ERROR(CheckBuffers("AllGather", send, recv));
    if (send.empty()) return Usable();
    return Run("AllGather", stream,
               [&](cudaStream_t s, absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                 return Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                   return ncclAllGather(send.data(), recv.data(), send.size(), ncclUint8, comm_, s);
                 });
               });
  }

  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle stream) override {
    RETURN_IF_ERROR(CheckReduceScatterArgs(world_size_, send, recv, dtype));
    RETURN_IF_ERROR(CheckBuffers("ReduceScatter", send, recv));
    const size_t n = recv.size() / DTypeSize(dtype);
    if (n == 0) return Usable();
    // Run calls it with mu_ held.
    const auto enqueue = [&](cudaStream_t s, absl::string_view what)
                             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      if (dtype == DType::kF32) {
        return Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return ncclReduceScatter(send.data(), recv.data(), n, ncclFloat32, ncclSum, comm_, s);
        });
      }
      const size_t total = n * static_cast<size_t>(world_size_);
      Scratch scratch(resources_.pool->get(), s);
      ASSIGN_OR_RETURN(float* acc, scratch.Allocate(total));
      EXPERTMESH_CUDA_RETURN_IF_ERROR(
          LaunchBf16ToF32(reinterpret_cast<const uint16_t*>(send.data()), acc, total, s));
      // In place: NCCL's recvbuff == sendbuff + rank * recvcount form.
      float* mine = acc + static_cast<size_t>(rank_) * n;
      RETURN_IF_ERROR(Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return ncclReduceScatter(acc, mine, n, ncclFloat32, ncclSum, comm_, s);
      }));
      EXPERTMESH_CUDA_RETURN_IF_ERROR(
          LaunchF32ToBf16(mine, reinterpret_cast<uint16_t*>(recv.data()), n, s));
      return absl::OkStatus();
    };
    return Run("ReduceScatter", stream, enqueue);
  }

  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle stream) override {
    RETURN_IF_ERROR(CheckAllToAllArgs(world_size_, send, send_counts, recv, recv_counts, dtype));
    const size_t elem = DTypeSize(dtype);
    std::vector<size_t> send_offset(world_size_ + 1, 0), recv_offset(world_size_ + 1, 0);
    for (int p = 0; p < world_size_; ++p) {
      send_offset[p + 1] = send_offset[p] + static_cast<size_t>(send_counts[p]) * elem;
      recv_offset[p + 1] = recv_offset[p] + static_cast<size_t>(recv_counts[p]) * elem;
    }
    RETURN_IF_ERROR(
        CheckBuffers("AllToAll", send.first(send_offset.back()), recv.first(recv_offset.back())));
    // Point-to-point: a rank that exchanges nothing with anyone has nothing to enqueue, and its
    // peers post nothing for it either (send_counts[q] on p == recv_counts[p] on q).
    if (send_offset.back() == 0 && recv_offset.back() == 0) return Usable();
    // Run calls it with mu_ held.
    const auto enqueue = [&](cudaStream_t s, absl::string_view what)
                             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      const size_t self_bytes = send_offset[rank_ + 1] - send_offset[rank_];
      if (self_bytes > 0) {
        EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(recv.data() + recv_offset[rank_],
                                                        send.data() + send_offset[rank_],
                                                        self_bytes, cudaMemcpyDeviceToDevice, s));
      }
      bool peers = false;
      for (int p = 0; p < world_size_; ++p) {
        if (p != rank_ && (send_counts[p] > 0 || recv_counts[p] > 0)) peers = true;
      }
      if (!peers) return absl::OkStatus();
      return Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        for (int p = 0; p < world_size_; ++p) {
          if (p == rank_) continue;
          const size_t out = send_offset[p + 1] - send_offset[p];
          const size_t in = recv_offset[p + 1] - recv_offset[p];
          if (out > 0) {
            const ncclResult_t r =
                ncclSend(send.data() + send_offset[p], out, ncclUint8, p, comm_, s);
            if (r != ncclSuccess) return r;
          }
          if (in > 0) {
            const ncclResult_t r =
                ncclRecv(recv.data() + recv_offset[p], in, ncclUint8, p, comm_, s);
            if (r != ncclSuccess) return r;
          }
        }
        return ncclSuccess;
      });
    };
    return Run("AllToAll", stream, enqueue);
  }

  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root,
                         StreamHandle stream) override {
    RETURN_IF_ERROR(CheckBroadcastArgs(world_size_, data, dtype, root));
    RETURN_IF_ERROR(CheckBuffers("Broadcast", data, {}));
    if (data.empty()) return Usable();
    return Run("Broadcast", stream,
               [&](cudaStream_t s, absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                 return Group(what, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                   return ncclBroadcast(data.data(), data.data(), data.size(), ncclUint8, root,
                                        comm_, s);
                 });
               });
  }

  // Host bytes (the step plan) travel over the host communicator: no kernel launch, no device
  // staging, and the follower waits for the next step on the CPU rather than in a GPU kernel.
  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    RETURN_IF_ERROR(Usable());
    return latch_.Record(host_.BroadcastBytes(bytes, root));
  }

  absl::Status Barrier() override {
    RETURN_IF_ERROR(Usable());
    return latch_.Record(host_.Barrier());
  }

 private:
  struct Pending {
    cudaEvent_t event;
    std::string what;
    absl::Time enqueued;
  };

  std::string What(absl::string_view op) const {
    return absl::StrCat("nccl rank ", rank_, ": ", op);
  }

  // OK while neither this thread nor the watchdog saw a failure.
  absl::Status Usable() {
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    absl::Status aborted;
    {
      absl::MutexLock lock(&mu_);
      aborted = abort_status_;
    }
    if (aborted.ok()) return absl::OkStatus();
    return latch_.Record(aborted);
  }

  absl::Status CheckBuffers(absl::string_view op, std::span<const std::byte> send,
                            std::span<const std::byte> recv) {
    const std::string what = What(op);
    RETURN_IF_ERROR(CheckDeviceMemory(what, "send", send.data(), send.size(), device_));
    return CheckDeviceMemory(what, "recv", recv.data(), recv.size(), device_);
  }

  // Aborts the NCCL communicator (its kernels exit, peers time out or see the error) and
  // remembers why; every later call fails with that status.
  void AbortLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (comm_ != nullptr) {
      (void)ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    if (abort_status_.ok()) abort_status_ = std::move(status);
    for (Pending& p : pending_) free_events_.push_back(p.event);
    pending_.clear();
  }

  // A failure after the argument checks leaves the peers waiting for this rank: it always
  // breaks the group.
  absl::Status Break(absl::Status status) {
    if (!Breaks(status.code())) status = absl::InternalError(status.ToString());
    {
      absl::MutexLock lock(&mu_);
      AbortLocked(status);
    }
    return latch_.Record(status);
  }

  // Runs one operation: `enqueue(stream, what)` puts everything on the stream (under mu_, so the
  // watchdog cannot abort in the middle), then either waits for it (null stream) or hands it to
  // the watchdog.
  template <typename Enqueue>
  absl::Status Run(absl::string_view op, StreamHandle stream, Enqueue&& enqueue) {
    RETURN_IF_ERROR(Usable());
    const std::string what = What(op);
    if (const cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) {
      return Break(CudaError(e, what));
    }
    const bool own = stream.ptr == nullptr;
    cudaStream_t s = own ? resources_.stream.get() : static_cast<cudaStream_t>(stream.ptr);
    deadline_ = absl::Now() + timeout_;
    absl::Status enqueued;
    {
      absl::MutexLock lock(&mu_);
      if (comm_ == nullptr) {
        enqueued = abort_status_;
      } else {
        enqueued = enqueue(s, what);
        if (enqueued.ok() && own) {
          if (const cudaError_t e = cudaEventRecord(resources_.done.get(), s); e != cudaSuccess) {
            enqueued = CudaError(e, what);
          }
        }
      }
    }
    if (!enqueued.ok()) return Break(enqueued);
    if (own) return AwaitDone(what);
    return Track(what, s);
  }

  // ncclGroupStart; body (the NCCL calls); ncclGroupEnd; and, as the communicator is
  // non-blocking, the wait until NCCL has enqueued the group's kernels.
  template <typename Body>
  absl::Status Group(absl::string_view what, Body&& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ncclResult_t result = ncclGroupStart();
    if (result != ncclSuccess) return NcclStatus(result, comm_, what);
    const ncclResult_t in_group = body();
    result = ncclGroupEnd();
    if (in_group != ncclSuccess && in_group != ncclInProgress) {
      return NcclStatus(in_group, comm_, what);
    }
    Backoff backoff;
    while (result == ncclInProgress) {
      if (absl::Now() > deadline_) {
        return absl::DeadlineExceededError(
            absl::StrCat(what, ": NCCL did not enqueue the operation within ", FormatTimeout()));
      }
      backoff.Wait();
      if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) result = ncclInternalError;
    }
    if (result != ncclSuccess) return NcclStatus(result, comm_, what);
    return absl::OkStatus();
  }

  // Waits for the own stream's event, watching NCCL's asynchronous error state and the deadline.
  absl::Status AwaitDone(absl::string_view what) {
    Backoff backoff;
    while (true) {
      const cudaError_t e = cudaEventQuery(resources_.done.get());
      if (e == cudaSuccess) return absl::OkStatus();
      if (e != cudaErrorNotReady) return Break(CudaError(e, what));
      absl::Status failed;
      {
        absl::MutexLock lock(&mu_);
        if (comm_ == nullptr) {
          failed = abort_status_;
        } else if (ncclResult_t state = ncclSuccess;
                   ncclCommGetAsyncError(comm_, &state) != ncclSuccess ||
                   (state != ncclSuccess && state != ncclInProgress)) {
          failed = NcclStatus(state == ncclSuccess ? ncclInternalError : state, comm_,
                              absl::StrCat(what, ": a peer failed"));
        }
      }
      if (!failed.ok()) return Break(failed);
      if (absl::Now() > deadline_) {
        return Break(
            absl::DeadlineExceededError(absl::StrCat(what, ": not complete after ", FormatTimeout(),
                                                     "; a peer is gone or did not take part")));
      }
      backoff.Wait();
    }
  }

  // Hands enqueued work on a caller's stream to the watchdog (not work recorded into a graph:
  // it runs only when the graph is launched).
  absl::Status Track(absl::string_view what, cudaStream_t s) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (const cudaError_t e = cudaStreamIsCapturing(s, &capture); e != cudaSuccess) {
      return Break(CudaError(e, what));
    }
    if (capture != cudaStreamCaptureStatusNone) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    if (comm_ == nullptr) return abort_status_;
    cudaEvent_t event = nullptr;
    if (!free_events_.empty()) {
      event = free_events_.back();
      free_events_.pop_back();
    } else if (const cudaError_t e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
               e != cudaSuccess) {
      const absl::Status status = CudaError(e, what);
      AbortLocked(status);
      return status;
    }
    if (const cudaError_t e = cudaEventRecord(event, s); e != cudaSuccess) {
      free_events_.push_back(event);
      const absl::Status status = CudaError(e, what);
      AbortLocked(status);
      return status;
    }
    pending_.push_back({event, std::string(what), absl::Now()});
    if (!watchdog_.joinable()) watchdog_ = std::thread([this] { Watch(); });
    return absl::OkStatus();
  }

  // The watchdog: follows enqueued work on callers' streams until it completes.
  void Watch() {
    (void)cudaSetDevice(device_);
    // A graph capture in global mode on another thread would otherwise make this thread's
    // event queries invalidate it.
    cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
    (void)cudaThreadExchangeStreamCaptureMode(&relaxed);
    absl::MutexLock lock(&mu_);
    while (!stopping_) {
      const absl::Duration period =
          pending_.empty() ? absl::Milliseconds(50) : absl::Milliseconds(1);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), period);
      if (stopping_) break;
      while (!pending_.empty()) {
        const cudaError_t e = cudaEventQuery(pending_.front().event);
        if (e == cudaErrorNotReady) break;
        Pending done = std::move(pending_.front());
        pending_.pop_front();
        free_events_.push_back(done.event);
        if (e != cudaSuccess) {
          AbortLocked(CudaError(e, done.what));
          break;
        }
      }
      if (pending_.empty() || comm_ == nullptr) continue;
      const Pending& oldest = pending_.front();
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
      if (state != ncclSuccess && state != ncclInProgress) {
        AbortLocked(NcclStatus(state, comm_, absl::StrCat(oldest.what, ": a peer failed")));
      } else if (absl::Now() - oldest.enqueued > timeout_) {
        AbortLocked(absl::DeadlineExceededError(
            absl::StrCat(oldest.what, ": not complete after ", FormatTimeout(),
                         "; a peer is gone or did not take part (aborted by the watchdog)")));
      }
    }
  }

  // Whether the own stream and every tracked event finish before `deadline` without an error.
  bool IdleLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Backoff backoff;
    while (true) {
      bool busy = cudaStreamQuery(resources_.stream.get()) == cudaErrorNotReady;
      for (const Pending& p : pending_) busy = busy || cudaEventQuery(p.event) == cudaErrorNotReady;
      if (!busy) return true;
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess ||
          (state != ncclSuccess && state != ncclInProgress)) {
        return false;
      }
      if (absl::Now() > deadline) return false;
      backoff.Wait();
    }
  }

  std::string FormatTimeout() const { return absl::FormatDuration(timeout_); }

  const int rank_;
  const int world_size_;
  const int device_;
  const absl::Duration timeout_;
  Communicator& host_;
  DeviceResources resources_;
  // The owner thread's state.
  ErrorLatch latch_;
  absl::Time deadline_;  // of the operation in progress

  // Shared with the watchdog: the NCCL handle (null once aborted) and the work it follows.
  absl::Mutex mu_;
  ncclComm_t comm_ ABSL_GUARDED_BY(mu_);
  absl::Status abort_status_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<cudaEvent_t> free_events_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watchdog_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const NcclOptions& options,
                                                                     Communicator& host) {
  const int rank = host.rank();
  const int world = host.world_size();
  const std::string who = absl::StrCat("nccl rank ", rank);
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": timeout must be positive"));
  }

  // This rank's device first, then an agreement that every rank can go on, so that a rank
  // without a GPU fails the whole group at once instead of leaving it waiting in NCCL's init.
  absl::StatusOr<DeviceResources> resources = PrepareDevice(options.device);
  ncclUniqueId id{};
  absl::Status local = resources.status();
  if (local.ok() && rank == 0) {
    if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      local = NcclStatus(r, nullptr, "ncclGetUniqueId");
    }
  }
  const uint8_t mine = local.ok() ? 1 : 0;
  std::vector<uint8_t> ready(world, 0);
  RETURN_IF_ERROR(host.AllGather(std::as_bytes(std::span<const uint8_t>(&mine, 1)),
                                 std::as_writable_bytes(std::span<uint8_t>(ready)), DType::kU8));
  if (!local.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": device ", options.device, ": ", local.message()));
  }
  std::vector<int> failed;
  for (int r = 0; r < world; ++r) {
    if (ready[r] == 0) failed.push_back(r);
  }
  if (!failed.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        who, ": rank(s) ", absl::StrJoin(failed, ", "),
        " cannot use their CUDA device (see their errors); the NCCL group is not formed"));
  }

  // The leader's id reaches the others over the host communicator.
  std::string id_bytes = rank == 0 ? std::string(id.internal, sizeof(id.internal)) : "";
  RETURN_IF_ERROR(host.BroadcastBytes(id_bytes, 0));
  if (id_bytes.size() != sizeof(id.internal)) {
    return absl::InternalError(absl::StrCat(who, ": the leader's NCCL id has ", id_bytes.size(),
                                            " bytes, expected ", sizeof(id.internal)));
  }
  std::memcpy(id.internal, id_bytes.data(), sizeof(id.internal));

  // Non-blocking init: the wait for the other ranks is ours to bound.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t result = ncclCommInitRankConfig(&comm, world, id, rank, &config);
  const absl::Time deadline = absl::Now() + options.timeout;
  Backoff backoff;
  while (result == ncclInProgress) {
    if (absl::Now() > deadline) {
      (void)ncclCommAbort(comm);
      return absl::DeadlineExceededError(
          absl::StrCat(who, ": the NCCL group of ", world, " ranks did not form within ",
                       absl::FormatDuration(options.timeout), " (a rank did not join)"));
    }
    backoff.Wait();
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) result = ncclInternalError;
  }
  if (result != ncclSuccess) {
    absl::Status status = NcclStatus(result, comm, absl::StrCat(who, ": ncclCommInitRankConfig"));
    if (comm != nullptr) (void)ncclCommAbort(comm);
    return status;
  }
  return std::make_unique<NcclCommunicator>(comm, rank, world, options, host,
                                            *std::move(resources));
}

}  // namespace expertmesh::comm
