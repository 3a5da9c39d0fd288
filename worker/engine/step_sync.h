// The leader's step plan, as the other ranks of a worker group receive it.
//
// Rank 0 owns the scheduler; before each forward pass it broadcasts what the step does to the
// KV cache and the batch layout (token ids, positions, block tables, slot mapping, logit rows)
// with one variable-length broadcast. Every rank then copies the same KV blocks in its own
// cache shard and runs the same forward pass, meeting in the same collectives. A "stop"
// message ends the followers' loop; a "geometry" message at start-up tells them how many KV
// blocks to allocate, so every rank's block ids mean the same slots.
//
// Wire format (host-endian int32 words; all ranks of a group run the same build on the same
// kind of machine): [kind, ...] — see step_sync.cc.
#ifndef EXPERTMESH_WORKER_ENGINE_STEP_SYNC_H_
#define EXPERTMESH_WORKER_ENGINE_STEP_SYNC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/models/model.h"

namespace expertmesh::engine {

struct KvGeometry {
  int32_t num_blocks = 0;
  int32_t block_size = 0;
};

struct StepMessage {
  enum class Kind : int32_t {
    kStep = 1,
    kStop = 2,
    kGeometry = 3,
    kHeartbeat = 4
  } kind = Kind::kStep;
  KvGeometry geometry;                  // kGeometry
  std::vector<kv::KvBlockCopy> copies;  // kStep
  models::ForwardBatch batch;           // kStep
};

std::string EncodeStep(const std::vector<kv::KvBlockCopy>& copies,
                       const models::ForwardBatch& batch);
std::string EncodeStop();
// Sent by an idle leader so the others' waits never reach the collective timeout.
std::string EncodeHeartbeat();
std::string EncodeGeometry(const KvGeometry& geometry);
// InvalidArgument (naming the field) for a truncated or inconsistent message.
absl::StatusOr<StepMessage> DecodeStepMessage(const std::string& bytes);

// Root side: broadcasts `bytes` from rank 0.
absl::Status PublishToGroup(comm::Communicator& comm, std::string bytes);
// Follower side: the next message from rank 0.
absl::StatusOr<StepMessage> ReceiveFromLeader(comm::Communicator& comm);

// Copies whole KV blocks (copy-on-write) in every layer: bit-exact data movement.
absl::Status CopyKvBlocks(kernels::Backend& backend, models::KvCacheTensors& kv,
                          const std::vector<kv::KvBlockCopy>& copies);

}  // namespace expertmesh::engine

#endif  // EXPERTMESH_WORKER_ENGINE_STEP_SYNC_H_
