#include "tests/worker/comm/comm_test_util.h"

#include <future>
#include <thread>

#include "gloo/rendezvous/hash_store.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/comm/gloo_communicator.h"

namespace expertmesh::comm::testing {

std::string TransportName(Transport transport) {
  switch (transport) {
    case Transport::kFake:
      return "fake";
    case Transport::kGlooHashStore:
      return "gloo_hashstore";
    case Transport::kGlooGrpc:
      return "gloo_grpc";
  }
  return "unknown";
}

std::vector<absl::Status> RunOnRanks(int world_size,
                                     const std::function<absl::Status(int rank)>& fn) {
  std::vector<absl::Status> results(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] { results[r] = fn(r); });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

absl::StatusOr<ThreadGroup> MakeThreadGroup(Transport transport, int world_size,
                                            absl::Duration timeout) {
  ThreadGroup group;
  if (transport == Transport::kFake) {
    group.comms = CreateFakeGroup(world_size, timeout);
    return group;
  }
  std::vector<absl::Status> results;
  if (transport == Transport::kGlooHashStore) {
    gloo::rendezvous::HashStore store;
    group.comms.resize(world_size);
    results = RunOnRanks(world_size, [&](int r) -> absl::Status {
      GlooOptions options{
          .rank = r, .world_size = world_size, .hostname = "127.0.0.1", .timeout = timeout};
      absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateGlooCommunicator(options, store);
      if (!comm.ok()) return comm.status();
      group.comms[r] = *std::move(comm);
      return absl::OkStatus();
    });
  } else {
    group.groups.resize(world_size);
    std::promise<int> port_promise;
    bool port_sent = false;  // touched by rank 0's thread only
    std::shared_future<int> port = port_promise.get_future().share();
    results = RunOnRanks(world_size, [&](int r) -> absl::Status {
      JoinOptions options;
      options.group = GroupConfig{.rank = r,
                                  .world_size = world_size,
                                  .leader_host = "127.0.0.1",
                                  .leader_port = r == 0 ? 0 : port.get(),
                                  .local_host = "127.0.0.1"};
      options.listen_host = "127.0.0.1";
      options.timeout = timeout;
      if (r == 0) {
        options.on_leader_listening = [&](int p) {
          port_sent = true;
          port_promise.set_value(p);
        };
      }
      absl::StatusOr<std::unique_ptr<CommGroup>> joined = CommGroup::Join(options);
      if (!joined.ok()) {
        if (r == 0 && !port_sent) port_promise.set_value(-1);
        return joined.status();
      }
      group.groups[r] = *std::move(joined);
      return absl::OkStatus();
    });
  }
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return group;
}

}  // namespace expertmesh::comm::testing
