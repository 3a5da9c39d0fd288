#include "worker/comm/shm_communicator.h"

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/comm/comm_util.h"
#include "worker/comm/futex.h"
#include "worker/comm/shm_reduce.h"

namespace expertmesh::comm {
namespace {

using Op = Collective;

// Round counters wrap after 2^32 rounds; compare as a signed distance.
bool Reached(uint32_t posted, uint32_t target) {
  return static_cast<int32_t>(posted - target) >= 0;
}

// Polls of a peer's word with a pause instruction between them (a few microseconds: a peer
// that is about to arrive) before the wait yields the core between polls.
constexpr uint32_t kPausePolls = 128;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

ShmRoundMeta Meta(Op op, DType dtype, uint32_t round, int root, uint64_t total,
                  uint64_t extra = 0) {
  return ShmRoundMeta{.op = static_cast<uint32_t>(op),
                      .dtype = static_cast<uint32_t>(dtype),
                      .round = round,
                      .root = root,
                      .total = total,
                      .extra = extra};
}

class ShmCommunicator final : public Communicator {
 public:
  ShmCommunicator(std::unique_ptr<ShmSegment> segment, const ShmOptions& options)
      : seg_(std::move(segment)),
        rank_(seg_->rank()),
        world_(seg_->world_size()),
        chunk_(seg_->chunk_bytes()),
        // Per-destination part of a chunk (ReduceScatter, AllToAll): 64-byte aligned, so every
        // part starts on a cache line and holds whole elements of any dtype.
        part_(chunk_ / world_ / 64 * 64),
        options_(options),
        sources_(world_) {}

  // Tells the peers this rank is gone: one waiting for it fails now instead of at its timeout.
  ~ShmCommunicator() override {
    seg_->control(rank_).state.store(static_cast<uint32_t>(ShmRankState::kLeft),
                                     std::memory_order_seq_cst);
    WakeAll();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string_view name() const override { return "shm"; }

  absl::Status AllReduce(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllReduceArgs(send, recv, dtype); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    const size_t bytes = send.size();
    uint32_t round = 0;
    for (size_t off = 0; off < bytes; off += chunk_, ++round) {
      const size_t len = std::min(chunk_, bytes - off);
      absl::Status s = Round(
          Meta(Op::kAllReduce, dtype, round, 0, bytes),
          [&](std::byte* mine) { std::memcpy(mine, send.data() + off, len); },
          [&] { Reduce(0, len, dtype, recv.data() + off); });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status AllGather(std::span<const std::byte> send, std::span<std::byte> recv, DType dtype,
                         StreamHandle) override {
    if (absl::Status s = CheckAllGatherArgs(world_, send, recv, dtype); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    const size_t bytes = send.size();
    uint32_t round = 0;
    for (size_t off = 0; off < bytes; off += chunk_, ++round) {
      const size_t len = std::min(chunk_, bytes - off);
      absl::Status s = Round(
          Meta(Op::kAllGather, dtype, round, 0, bytes),
          [&](std::byte* mine) { std::memcpy(mine, send.data() + off, len); },
          [&] {
            for (int q = 0; q < world_; ++q) {
              std::memcpy(recv.data() + q * bytes + off, Theirs(q), len);
            }
          });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Each round carries one part of every destination's chunk; each rank sums its own part.
  absl::Status ReduceScatter(std::span<const std::byte> send, std::span<std::byte> recv,
                             DType dtype, StreamHandle) override {
    if (absl::Status s = CheckReduceScatterArgs(world_, send, recv, dtype); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    const size_t bytes = recv.size();
    uint32_t round = 0;
    for (size_t off = 0; off < bytes; off += part_, ++round) {
      const size_t len = std::min(part_, bytes - off);
      absl::Status s = Round(
          Meta(Op::kReduceScatter, dtype, round, 0, bytes),
          [&](std::byte* mine) {
            for (int p = 0; p < world_; ++p) {
              std::memcpy(mine + p * part_, send.data() + p * bytes + off, len);
            }
          },
          [&] { Reduce(rank_ * part_, len, dtype, recv.data() + off); });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Each round carries up to one part per destination. Ranks do not know each other's counts,
  // so round 0 also tells everyone the most bytes each rank sends to one peer, which fixes the
  // number of rounds for all.
  absl::Status AllToAll(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                        std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                        DType dtype, StreamHandle) override {
    if (absl::Status s = CheckAllToAllArgs(world_, send, send_counts, recv, recv_counts, dtype);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    const size_t elem = DTypeSize(dtype);
    std::vector<size_t> send_off(world_ + 1, 0), recv_off(world_ + 1, 0);
    size_t max_send = 0;
    for (int p = 0; p < world_; ++p) {
      send_off[p + 1] = send_off[p] + send_counts[p] * elem;
      recv_off[p + 1] = recv_off[p] + recv_counts[p] * elem;
      max_send = std::max<size_t>(max_send, send_counts[p] * elem);
    }
    uint32_t rounds = 1;
    for (uint32_t round = 0; round < rounds; ++round) {
      const size_t begin = size_t{round} * part_;
      absl::Status s = Round(
          Meta(Op::kAllToAll, dtype, round, 0, send_off[world_], max_send),
          [&](std::byte* mine) {
            for (int p = 0; p < world_; ++p) {
              const size_t have = send_off[p + 1] - send_off[p];
              if (have <= begin) continue;
              std::memcpy(mine + p * part_, send.data() + send_off[p] + begin,
                          std::min(part_, have - begin));
            }
          },
          [&] {
            if (round == 0) {
              for (int q = 0; q < world_; ++q) {
                const uint64_t most = TheirMeta(q).extra;
                rounds =
                    std::max<uint32_t>(rounds, static_cast<uint32_t>((most + part_ - 1) / part_));
              }
            }
            for (int q = 0; q < world_; ++q) {
              const size_t want = recv_off[q + 1] - recv_off[q];
              if (want <= begin) continue;
              std::memcpy(recv.data() + recv_off[q] + begin, Theirs(q) + rank_ * part_,
                          std::min(part_, want - begin));
            }
          });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Broadcast(std::span<std::byte> data, DType dtype, int root, StreamHandle) override {
    if (absl::Status s = CheckBroadcastArgs(world_, data, dtype, root); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    const size_t bytes = data.size();
    uint32_t round = 0;
    for (size_t off = 0; off < bytes; off += chunk_, ++round) {
      const size_t len = std::min(chunk_, bytes - off);
      absl::Status s = Round(
          Meta(Op::kBroadcast, dtype, round, root, bytes),
          [&](std::byte* mine) {
            if (rank_ == root) std::memcpy(mine, data.data() + off, len);
          },
          [&] {
            if (rank_ != root) std::memcpy(data.data() + off, Theirs(root), len);
          });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Round 0 carries the root's size with the first chunk: the step plan of a decode step
  // (a few hundred bytes) takes one round, where a size-then-data broadcast would take two.
  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    if (absl::Status s = CheckRoot("BroadcastBytes", world_, root); !s.ok()) return s;
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    uint64_t total = rank_ == root ? bytes.size() : 0;
    uint32_t rounds = 1;
    for (uint32_t round = 0; round < rounds; ++round) {
      const size_t begin = size_t{round} * chunk_;
      absl::Status s = Round(
          Meta(Op::kBroadcastBytes, DType::kU8, round, root, total),
          [&](std::byte* mine) {
            if (rank_ == root && total > begin) {
              std::memcpy(mine, bytes.data() + begin, std::min<size_t>(chunk_, total - begin));
            }
          },
          [&] {
            if (round == 0) {
              total = TheirMeta(root).total;
              rounds = std::max<uint32_t>(1, static_cast<uint32_t>((total + chunk_ - 1) / chunk_));
              if (rank_ != root) bytes.resize(total);
            }
            if (rank_ != root && total > begin) {
              std::memcpy(bytes.data() + begin, Theirs(root),
                          std::min<size_t>(chunk_, total - begin));
            }
          });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Barrier() override {
    if (absl::Status s = latch_.Check(); !s.ok()) return s;
    return Round(
        Meta(Op::kBarrier, DType::kU8, 0, 0, 0), [](std::byte*) {}, [] {});
  }

 private:
  int Half() const { return static_cast<int>(seq_ & 1); }
  const std::byte* Theirs(int q) const { return seg_->data(q, Half()); }
  const ShmRoundMeta& TheirMeta(int q) const { return seg_->meta(q, Half()); }

  // One round: `fill` writes this rank's contribution into its half, the ranks synchronise,
  // `consume` reads the peers' halves (valid until every peer has published the next round).
  template <typename Fill, typename Consume>
  absl::Status Round(const ShmRoundMeta& meta, Fill&& fill, Consume&& consume) {
    fill(seg_->data(rank_, Half()));
    seg_->meta(rank_, Half()) = meta;
    if (absl::Status s = Exchange(); !s.ok()) return Fail(std::move(s));
    if (absl::Status s = CheckAgreement(); !s.ok()) return Fail(std::move(s));
    consume();
    ++seq_;
    return absl::OkStatus();
  }

  // Publishes round seq_ and waits until every peer has published it.
  absl::Status Exchange() {
    const uint32_t target = seq_ + 1;
    ShmRankControl& me = seg_->control(rank_);
    // seq_cst store, then seq_cst load of waiters: pairs with the sleeper's increment of
    // waiters before its seq_cst load of posted (WaitFor), so either the sleeper sees the new
    // round and does not sleep, or this rank sees the sleeper and wakes it.
    me.posted.store(target, std::memory_order_seq_cst);
    if (me.waiters.load(std::memory_order_seq_cst) != 0) FutexWakeAll(&me.posted);
    const absl::Time now = absl::Now();
    const absl::Time spin_until = now + options_.spin;
    const absl::Time deadline = now + options_.timeout;
    for (int q = 0; q < world_; ++q) {
      if (q == rank_) continue;
      if (absl::Status s = WaitFor(q, target, spin_until, deadline); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status WaitFor(int q, uint32_t target, absl::Time spin_until, absl::Time deadline) {
    ShmRankControl& peer = seg_->control(q);
    for (uint32_t i = 0;; ++i) {
      if (Reached(peer.posted.load(std::memory_order_acquire), target)) return absl::OkStatus();
      if (i % 64 == 63) {
        if (Aborted()) return AbortStatus();
        if (absl::Now() >= spin_until) break;
      }
      if (i < kPausePolls) {
        CpuRelax();
      } else {
        sched_yield();
      }
    }
    while (true) {
      if (Aborted()) return AbortStatus();
      peer.waiters.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t seen = peer.posted.load(std::memory_order_seq_cst);
      if (!Reached(seen, target)) {
        FutexWait(&peer.posted, seen, std::min(options_.liveness_interval, deadline - absl::Now()));
      }
      peer.waiters.fetch_sub(1, std::memory_order_relaxed);
      if (Reached(peer.posted.load(std::memory_order_acquire), target)) return absl::OkStatus();
      if (Aborted()) return AbortStatus();
      if (peer.state.load(std::memory_order_acquire) ==
          static_cast<uint32_t>(ShmRankState::kLeft)) {
        return absl::UnavailableError(absl::StrCat("shm rank ", rank_, ": rank ", q,
                                                   " left the group (closed its communicator)"));
      }
      if (!seg_->Alive(q)) {
        return absl::UnavailableError(
            absl::StrCat("shm rank ", rank_, ": rank ", q, " disappeared (its process exited)"));
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "shm rank ", rank_, ": rank ", q, " did not take part in the collective within ",
            absl::FormatDuration(options_.timeout)));
      }
    }
  }

  // INTERNAL unless every rank runs the same collective (op, dtype, root, round; sizes where
  // they must be equal everywhere).
  absl::Status CheckAgreement() const {
    const ShmRoundMeta& mine = seg_->meta(rank_, Half());
    const bool sizes_equal = mine.op != static_cast<uint32_t>(Op::kAllToAll) &&
                             mine.op != static_cast<uint32_t>(Op::kBroadcastBytes);
    for (int q = 0; q < world_; ++q) {
      const ShmRoundMeta& theirs = TheirMeta(q);
      if (theirs.op == mine.op && theirs.dtype == mine.dtype && theirs.round == mine.round &&
          theirs.root == mine.root && (!sizes_equal || theirs.total == mine.total)) {
        continue;
      }
      return absl::InternalError(
          absl::StrCat("shm rank ", rank_, ": ranks disagree about the collective: rank ", rank_,
                       " called ", Describe(mine), ", rank ", q, " called ", Describe(theirs)));
    }
    return absl::OkStatus();
  }

  static std::string Describe(const ShmRoundMeta& m) {
    std::string_view dtype = DTypeName(static_cast<DType>(m.dtype));
    return absl::StrCat(CollectiveName(static_cast<Op>(m.op)), " (", m.total, " bytes, ",
                        absl::string_view(dtype.data(), dtype.size()), ", root ", m.root,
                        ", round ", m.round, ")");
  }

  // out[0, len) = sum over ranks q, in rank order, of the `len` bytes at `offset` of q's half.
  void Reduce(size_t offset, size_t len, DType dtype, std::byte* out) {
    for (int q = 0; q < world_; ++q) sources_[q] = Theirs(q) + offset;
    SumInRankOrder(sources_.data(), world_, len / DTypeSize(dtype), dtype, out);
  }

  bool Aborted() const { return seg_->header().abort_code.load(std::memory_order_acquire) != 0; }

  absl::Status AbortStatus() const {
    const ShmHeader& h = seg_->header();
    const auto code = static_cast<absl::StatusCode>(h.abort_code.load(std::memory_order_acquire));
    return absl::Status(
        code, absl::StrCat("shm rank ", rank_, ": rank ", h.abort_rank, " broke the group: ",
                           absl::string_view(h.abort_reason,
                                             strnlen(h.abort_reason, sizeof(h.abort_reason)))));
  }

  // Records the first failure of the group in the segment (unless a peer did already), wakes
  // every sleeper, and breaks this communicator.
  absl::Status Fail(absl::Status status) {
    ShmHeader& h = seg_->header();
    uint32_t unclaimed = 0;
    if (!Aborted() && h.abort_claim.compare_exchange_strong(unclaimed, 1)) {
      h.abort_rank = rank_;
      const absl::string_view message = status.message();
      const size_t n = std::min(message.size(), sizeof(h.abort_reason) - 1);
      std::memcpy(h.abort_reason, message.data(), n);
      h.abort_reason[n] = '\0';
      h.abort_code.store(static_cast<uint32_t>(status.code()), std::memory_order_release);
    }
    WakeAll();
    return latch_.Record(std::move(status));
  }

  void WakeAll() {
    for (int q = 0; q < world_; ++q) FutexWakeAll(&seg_->control(q).posted);
  }

  std::unique_ptr<ShmSegment> seg_;
  const int rank_;
  const int world_;
  const size_t chunk_;
  const size_t part_;
  const ShmOptions options_;
  std::vector<const std::byte*> sources_;  // Reduce's per-rank pointers
  uint32_t seq_ = 0;                       // rounds this rank has completed
  ErrorLatch latch_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateShmCommunicator(
    std::unique_ptr<ShmSegment> segment, const ShmOptions& options) {
  if (segment == nullptr) return absl::InvalidArgumentError("shm: no segment");
  if (options.timeout <= absl::ZeroDuration() ||
      options.liveness_interval <= absl::ZeroDuration() || options.spin < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("shm: timeout and liveness interval must be positive");
  }
  const absl::Time deadline = absl::Now() + options.timeout;
  const int world = segment->world_size();
  while (true) {
    std::vector<int> missing;
    for (int q = 0; q < world; ++q) {
      const uint32_t state = segment->control(q).state.load(std::memory_order_acquire);
      if (state == static_cast<uint32_t>(ShmRankState::kLeft)) {
        return absl::UnavailableError(absl::StrCat("shm rank ", segment->rank(), ": rank ", q,
                                                   " left before the group formed"));
      }
      if (state != static_cast<uint32_t>(ShmRankState::kAttached)) missing.push_back(q);
    }
    if (missing.empty()) break;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("shm rank ", segment->rank(), ": rank(s) ", absl::StrJoin(missing, ","),
                       " did not attach within ", absl::FormatDuration(options.timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Every rank holds the memory now: the name is no longer needed, and without it a crash of
  // any rank from here on leaves nothing behind in /dev/shm.
  if (segment->rank() == 0) segment->Unlink();
  return std::make_unique<ShmCommunicator>(std::move(segment), options);
}

}  // namespace expertmesh::comm
