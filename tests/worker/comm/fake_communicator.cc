#include "tests/worker/comm/fake_communicator.h"

#include <cstring>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/comm/comm_util.h"

namespace expertmesh::comm {
namespace {

using Op = Collective;

// What one rank brings to a collective. Pointers stay valid while the rank is inside the call.
struct Contribution {
  Op op = Op::kBarrier;
  std::span<const std::byte> send;
  size_t recv_bytes = 0;
  DType dtype = DType::kU8;
  int root = 0;
  std::span<const int64_t> send_counts;
  std::span<const int64_t> recv_counts;
  const std::string* bytes = nullptr;
};

// State shared by the ranks. A collective is two phases: after phase 1 every contribution is
// posted and each rank computes its result into private memory; after phase 2 nobody reads
// the others' buffers any more, so results are written out (in-place calls are safe) and the
// slots may be reused.
class Shared {
 public:
  Shared(int world_size, absl::Duration timeout)
      : world_(world_size),
        timeout_(timeout),
        arrived_(world_size, 0),
        left_(world_size, false),
        slots_(world_size) {}

  int world() const { return world_; }
  // Read without mu_ between the two Arrive()s of a collective: every rank has posted (phase 1,
  // whose mu_ hand-over orders the writes before the reads) and none posts again before all
  // have finished reading (phase 2).
  const Contribution& slot(int rank) const ABSL_NO_THREAD_SAFETY_ANALYSIS { return slots_[rank]; }

  void Post(int rank, const Contribution& c) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    slots_[rank] = c;
  }

  // Marks `rank` as arrived at `phase` and waits for every rank to arrive there.
  absl::Status Arrive(int rank, uint64_t phase, absl::string_view what) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    arrived_[rank] = phase;
    cv_.SignalAll();
    const absl::Time deadline = absl::Now() + timeout_;
    std::vector<int> missing;
    while (true) {
      missing.clear();
      for (int r = 0; r < world_; ++r) {
        if (arrived_[r] >= phase) continue;
        if (left_[r]) {
          return absl::UnavailableError(
              absl::StrCat("fake rank ", rank, ": rank ", r, " left the group during ", what));
        }
        missing.push_back(r);
      }
      if (missing.empty()) return absl::OkStatus();
      if (cv_.WaitWithDeadline(&mu_, deadline)) {  // true: timed out
        break;
      }
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "fake rank ", rank, ": ", what, " timed out after ", absl::FormatDuration(timeout_),
        " waiting for rank(s) ", absl::StrJoin(missing, ",")));
  }

  void Leave(int rank) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    left_[rank] = true;
    cv_.SignalAll();
  }

 private:
  const int world_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar cv_;  // signalled when arrived_ or left_ change
  std::vector<uint64_t> arrived_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> left_ ABSL_GUARDED_BY(mu_);
  std::vector<Contribution> slots_ ABSL_GUARDED_BY(mu_);  // written under mu_; see slot()
};

// INTERNAL when the ranks' contributions do not describe one collective.
absl::Status CheckConsistent(const Shared& shared, absl::string_view what) {
  const Contribution& first = shared.slot(0);
  for (int r = 1; r < shared.world(); ++r) {
    const Contribution& c = shared.slot(r);
    if (c.op != first.op) {
      return absl::InternalError(absl::StrCat("fake: ", what, ": rank 0 called ",
                                              CollectiveName(first.op), " but rank ", r, " called ",
                                              CollectiveName(c.op)));
    }
    bool sizes_differ = first.op != Op::kAllToAll && first.op != Op::kBroadcastBytes &&
                        (c.send.size() != first.send.size() || c.recv_bytes != first.recv_bytes);
    if (sizes_differ || c.dtype != first.dtype || c.root != first.root) {
      return absl::InternalError(absl::StrCat("fake: ", what, ": rank ", r,
                                              " disagrees with rank 0 on size, dtype or root"));
    }
  }
  if (first.op == Op::kAllToAll) {
    for (int p = 0; p < shared.world(); ++p) {
      for (int q = 0; q < shared.world(); ++q) {
        if (shared.slot(p).send_counts[q] != shared.slot(q).recv_counts[p]) {
          return absl::InternalError(absl::StrCat(
              "fake: ", what, ": rank ", p, " sends ", shared.slot(p).send_counts[q],
              " elements to rank ", q, " which expects ", shared.slot(q).recv_counts[p]));
        }
      }
    }
  }
  return absl::OkStatus();
}

class FakeCommunicator final : public Communicator {
 public:
  FakeCommunicator(std::shared_ptr<Shared> shared, int rank)
      : shared_(std::move(shared)), rank_(rank) {}
  ~FakeCommunicator() override { shared_->Leave(rank_); }

  int rank() const override { return rank_; }
  int world_size() const override { return shared_->world(); }
  std::string_view name() const override { return "fake"; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllReduceArgs(send, recv, dtype); !s.ok()) return s;
    Contribution c{.op = Op::kAllReduce, .send = send, .recv_bytes = recv.size(), .dtype = dtype};
    return Run(c, recv, [&](std::vector<std::byte>& out) {
      size_t n = send.size() / DTypeSize(dtype);
      std::vector<float> acc(n, 0.0f);
      for (int r = 0; r < world_size(); ++r) {
        AccumulateF32(acc.data(), shared_->slot(r).send.data(), n, dtype);
      }
      out.resize(recv.size());
      StoreFromF32(acc.data(), out.data(), n, dtype);
    });
  }

  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllGatherArgs(world_size(), send, recv, dtype); !s.ok()) return s;
    Contribution c{.op = Op::kAllGather, .send = send, .recv_bytes = recv.size(), .dtype = dtype};
    return Run(c, recv, [&](std::vector<std::byte>& out) {
      out.resize(recv.size());
      for (int r = 0; r < world_size(); ++r) {
        const auto& from = shared_->slot(r).send;
        if (!from.empty()) std::memcpy(out.data() + r * from.size(), from.data(), from.size());
      }
    });
  }

  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle) override {
    if (absl::Status s = CheckReduceScatterArgs(world_size(), send, recv, dtype); !s.ok()) {
      return s;
    }
    Contribution c{
        .op = Op::kReduceScatter, .send = send, .recv_bytes = recv.size(), .dtype = dtype};
    return Run(c, recv, [&](std::vector<std::byte>& out) {
      size_t n = recv.size() / DTypeSize(dtype);
      std::vector<float> acc(n, 0.0f);
      for (int r = 0; r < world_size(); ++r) {
        AccumulateF32(acc.data(), shared_->slot(r).send.data() + rank_ * recv.size(), n, dtype);
      }
      out.resize(recv.size());
      StoreFromF32(acc.data(), out.data(), n, dtype);
    });
  }

  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle) override {
    if (absl::Status s =
            CheckAllToAllArgs(world_size(), send, send_counts, recv, recv_counts, dtype);
        !s.ok()) {
      return s;
    }
    Contribution c{.op = Op::kAllToAll,
                   .send = send,
                   .recv_bytes = recv.size(),
                   .dtype = dtype,
                   .send_counts = send_counts,
                   .recv_counts = recv_counts};
    return Run(c, recv, [&](std::vector<std::byte>& out) {
      size_t elem = DTypeSize(dtype);
      size_t total = 0;
      for (int64_t n : recv_counts) total += n * elem;
      out.resize(total);
      size_t at = 0;
      for (int p = 0; p < world_size(); ++p) {
        const Contribution& from = shared_->slot(p);
        size_t offset = 0;
        for (int q = 0; q < rank_; ++q) offset += from.send_counts[q] * elem;
        size_t bytes = recv_counts[p] * elem;
        if (bytes > 0) std::memcpy(out.data() + at, from.send.data() + offset, bytes);
        at += bytes;
      }
    });
  }

  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root, StreamHandle) override {
    if (absl::Status s = CheckBroadcastArgs(world_size(), data, dtype, root); !s.ok()) return s;
    Contribution c{.op = Op::kBroadcast,
                   .send = data,
                   .recv_bytes = data.size(),
                   .dtype = dtype,
                   .root = root};
    return Run(c, data, [&](std::vector<std::byte>& out) {
      const auto& from = shared_->slot(root).send;
      out.assign(from.begin(), from.end());
    });
  }

  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    if (absl::Status s = CheckRoot("BroadcastBytes", world_size(), root); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    Contribution c{.op = Op::kBroadcastBytes, .root = root, .bytes = &bytes};
    std::string copy;
    absl::Status s = Exchange(c, [&] { copy = *shared_->slot(root).bytes; });
    if (s.ok() && rank_ != root) bytes = std::move(copy);
    return s;
  }

  absl::Status Barrier() override {
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    return Exchange(Contribution{.op = Op::kBarrier}, [] {});
  }

 private:
  // Runs one collective whose result (`compute` fills it) is copied to `recv` at the end.
  template <typename Compute>
  absl::Status Run(const Contribution& c, std::span<std::byte> recv, Compute compute) {
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    std::vector<std::byte> out;
    absl::Status s = Exchange(c, [&] { compute(out); });
    if (s.ok() && !out.empty()) std::memcpy(recv.data(), out.data(), out.size());
    return s;
  }

  // Posts `c`, waits for all ranks, runs `read` (which may read every slot), waits again.
  template <typename Read>
  absl::Status Exchange(const Contribution& c, Read read) {
    uint64_t index = calls_++;
    std::string what = absl::StrCat(CollectiveName(c.op), " #", index);
    shared_->Post(rank_, c);
    if (absl::Status s = shared_->Arrive(rank_, 2 * index + 1, what); !s.ok()) {
      return latch_.Record(s);
    }
    if (absl::Status s = CheckConsistent(*shared_, what); !s.ok()) return latch_.Record(s);
    read();
    return latch_.Record(shared_->Arrive(rank_, 2 * index + 2, what));
  }

  std::shared_ptr<Shared> shared_;
  const int rank_;
  uint64_t calls_ = 0;
  ErrorLatch latch_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> CreateFakeGroup(int world_size, absl::Duration timeout) {
  auto shared = std::make_shared<Shared>(world_size, timeout);
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int r = 0; r < world_size; ++r) {
    ranks.push_back(std::make_unique<FakeCommunicator>(shared, r));
  }
  return ranks;
}

}  // namespace expertmesh::comm
