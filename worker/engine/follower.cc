#include "worker/engine/follower.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/engine.h"
#include "worker/engine/step_sync.h"

namespace expertmesh::engine {

absl::Status SendGeometry(comm::Communicator& comm, int32_t num_blocks, int32_t block_size) {
  return PublishToGroup(comm, EncodeGeometry({num_blocks, block_size}));
}

absl::Status SendStop(comm::Communicator& comm) { return PublishToGroup(comm, EncodeStop()); }

absl::Status SendHeartbeat(comm::Communicator& comm) {
  return PublishToGroup(comm, EncodeHeartbeat());
}

absl::Status RunFollower(kernels::Backend& backend, models::Model& model, comm::Communicator& comm,
                         FollowerStats* stats) {
  ASSIGN_OR_RETURN(StepMessage first, ReceiveFromLeader(comm));
  if (first.kind == StepMessage::Kind::kStop) return absl::OkStatus();
  if (first.kind != StepMessage::Kind::kGeometry) {
    return absl::InternalError("follower: the leader's first message is not the KV geometry");
  }
  ASSIGN_OR_RETURN(models::KvCacheTensors kv,
                   models::AllocateKvCache(backend, model.kv_cache_spec(),
                                           first.geometry.num_blocks, first.geometry.block_size));
  while (true) {
    ASSIGN_OR_RETURN(StepMessage msg, ReceiveFromLeader(comm));
    if (msg.kind == StepMessage::Kind::kStop) return absl::OkStatus();
    if (msg.kind == StepMessage::Kind::kHeartbeat) continue;
    if (msg.kind != StepMessage::Kind::kStep) {
      return absl::InternalError("follower: unexpected message from the leader");
    }
    RETURN_IF_ERROR(CopyKvBlocks(backend, kv, msg.copies));
    // The logits stay where they were computed: only the leader samples.
    absl::Status status = model.ForwardOnBackend(msg.batch, kv).status();
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("follower step ", stats ? stats->steps : 0,
                                                      ": ", status.message()));
    }
    RETURN_IF_ERROR(backend.Synchronize());
    if (stats != nullptr) ++stats->steps;
  }
}

}  // namespace expertmesh::engine
