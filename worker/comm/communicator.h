// Collective communication between the ranks of one worker group (tensor- and expert-parallel
// activations, the leader's step plan). One interface, several transports: `single` (world 1),
// `shm` (shared memory, every rank on one host), `gloo` (TCP, CPU buffers), `nccl` (device
// buffers), and an in-process fake for tests. docs/collectives.md says which a group uses.
//
// Contract shared by every implementation:
// - Threads: a Communicator is NOT thread-safe. One thread at a time issues its calls, and every
//   rank issues the same collectives in the same order with matching sizes (as with NCCL/MPI).
//   rank() and world_size() are constant and may be read from any thread.
// - Buffers: the caller owns every buffer. Sizes are in bytes of the span and must be a whole
//   number of elements of `dtype`. Host communicators complete the operation before returning,
//   so buffers may be reused at once. A device communicator enqueues on `stream` and the
//   buffers must stay valid until the stream passes the operation. Send and receive buffers
//   must not overlap, except where a method says in-place use is allowed.
// - Errors (absl::Status, never an exception or an abort):
//     INVALID_ARGUMENT   sizes, counts, root or dtype wrong on this rank (checked before any
//                        communication, so the communicator stays usable);
//     UNAVAILABLE        a peer disappeared (connection closed or reset);
//     DEADLINE_EXCEEDED  a peer did not take part within the configured timeout;
//     INTERNAL           ranks disagreed about the collective (fake only can detect this).
//   After UNAVAILABLE / DEADLINE_EXCEEDED / INTERNAL the communicator is broken: every later
//   call fails at once with the same code and the first error in its message. The group must
//   be rebuilt (all ranks restart their communicators).
#ifndef EXPERTMESH_WORKER_COMM_COMMUNICATOR_H_
#define EXPERTMESH_WORKER_COMM_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace expertmesh::comm {

// An opaque stream (cudaStream_t for NCCL). Host communicators ignore it.
struct StreamHandle {
  void* ptr = nullptr;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  // This process's rank in [0, world_size()).
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "single", "gloo", "fake", ... for logs.
  virtual std::string_view name() const = 0;
  // Whether the collectives' buffers are device memory (NCCL) rather than host memory. Callers
  // holding tensors of a device backend pass them directly to a device communicator and stage
  // them through host memory for a host one (models::Collectives).
  virtual bool device_buffers() const { return false; }

  // recv = elementwise sum of `send` over all ranks. dtype kF32 or kBF16 (bf16 is summed in
  // fp32 and rounded once to nearest even). send.size() == recv.size(); send.data() ==
  // recv.data() (in-place) is allowed. Every rank receives the identical result.
  virtual absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv,
                                 DType dtype, StreamHandle stream = {}) = 0;

  // recv = concatenation of every rank's `send`, in rank order. Any dtype.
  // recv.size() == world_size() * send.size().
  virtual absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv,
                                 DType dtype, StreamHandle stream = {}) = 0;

  // recv = sum over ranks r of chunk rank() of r's `send` (send is world_size() equal chunks).
  // dtype kF32 or kBF16 (summed in fp32, rounded once). send.size() == world_size() * recv.size().
  virtual absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                                     DType dtype, StreamHandle stream = {}) = 0;

  // Uneven all-to-all (MoE dispatch/combine). send_counts[p] elements go to peer p, taken from
  // `send` in peer order (offsets are prefix sums); recv_counts[p] elements arrive from peer p,
  // placed in `recv` in peer order. Both count vectors have world_size() entries >= 0 (zeros
  // allowed); send_counts[q] on rank p must equal recv_counts[p] on rank q. The buffers must
  // hold at least the summed counts; bytes beyond them are not touched. Any dtype.
  virtual absl::Status AllToAll(std::span<const std::byte> send,
                                std::span<const int64_t> send_counts, std::span<std::byte> recv,
                                std::span<const int64_t> recv_counts, DType dtype,
                                StreamHandle stream = {}) = 0;

  // Copies `root`'s `data` into `data` on every other rank (in place). Same size everywhere.
  virtual absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root,
                                 StreamHandle stream = {}) = 0;

  // Variable-length broadcast from `root` (the leader's serialized step plan): on return,
  // `bytes` on every rank equals `bytes` on root. Non-root inputs are ignored and replaced.
  // Host memory only, also for device communicators.
  virtual absl::Status BroadcastBytes(std::string& bytes, int root) = 0;

  // Returns once every rank has entered the barrier.
  virtual absl::Status Barrier() = 0;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_COMMUNICATOR_H_
