// Forming a worker group: the leader (rank 0) starts the rendezvous server, every rank
// (the leader too, over loopback) publishes and reads addresses through it, and the Gloo mesh
// is connected. The server keeps running for the group's lifetime: later exchanges (the NCCL
// unique id) use the same store through rendezvous().
#ifndef EXPERTMESH_WORKER_COMM_COMM_GROUP_H_
#define EXPERTMESH_WORKER_COMM_COMM_GROUP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"
#include "worker/comm/group_config.h"
#include "worker/comm/rendezvous_client.h"
#include "worker/comm/rendezvous_server.h"

namespace expertmesh::comm {

struct JoinOptions {
  GroupConfig group;
  // Where the leader's rendezvous server listens (its port is group.leader_port, 0 = free).
  std::string listen_host = "0.0.0.0";
  // Bound on the whole join and on every later collective.
  absl::Duration timeout = absl::Seconds(60);
  // Leader only: called with the bound port once the server listens, before waiting for the
  // other ranks (a launcher passes it on to them).
  std::function<void(int port)> on_leader_listening;
};

class CommGroup {
 public:
  // A group of one gets the `single` communicator and no rendezvous. Errors: those of
  // RendezvousServer::Start and CreateGlooCommunicator (DEADLINE_EXCEEDED names the rank that
  // did not join).
  static absl::StatusOr<std::unique_ptr<CommGroup>> Join(const JoinOptions& options);
  ~CommGroup();

  Communicator& comm() { return *comm_; }
  // The group's store; nullptr in a group of one.
  RendezvousClient* rendezvous() { return client_.get(); }
  // The leader's bound rendezvous port; 0 on other ranks.
  int rendezvous_port() const { return server_ ? server_->port() : 0; }

 private:
  CommGroup() = default;

  // Destroyed in reverse: communicator, then client, then server.
  std::unique_ptr<RendezvousServer> server_;
  std::unique_ptr<RendezvousClient> client_;
  std::unique_ptr<Communicator> comm_;
};

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_COMM_GROUP_H_
