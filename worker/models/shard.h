// How one rank of a worker group holds its part of the model, and the collectives the forward
// pass meets in.
//
// A group is world = tp x ep ranks; model::ParallelConfig (model/plan) does the rank arithmetic.
//  - Attention and dense MLPs are tensor-parallel over the tp ranks that share an ep index:
//    heads (and the MLP's intermediate dimension) are split, the row-parallel output
//    projection leaves partial sums, and AllReduceTp adds them. The ep replicas of that
//    tp group compute the same thing; there is no tp sub-communicator yet, so AllReduceTp runs
//    over the world with every rank of ep index > 0 contributing zeros (exact: x + 0 = x).
//  - Routed experts are partitioned whole over the ep ranks (experts [ep_rank * E/ep, ...)),
//    and each expert's intermediate dimension is split over tp. Each ep rank takes a share of
//    the step's tokens, routes it, sends every (token, choice) row to the rank that owns the
//    expert (AllToAll with uneven counts), gets the expert outputs back the same way, combines
//    them, and one world AllReduce assembles all shares and the tp partial sums.
//  - Embedding and lm_head are vocab-parallel over the whole world: rank r holds vocabulary
//    rows [r * ceil(V/world), ...); the embedding is an AllReduce of per-rank lookups (one rank
//    contributes each row, the rest zeros), the logits an AllGather of per-rank slices.
// KV heads are split with the query heads; when there are fewer kv heads than tp ranks each
// rank keeps the one its query heads use (replicated). MLA's latent cache is per token, not
// per head, so every rank caches it whole.
//
#ifndef EXPERTMESH_WORKER_MODELS_SHARD_H_
#define EXPERTMESH_WORKER_MODELS_SHARD_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "model/plan/parallel_config.h"
#include "worker/comm/communicator.h"

namespace expertmesh::models {

// The collectives of the forward pass over the group's world communicator (nullptr when the
// group has one rank: every call is then a no-op). Tensors are tensors of `backend` (f32/bf16
// for sums, any dtype for gathers and all-to-all). Where the bytes travel:
//  - CPU backend, host communicator (Gloo, fake): the tensors' memory itself;
//  - device backend, device communicator (NCCL): device pointers, after Synchronize (the
//    communicator completes before returning);
//  - device backend, host communicator: staged through reused host buffers (CopyToHost,
//    collective, CopyFromHost), e.g. two ranks sharing one GPU;
//  - a CPU backend with a device communicator is refused (FailedPrecondition).
class Collectives {
 public:
  Collectives(const model::ParallelConfig& spec, comm::Communicator* world,
              kernels::Backend* backend)
      : spec_(spec), world_(world), backend_(backend) {}

  const model::ParallelConfig& spec() const { return spec_; }
  bool active() const { return world_ != nullptr && spec_.Sharded(); }

  // In place: t = sum over the tp ranks of this rank's ep index (see the file comment).
  absl::Status AllReduceTp(kernels::Tensor& t);
  // In place: t = sum over every rank.
  absl::Status AllReduceWorld(kernels::Tensor& t);
  // recv = concatenation of every rank's send, in world-rank order.
  absl::Status AllGatherWorld(const kernels::Tensor& send, kernels::Tensor& recv);
  // Uneven all-to-all in elements of `dtype` (see Communicator::AllToAll) of backend tensors;
  // every byte of send is sent and every byte of recv received (slice them to the counts).
  absl::Status AllToAllWorld(const kernels::Tensor& send, std::span<const int64_t> send_counts,
                             kernels::Tensor& recv, std::span<const int64_t> recv_counts,
                             DType dtype);
  // The same over host memory (small metadata such as per-expert row counts).
  absl::Status AllToAllHost(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                            std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                            DType dtype);

 private:
  // How backend tensors reach the communicator.
  enum class Route { kDirect, kStageHost };
  absl::StatusOr<Route> TensorRoute();
  // A u8 tensor of the backend over `bytes` bytes (reused between calls).
  absl::StatusOr<kernels::Tensor> DeviceStage(kernels::Tensor& buffer, size_t bytes);

  model::ParallelConfig spec_;
  comm::Communicator* world_;
  kernels::Backend* backend_;
  // Host staging (device backend, host communicator) and device staging (host data, device
  // communicator), grown to the largest collective seen.
  std::vector<std::byte> host_send_, host_recv_;
  kernels::Tensor dev_send_, dev_recv_;
};

}  // namespace expertmesh::models

#endif  // EXPERTMESH_WORKER_MODELS_SHARD_H_
