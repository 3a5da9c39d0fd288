// Latency and bandwidth of a group's collectives on one host: two ranks (threads of this
// process, as in the comm tests) over Gloo's TCP transport on loopback and over shared memory,
// for the messages a forward pass sends (a decode step's all-reduce of one hidden vector, the
// step plan) and larger ones (prefill). Prints a table; nothing is asserted.
//
//   build/bin/comm_latency_bench [WORLD=2] [TRANSPORTS=gloo,shm]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gloo/rendezvous/hash_store.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/shm_communicator.h"
#include "worker/comm/shm_segment.h"

namespace expertmesh::comm {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<absl::Status> OnRanks(int world, const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back([&, r] { results[r] = fn(r); });
  for (std::thread& t : threads) t.join();
  return results;
}

std::vector<std::unique_ptr<Communicator>> MakeGroup(const std::string& transport, int world) {
  std::vector<std::unique_ptr<Communicator>> comms(world);
  const absl::Duration timeout = absl::Seconds(60);
  if (transport == "gloo") {
    gloo::rendezvous::HashStore store;
    OnRanks(world, [&](int r) -> absl::Status {
      auto comm =
          CreateGlooCommunicator({.rank = r, .world_size = world, .timeout = timeout}, store);
      if (!comm.ok()) return comm.status();
      comms[r] = *std::move(comm);
      return absl::OkStatus();
    });
  } else {
    auto leader = ShmSegment::Create(world, kShmDefaultChunkBytes);
    if (!leader.ok()) return {};
    const ShmOffer offer = (*leader)->offer();
    OnRanks(world, [&](int r) -> absl::Status {
      std::unique_ptr<ShmSegment> segment;
      if (r == 0) {
        segment = *std::move(leader);
      } else {
        auto opened = ShmSegment::Open(offer, r);
        if (!opened.ok()) return opened.status();
        segment = *std::move(opened);
      }
      auto comm = CreateShmCommunicator(std::move(segment), {.timeout = timeout});
      if (!comm.ok()) return comm.status();
      comms[r] = *std::move(comm);
      return absl::OkStatus();
    });
  }
  for (auto& c : comms) {
    if (c == nullptr) return {};
  }
  return comms;
}

// Microseconds per call of `op` on every rank (rank 0's clock), after a warm-up.
double TimeOp(std::vector<std::unique_ptr<Communicator>>& comms, int iterations,
              const std::function<absl::Status(Communicator&, int rank)>& op) {
  double us = 0;
  std::vector<absl::Status> results = OnRanks(comms.size(), [&](int r) -> absl::Status {
    Communicator& comm = *comms[r];
    for (int i = 0; i < 10; ++i) {
      if (absl::Status s = op(comm, r); !s.ok()) return s;
    }
    if (absl::Status s = comm.Barrier(); !s.ok()) return s;
    auto start = Clock::now();
    for (int i = 0; i < iterations; ++i) {
      if (absl::Status s = op(comm, r); !s.ok()) return s;
    }
    if (r == 0) {
      us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iterations;
    }
    return absl::OkStatus();
  });
  for (const absl::Status& s : results) {
    if (!s.ok()) {
      std::fprintf(stderr, "comm_latency_bench: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  return us;
}

}  // namespace
}  // namespace expertmesh::comm

int main(int argc, char** argv) {
  using namespace expertmesh::comm;
  const int world = argc > 1 ? std::atoi(argv[1]) : 2;
  const std::string transports = argc > 2 ? argv[2] : "gloo,shm";
  std::printf("%d ranks as threads of one process, %u cores\n", world,
              std::thread::hardware_concurrency());
  std::printf("| transport | collective | bytes per rank | us per call | GB/s per rank |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const std::string transport : {"gloo", "shm"}) {
    if (transports.find(transport) == std::string::npos) continue;
    std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(transport, world);
    if (comms.empty()) {
      std::fprintf(stderr, "comm_latency_bench: cannot form a %s group\n", transport.c_str());
      return 1;
    }
    // 4 KiB: one bf16 hidden vector of 2048 (a decode step's all-reduce at batch 1).
    for (size_t bytes : {size_t{4} << 10, size_t{64} << 10, size_t{1} << 20, size_t{16} << 20}) {
      std::vector<std::vector<std::byte>> buffers(world, std::vector<std::byte>(bytes));
      const int iterations = static_cast<int>(std::clamp<size_t>((256u << 20) / bytes, 5, 2000));
      double us = TimeOp(comms, iterations, [&](Communicator& comm, int r) {
        return comm.AllReduce(buffers[r], buffers[r], expertmesh::DType::kBF16);
      });
      std::printf("| %s | AllReduce bf16 | %zu | %.1f | %.2f |\n", transport.c_str(), bytes, us,
                  bytes / us / 1e3);
    }
    std::vector<std::string> plans(world, std::string(300, 'p'));
    double us = TimeOp(comms, 2000, [&](Communicator& comm, int r) {
      if (r != 0) plans[r].clear();
      return comm.BroadcastBytes(plans[r], 0);
    });
    std::printf("| %s | BroadcastBytes (step plan) | 300 | %.1f | |\n", transport.c_str(), us);
    us = TimeOp(comms, 2000, [](Communicator& comm, int) { return comm.Barrier(); });
    std::printf("| %s | Barrier | 0 | %.1f | |\n", transport.c_str(), us);
  }
  return 0;
}
