// Where a rank finds its worker group: rank, world size, the leader's rendezvous address and
// this rank's own address. Each field is taken from the first source that sets it:
//   flags  >  EXPERTMESH_* environment  >  Kubernetes LeaderWorkerSet environment.
// Variables read: EXPERTMESH_LEADER (host:port), EXPERTMESH_RANK, EXPERTMESH_WORLD_SIZE,
// EXPERTMESH_HOST, EXPERTMESH_LEADER_PORT (port to pair with LWS_LEADER_ADDRESS, default
// kDefaultRendezvousPort), LWS_LEADER_ADDRESS (a host name, no port), LWS_GROUP_SIZE,
// LWS_WORKER_INDEX, POD_IP (this pod's address, from the downward API), EXPERTMESH_RANKS_PER_POD
// and EXPERTMESH_LOCAL_RANK (several ranks per pod).
#ifndef EXPERTMESH_WORKER_COMM_GROUP_CONFIG_H_
#define EXPERTMESH_WORKER_COMM_GROUP_CONFIG_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace expertmesh::comm {

inline constexpr int kDefaultRendezvousPort = 29400;

struct GroupFlags {
  std::optional<std::string> leader;  // "host:port"; port 0 = the leader picks a free port
  std::optional<int> rank;
  std::optional<int> world_size;
  std::optional<std::string> host;  // this rank's address as its peers reach it
  // Several ranks in one pod (one per GPU): rank and world_size then count pods, and this
  // process is rank pod_rank * ranks_per_pod + local_rank of pods * ranks_per_pod
  // (EXPERTMESH_RANKS_PER_POD, EXPERTMESH_LOCAL_RANK).
  std::optional<int> ranks_per_pod;
  std::optional<int> local_rank;
};

struct GroupConfig {
  int rank = 0;
  int world_size = 1;
  std::string leader_host;  // empty when world_size == 1
  int leader_port = 0;
  std::string local_host;
  // Where each value came from, for the startup log: "rank 1 (EXPERTMESH_RANK), ...".
  std::string source;
};

// Returns the variable's value, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnv();

// INVALID_ARGUMENT naming the flag or variable when a value does not parse, the rank is out
// of range, a group of several ranks has no leader, or a non-leader is given leader port 0.
// Nothing set at all means a group of one.
absl::StatusOr<GroupConfig> ResolveGroupConfig(const GroupFlags& flags, const EnvLookup& env);

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_GROUP_CONFIG_H_
