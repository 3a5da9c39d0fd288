// One rank of a multi-process test group (multiprocess_test.cc starts 2-4 of these). The group
// comes from the environment (EXPERTMESH_* or LWS_*), exactly as a worker finds it. The leader
// prints "PORT <n>" once its rendezvous server listens. Every collective is checked against a
// reference computed locally from the same deterministic inputs.
// After joining it prints "TRANSPORT <communicator name> local_ranks <n>: <reason>".
// Test knobs: EXPERTMESH_TEST_EXIT_AT=<k> makes this rank _exit(3) once it has completed k
// collectives (its peers are then inside the next one, waiting for it); EXPERTMESH_TEST_HANG_AT=<k>
// makes it print "HANGING" there and sleep until killed; EXPERTMESH_TEST_TIMEOUT_MS bounds every
// wait; EXPERTMESH_COMM_TRANSPORT picks the transport as for a worker. Exit codes: 0 all good,
// 1 wrong result, 2 join failed, 3 injected exit, 4 a peer failure (UNAVAILABLE /
// DEADLINE_EXCEEDED), 5 any other error.
#include <unistd.h>
#include <csignal>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/dtype.h"
#include "worker/comm/comm_group.h"
#include "worker/comm/group_config.h"

namespace expertmesh::comm {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int value = fallback;
  if (v != nullptr && !absl::SimpleAtoi(v, &value)) return fallback;
  return value;
}

float Input(int rank, size_t i) { return static_cast<float>((rank * 37 + i * 11) % 101) - 50.0f; }

int64_t Count(int src, int dst) { return (src + 2 * dst) % 3; }  // includes zeros
int32_t Value(int src, int dst, int64_t i) { return src * 10000 + dst * 100 + i; }

class Checker {
 public:
  Checker(Communicator& comm, int exit_at, int hang_at)
      : comm_(comm), exit_at_(exit_at), hang_at_(hang_at) {}

  // Returns the exit code.
  int Run() {
    int world = comm_.world_size(), rank = comm_.rank();
    for (int round = 0; round < 3; ++round) {
      // AllReduce f32: small integers, so the sum is exact in any order.
      std::vector<float> v(1000);
      for (size_t i = 0; i < v.size(); ++i) v[i] = Input(rank, i + round);
      if (int rc = Call(comm_.AllReduce(In(v), Out(v), DType::kF32))) return rc;
      for (size_t i = 0; i < v.size(); ++i) {
        float want = 0;
        for (int r = 0; r < world; ++r) want += Input(r, i + round);
        if (v[i] != want) return Wrong("AllReduce", i);
      }
      // AllGather.
      std::vector<int32_t> mine(5, rank * 7 + round), all(5 * world);
      if (int rc = Call(comm_.AllGather(In(mine), Out(all), DType::kI32))) return rc;
      for (int r = 0; r < world; ++r) {
        for (int i = 0; i < 5; ++i) {
          if (all[r * 5 + i] != r * 7 + round) return Wrong("AllGather", r * 5 + i);
        }
      }
      // Uneven all-to-all.
      std::vector<int32_t> send, recv, want;
      std::vector<int64_t> send_counts, recv_counts;
      for (int p = 0; p < world; ++p) {
        send_counts.push_back(Count(rank, p));
        recv_counts.push_back(Count(p, rank));
        for (int64_t i = 0; i < Count(rank, p); ++i) send.push_back(Value(rank, p, i));
        for (int64_t i = 0; i < Count(p, rank); ++i) want.push_back(Value(p, rank, i));
      }
      recv.resize(want.size());
      if (int rc =
              Call(comm_.AllToAll(In(send), send_counts, Out(recv), recv_counts, DType::kI32))) {
        return rc;
      }
      if (recv != want) return Wrong("AllToAll", 0);
      // The leader's step plan.
      std::string plan = rank == 0 ? "step " + std::to_string(round) + std::string(3000, 'p') : "";
      if (int rc = Call(comm_.BroadcastBytes(plan, 0))) return rc;
      if (plan != "step " + std::to_string(round) + std::string(3000, 'p')) {
        return Wrong("BroadcastBytes", 0);
      }
      if (int rc = Call(comm_.Barrier())) return rc;
      if (int rc = MoreCollectives(round)) return rc;
    }
    return 0;
  }

  // bf16 reductions, ReduceScatter, Broadcast, and messages of several MiB (more than one
  // chunk of the shared-memory transport). Small integers: every sum is exact in any order.
  int MoreCollectives(int round) {
    int world = comm_.world_size(), rank = comm_.rank();
    std::vector<uint16_t> h(3001);
    for (size_t i = 0; i < h.size(); ++i) h[i] = FloatToBf16(Input(rank, i + round));
    if (int rc = Call(comm_.AllReduce(In(h), Out(h), DType::kBF16))) return rc;
    for (size_t i = 0; i < h.size(); ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += Input(r, i + round);
      if (Bf16ToFloat(h[i]) != want) return Wrong("AllReduce bf16", i);
    }
    const size_t chunk = 777;
    std::vector<float> rs_in(chunk * world), rs_out(chunk);
    for (size_t i = 0; i < rs_in.size(); ++i) rs_in[i] = Input(rank, i);
    if (int rc = Call(comm_.ReduceScatter(In(rs_in), Out(rs_out), DType::kF32))) return rc;
    for (size_t i = 0; i < chunk; ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += Input(r, rank * chunk + i);
      if (rs_out[i] != want) return Wrong("ReduceScatter f32", i);
    }
    std::vector<uint16_t> rsh_in(chunk * world), rsh_out(chunk);
    for (size_t i = 0; i < rsh_in.size(); ++i) rsh_in[i] = FloatToBf16(Input(rank, i));
    if (int rc = Call(comm_.ReduceScatter(In(rsh_in), Out(rsh_out), DType::kBF16))) return rc;
    for (size_t i = 0; i < chunk; ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += Input(r, rank * chunk + i);
      if (Bf16ToFloat(rsh_out[i]) != want) return Wrong("ReduceScatter bf16", i);
    }
    const int root = round % world;
    std::vector<int32_t> b(2049);
    for (size_t i = 0; i < b.size(); ++i) b[i] = rank == root ? Value(root, round, i) : -1;
    if (int rc = Call(comm_.Broadcast(Out(b), DType::kI32, root))) return rc;
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] != Value(root, round, i)) return Wrong("Broadcast", i);
    }
    // 3 MiB: three rounds of a 1 MiB chunk.
    std::vector<float> big(3 << 18);
    for (size_t i = 0; i < big.size(); ++i) big[i] = Input(rank, i);
    if (int rc = Call(comm_.AllReduce(In(big), Out(big), DType::kF32))) return rc;
    for (size_t i = 0; i < big.size(); ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += Input(r, i);
      if (big[i] != want) return Wrong("AllReduce 3 MiB", i);
    }
    std::vector<int32_t> part(1 << 19, rank + round), gathered(part.size() * world);
    if (int rc = Call(comm_.AllGather(In(part), Out(gathered), DType::kI32))) return rc;
    for (size_t i = 0; i < gathered.size(); ++i) {
      if (gathered[i] != static_cast<int32_t>(i / part.size()) + round) {
        return Wrong("AllGather 2 MiB", i);
      }
    }
    return 0;
  }

 private:
  template <typename T>
  static std::span<const std::byte> In(const std::vector<T>& v) {
    return std::as_bytes(std::span<const T>(v));
  }
  template <typename T>
  static std::span<std::byte> Out(std::vector<T>& v) {
    return std::as_writable_bytes(std::span<T>(v));
  }

  // Called after each collective; the exit knob fires before the next one starts.
  int Call(const absl::Status& s) {
    if (!s.ok()) {
      std::printf("COMM_ERROR rank %d: %s\n", comm_.rank(), s.ToString().c_str());
      std::fflush(stdout);
      return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ? 4 : 5;
    }
    if (++calls_ == exit_at_) {
      std::printf("EXITING rank %d before collective %d\n", comm_.rank(), calls_);
      std::fflush(stdout);
      _exit(3);
    }
    if (calls_ == hang_at_) {
      std::printf("HANGING rank %d before collective %d\n", comm_.rank(), calls_);
      std::fflush(stdout);
      while (true) pause();
    }
    return 0;
  }

  int Wrong(const char* op, size_t i) {
    std::printf("WRONG rank %d: %s at %zu\n", comm_.rank(), op, i);
    std::fflush(stdout);
    return 1;
  }

  Communicator& comm_;
  int exit_at_;
  int hang_at_;
  int calls_ = 0;
};

int Main() {
  absl::StatusOr<GroupConfig> config = ResolveGroupConfig({}, ProcessEnv());
  if (!config.ok()) {
    std::printf("CONFIG_ERROR %s\n", config.status().ToString().c_str());
    return 2;
  }
  JoinOptions options;
  options.group = *config;
  options.listen_host = "127.0.0.1";
  options.timeout = absl::Milliseconds(EnvInt("EXPERTMESH_TEST_TIMEOUT_MS", 20000));
  if (const char* transport = std::getenv(kCommTransportEnv); transport != nullptr) {
    absl::StatusOr<CommTransport> parsed = ParseCommTransport(transport);
    if (!parsed.ok()) {
      std::printf("CONFIG_ERROR %s\n", parsed.status().ToString().c_str());
      return 2;
    }
    options.transport = *parsed;
  }
  options.on_leader_listening = [](int port) {
    std::printf("PORT %d\n", port);
    std::fflush(stdout);
  };
  absl::StatusOr<std::unique_ptr<CommGroup>> group = CommGroup::Join(options);
  if (!group.ok()) {
    std::printf("JOIN_ERROR rank %d: %s\n", config->rank, group.status().ToString().c_str());
    return 2;
  }
  std::printf("TRANSPORT %s local_ranks %d: %s\n", std::string((*group)->comm().name()).c_str(),
              (*group)->local_ranks(), (*group)->transport_reason().c_str());
  std::fflush(stdout);
  int rc = Checker((*group)->comm(), EnvInt("EXPERTMESH_TEST_EXIT_AT", -1),
                   EnvInt("EXPERTMESH_TEST_HANG_AT", -1))
               .Run();
  std::printf("DONE rank %d rc %d\n", config->rank, rc);
  std::fflush(stdout);
  return rc;  // the group is torn down normally, also after a failure
}

}  // namespace
}  // namespace expertmesh::comm

int main() {
  // As expertmesh-worker does: a peer that died must surface as an error from the collective
  // (Gloo writes to its sockets without MSG_NOSIGNAL), not kill this rank with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  return expertmesh::comm::Main();
}
