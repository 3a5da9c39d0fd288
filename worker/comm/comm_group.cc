#include "worker/comm/comm_group.h"

#include "absl/strings/str_cat.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/rendezvous_client.h"
#include "worker/comm/rendezvous_server.h"
#include "worker/comm/single_communicator.h"

namespace expertmesh::comm {
namespace {

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

CommGroup::~CommGroup() = default;

absl::StatusOr<std::unique_ptr<CommGroup>> CommGroup::Join(const JoinOptions& options) {
  const GroupConfig& config = options.group;
  std::unique_ptr<CommGroup> group(new CommGroup());
  if (config.world_size == 1) {
    group->comm_ = CreateSingleCommunicator();
    return group;
  }
  std::string target = HostPort(config.leader_host, config.leader_port);
  // Both live only for the join: destroying the server closes the rendezvous port.
  std::unique_ptr<RendezvousServer> server;
  if (config.rank == 0) {
    absl::StatusOr<std::unique_ptr<RendezvousServer>> started =
        RendezvousServer::Start(options.listen_host, config.leader_port, options.token);
    if (!started.ok()) return started.status();
    server = *std::move(started);
    group->rendezvous_port_ = server->port();
    if (options.on_leader_listening) options.on_leader_listening(server->port());
    // The leader reaches its own server over loopback unless it listens on one address only.
    bool wildcard = options.listen_host == "0.0.0.0" || options.listen_host == "[::]" ||
                    options.listen_host == "::";
    target = HostPort(wildcard ? "127.0.0.1" : options.listen_host, server->port());
  }
  RendezvousClient client(target, options.timeout, options.token);
  GlooRendezvousStore store(client, "gloo", options.timeout);
  GlooOptions gloo{.rank = config.rank,
                   .world_size = config.world_size,
                   .hostname = config.local_host,
                   .timeout = options.timeout};
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateGlooCommunicator(gloo, store);
  if (!comm.ok()) return comm.status();
  // A rank returns from connecting once its own pairs are up, while others may still be
  // reading addresses from the store: only after this barrier has every rank finished with it.
  if (absl::Status s = (*comm)->Barrier(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("after connecting the group: ", s.message()));
  }
  group->comm_ = *std::move(comm);
  return group;
}

}  // namespace expertmesh::comm
