#include "worker/comm/comm_group.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/rendezvous_client.h"
#include "worker/comm/rendezvous_server.h"
#include "worker/comm/shm_bootstrap.h"
#include "worker/comm/single_communicator.h"

namespace expertmesh::comm {
namespace {

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::StatusOr<CommTransport> ParseCommTransport(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "auto" || lower.empty()) return CommTransport::kAuto;
  if (lower == "gloo") return CommTransport::kGloo;
  if (lower == "shm") return CommTransport::kShm;
  return absl::InvalidArgumentError(
      absl::StrCat("comm transport '", name, "' is not one of auto, gloo, shm"));
}

CommGroup::~CommGroup() = default;

absl::StatusOr<std::unique_ptr<CommGroup>> CommGroup::Join(const JoinOptions& options) {
  const GroupConfig& config = options.group;
  std::unique_ptr<CommGroup> group(new CommGroup());
  if (config.world_size == 1) {
    group->mesh_ = CreateSingleCommunicator();
    group->transport_reason_ = "single: a group of one";
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
  group->mesh_ = *std::move(comm);
  absl::StatusOr<ShmProbeResult> probe =
      ProbeSharedMemory(*group->mesh_, {.use_shm = options.transport != CommTransport::kGloo,
                                        .require_shm = options.transport == CommTransport::kShm,
                                        .shm = {.timeout = options.timeout}});
  if (!probe.ok()) {
    return absl::Status(probe.status().code(),
                        absl::StrCat("choosing the group's transport: ", probe.status().message()));
  }
  group->shm_ = std::move(probe->comm);
  group->transport_reason_ = std::move(probe->reason);
  group->local_ranks_ = probe->local_ranks;
  return group;
}

}  // namespace expertmesh::comm
