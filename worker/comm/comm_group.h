// Forming a worker group: the leader (rank 0) starts the rendezvous server, every rank
// (the leader too) publishes and reads addresses through it, and the Gloo mesh is connected.
// Once every rank is connected the store has done its work (the NCCL unique id, later, goes
// over the group's communicator): the leader closes the rendezvous port, so nothing can register
// into a formed group or read its addresses afterwards.
//
// Transport: when every rank can open the leader's shared-memory segment (all on one host, see
// shm_bootstrap.h) the group's collectives go through shared memory, else over Gloo's TCP.
// JoinOptions::transport (expertmesh-worker --comm-transport, EXPERTMESH_COMM_TRANSPORT) forces
// Gloo for comparison and debugging, or insists on shared memory.
#ifndef EXPERTMESH_WORKER_COMM_COMM_GROUP_H_
#define EXPERTMESH_WORKER_COMM_COMM_GROUP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/internal_token.h"
#include "worker/comm/communicator.h"
#include "worker/comm/group_config.h"

namespace expertmesh::comm {

// auto: shared memory when every rank is on one host, else Gloo. gloo: always Gloo. shm: shared
// memory or fail the join.
enum class CommTransport { kAuto, kGloo, kShm };
inline constexpr char kCommTransportEnv[] = "EXPERTMESH_COMM_TRANSPORT";
// "auto", "gloo" or "shm" (INVALID_ARGUMENT otherwise).
absl::StatusOr<CommTransport> ParseCommTransport(absl::string_view name);

struct JoinOptions {
  GroupConfig group;
  // Where the leader's rendezvous server listens (its port is group.leader_port, 0 = free):
  // the worker's --host. The other ranks must reach it at group.leader_host.
  std::string listen_host = "127.0.0.1";
  // The group's credential: the rendezvous server asks every call for it, every rank sends it.
  InternalToken token;
  // Bound on the whole join and on every later collective.
  absl::Duration timeout = absl::Seconds(60);
  // Leader only: called with the bound port once the server listens, before waiting for the
  // other ranks (a launcher passes it on to them).
  std::function<void(int port)> on_leader_listening;
  CommTransport transport = CommTransport::kAuto;
};

class CommGroup {
 public:
  // A group of one gets the `single` communicator and no rendezvous. Returns once every rank
  // has joined (a barrier after the mesh is connected), with the rendezvous port closed.
  // Errors: those of RendezvousServer::Start and CreateGlooCommunicator (DEADLINE_EXCEEDED
  // names the rank that did not join; UNAUTHENTICATED: a rank with another token; ALREADY_EXISTS:
  // two ranks with one rank number).
  static absl::StatusOr<std::unique_ptr<CommGroup>> Join(const JoinOptions& options);
  ~CommGroup();

  // The group's communicator: shared memory or Gloo (see transport_reason()).
  Communicator& comm() { return shm_ ? *shm_ : *mesh_; }
  // One line for the startup log: the transport chosen and why.
  const std::string& transport_reason() const { return transport_reason_; }
  // How many ranks of this group share this process's host (as far as the group could tell:
  // those that opened the leader's shared memory); 1 for a group of one or when unknown.
  int local_ranks() const { return local_ranks_; }
  // The port the leader's rendezvous server listened on while the group formed (closed now);
  // 0 on other ranks.
  int rendezvous_port() const { return rendezvous_port_; }

 private:
  CommGroup() = default;

  // What the group formed over: Gloo (single for a group of one). It stays connected, idle,
  // when shared memory takes over.
  std::unique_ptr<Communicator> mesh_;
  std::unique_ptr<Communicator> shm_;
  std::string transport_reason_;
  int local_ranks_ = 1;
  int rendezvous_port_ = 0;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_COMM_GROUP_H_
