#include "tests/worker/comm/comm_test_util.h"

#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gloo/rendezvous/hash_store.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/shm_communicator.h"
#include "worker/comm/shm_segment.h"

namespace expertmesh::comm::testing {

std::string TransportName(Transport transport) {
  switch (transport) {
    case Transport::kFake:
      return "fake";
    case Transport::kGlooHashStore:
      return "gloo_hashstore";
    case Transport::kGlooGrpc:
      return "gloo_grpc";
    case Transport::kShm:
      return "shm";
    case Transport::kShmJoin:
      return "shm_join";
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
  if (transport == Transport::kShm) {
    absl::StatusOr<std::unique_ptr<ShmSegment>> leader =
        ShmSegment::Create(world_size, kTestShmChunkBytes);
    if (!leader.ok()) return leader.status();
    const ShmOffer offer = (*leader)->offer();
    group.comms.resize(world_size);
    results = RunOnRanks(world_size, [&](int r) -> absl::Status {
      std::unique_ptr<ShmSegment> segment;
      if (r == 0) {
        segment = *std::move(leader);
      } else {
        absl::StatusOr<std::unique_ptr<ShmSegment>> opened = ShmSegment::Open(offer, r);
        if (!opened.ok()) return opened.status();
        segment = *std::move(opened);
      }
      absl::StatusOr<std::unique_ptr<Communicator>> comm =
          CreateShmCommunicator(std::move(segment), {.timeout = timeout});
      if (!comm.ok()) return comm.status();
      group.comms[r] = *std::move(comm);
      return absl::OkStatus();
    });
  } else if (transport == Transport::kGlooHashStore) {
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
      options.transport =
          transport == Transport::kGlooGrpc ? CommTransport::kGloo : CommTransport::kAuto;
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
  // The transport each kind promises, so that a test cannot pass on the wrong one.
  const std::string_view want = transport == Transport::kFake ? "fake"
                                : transport == Transport::kShm || transport == Transport::kShmJoin
                                    ? "shm"
                                    : "gloo";
  for (int r = 0; r < world_size; ++r) {
    if (group.rank(r).name() != want) {
      return absl::InternalError(absl::StrCat(TransportName(transport), ": rank ", r, " got ",
                                              std::string(group.rank(r).name()), ", not ",
                                              std::string(want)));
    }
  }
  return group;
}

}  // namespace expertmesh::comm::testing
