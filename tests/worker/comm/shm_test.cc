// The shared-memory transport's own parts: the segment (offer, cookie, attach, liveness, unlink),
// what only it detects (ranks disagreeing about a collective, a rank that never attaches), and
// the same-host probe that picks it, including the ways it falls back to Gloo. The collectives
// themselves run in collectives_test.cc and fault_test.cc (Transport::kShm, kShmJoin), across
// processes in multiprocess_test.cc.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/comm/comm_test_util.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/comm/shm_bootstrap.h"
#include "worker/comm/shm_communicator.h"
#include "worker/comm/shm_reduce.h"
#include "worker/comm/shm_segment.h"

namespace expertmesh::comm {
namespace {

using ::testing::HasSubstr;
using testing::RunOnRanks;

constexpr absl::Duration kTimeout = absl::Seconds(5);

bool InDevShm(const std::string& name) { return access(("/dev/shm" + name).c_str(), F_OK) == 0; }

std::span<const std::byte> In(const std::vector<float>& v) {
  return std::as_bytes(std::span<const float>(v));
}
std::span<std::byte> Out(std::vector<float>& v) {
  return std::as_writable_bytes(std::span<float>(v));
}

TEST(ShmOfferTest, EncodesAndDecodes) {
  absl::StatusOr<std::unique_ptr<ShmSegment>> segment = ShmSegment::Create(2, 4096);
  ASSERT_TRUE(segment.ok()) << segment.status();
  const ShmOffer& offer = (*segment)->offer();
  EXPECT_THAT(offer.name, ::testing::StartsWith("/expertmesh-"));
  absl::StatusOr<ShmOffer> decoded = ShmOffer::Decode(offer.Encode());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->name, offer.name);
  EXPECT_EQ(decoded->cookie, offer.cookie);
  for (const char* bad : {"", "expertmesh-shm-v1 /x", "expertmesh-shm-v1 x 00",
                          "expertmesh-shm-v1 /a/b 000102030405060708090a0b0c0d0e0f",
                          "expertmesh-shm-v1 /x 000102030405060708090a0b0c0d0e0g"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ShmOffer::Decode(bad).status())) << bad;
  }
}

TEST(ShmSegmentTest, OpenChecksNameCookieAndRank) {
  absl::StatusOr<std::unique_ptr<ShmSegment>> leader = ShmSegment::Create(3, 4096);
  ASSERT_TRUE(leader.ok()) << leader.status();
  ShmOffer offer = (*leader)->offer();

  ShmOffer missing = offer;
  missing.name = "/expertmesh-does-not-exist";
  EXPECT_TRUE(absl::IsNotFound(ShmSegment::Open(missing, 1).status()));

  ShmOffer forged = offer;
  forged.cookie[0] ^= 1;
  absl::Status wrong_cookie = ShmSegment::Open(forged, 1).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(wrong_cookie)) << wrong_cookie;

  EXPECT_TRUE(absl::IsInvalidArgument(ShmSegment::Open(offer, 3).status()));
  EXPECT_TRUE(absl::IsAlreadyExists(ShmSegment::Open(offer, 0).status()));  // the leader's rank
  absl::StatusOr<std::unique_ptr<ShmSegment>> one = ShmSegment::Open(offer, 1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(absl::IsAlreadyExists(ShmSegment::Open(offer, 1).status()));
  EXPECT_EQ((*one)->world_size(), 3);
  EXPECT_EQ((*one)->chunk_bytes(), 4096u);
}

TEST(ShmSegmentTest, CreateRejectsBadLayouts) {
  EXPECT_TRUE(absl::IsInvalidArgument(ShmSegment::Create(0, 4096).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ShmSegment::Create(2, 100).status()));     // not 64-aligned
  EXPECT_TRUE(absl::IsInvalidArgument(ShmSegment::Create(128, 4096).status()));  // < 64 x world
}

TEST(ShmSegmentTest, LivenessFollowsTheHoldersFile) {
  absl::StatusOr<std::unique_ptr<ShmSegment>> leader = ShmSegment::Create(2, 4096);
  ASSERT_TRUE(leader.ok());
  EXPECT_FALSE((*leader)->Alive(1));  // not attached yet
  absl::StatusOr<std::unique_ptr<ShmSegment>> other = ShmSegment::Open((*leader)->offer(), 1);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE((*leader)->Alive(1));
  EXPECT_TRUE((*other)->Alive(0));
  other->reset();  // closes the file: the lock goes, as when a process dies
  EXPECT_FALSE((*leader)->Alive(1));
}

TEST(ShmSegmentTest, CreatorUnlinksTheNameOnDestruction) {
  std::string name;
  {
    absl::StatusOr<std::unique_ptr<ShmSegment>> leader = ShmSegment::Create(2, 4096);
    ASSERT_TRUE(leader.ok());
    name = (*leader)->offer().name;
    EXPECT_TRUE(InDevShm(name));
  }
  EXPECT_FALSE(InDevShm(name));
}

// The name goes as soon as every rank is attached, long before the group ends.
TEST(ShmCommunicatorTest, NameIsUnlinkedOnceAllRanksAttached) {
  absl::StatusOr<std::unique_ptr<ShmSegment>> leader = ShmSegment::Create(2, 4096);
  ASSERT_TRUE(leader.ok());
  const ShmOffer offer = (*leader)->offer();
  std::vector<std::unique_ptr<Communicator>> comms(2);
  std::vector<absl::Status> results = RunOnRanks(2, [&](int r) -> absl::Status {
    std::unique_ptr<ShmSegment> segment;
    if (r == 0) {
      segment = *std::move(leader);
    } else {
      absl::StatusOr<std::unique_ptr<ShmSegment>> opened = ShmSegment::Open(offer, r);
      if (!opened.ok()) return opened.status();
      segment = *std::move(opened);
    }
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateShmCommunicator(std::move(segment), {.timeout = kTimeout});
    if (!comm.ok()) return comm.status();
    comms[r] = *std::move(comm);
    return absl::OkStatus();
  });
  for (const absl::Status& s : results) ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(InDevShm(offer.name));
  results = RunOnRanks(2, [&](int r) { return comms[r]->Barrier(); });
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
}

TEST(ShmCommunicatorTest, RankThatNeverAttachesIsNamed) {
  absl::StatusOr<std::unique_ptr<ShmSegment>> leader = ShmSegment::Create(3, 4096);
  ASSERT_TRUE(leader.ok());
  const std::string name = (*leader)->offer().name;
  absl::StatusOr<std::unique_ptr<ShmSegment>> one = ShmSegment::Open((*leader)->offer(), 1);
  ASSERT_TRUE(one.ok());
  absl::Time start = absl::Now();
  absl::Status s =
      CreateShmCommunicator(*std::move(leader), {.timeout = absl::Milliseconds(300)}).status();
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("rank(s) 2 did not attach"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(InDevShm(name));  // the failed leader's segment unlinked its name
}

TEST(ShmCommunicatorTest, DisagreeingRanksGetInternalOnEveryRank) {
  absl::StatusOr<testing::ThreadGroup> group =
      testing::MakeThreadGroup(testing::Transport::kShm, 2, kTimeout);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<absl::Status> results = RunOnRanks(2, [&](int r) {
    std::vector<float> v(64, 1.0f), all(128);
    if (r == 0) return group->rank(r).AllReduce(In(v), Out(v), DType::kF32);
    return group->rank(r).AllGather(In(v), Out(all), DType::kF32);
  });
  for (const absl::Status& s : results) {
    EXPECT_TRUE(absl::IsInternal(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("disagree"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("AllReduce"));
  }
  // Broken for good, with the same code.
  EXPECT_TRUE(absl::IsInternal(group->rank(0).Barrier()));
}

// A rank that closes its communicator while its peers wait for it: they fail at once with
// UNAVAILABLE, not at their 30 s timeout.
TEST(ShmCommunicatorTest, ALeavingRankFailsItsWaitingPeersAtOnce) {
  absl::StatusOr<testing::ThreadGroup> group =
      testing::MakeThreadGroup(testing::Transport::kShm, 3, absl::Seconds(30));
  ASSERT_TRUE(group.ok()) << group.status();
  absl::Time start = absl::Now();
  std::vector<absl::Status> results = RunOnRanks(3, [&](int r) -> absl::Status {
    if (r == 1) {
      absl::SleepFor(absl::Milliseconds(100));
      group->comms[1].reset();
      return absl::OkStatus();
    }
    return group->rank(r).Barrier();
  });
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  for (int r : {0, 2}) {
    EXPECT_TRUE(absl::IsUnavailable(results[r])) << r << ": " << results[r];
  }
}

// The vectorized sum (and its AVX2 clone, where the CPU has AVX2) against a scalar left-to-right
// sum, bit for bit: several blocks plus a tail, an output at an odd address, NaN and infinity.
TEST(ShmReduceTest, SumsInRankOrderBitExactly) {
  const size_t n = 2500;
  const int ranks = 3;
  std::vector<std::vector<float>> f(ranks, std::vector<float>(n));
  std::vector<std::vector<uint16_t>> h(ranks, std::vector<uint16_t>(n));
  for (int q = 0; q < ranks; ++q) {
    for (size_t i = 0; i < n; ++i) {
      f[q][i] = std::ldexp(static_cast<float>((i * 7919 + q * 104729) % 2001) - 1000.0f,
                           static_cast<int>(i % 9) - 4);
      h[q][i] = FloatToBf16(f[q][i]);
    }
  }
  f[1][17] = std::numeric_limits<float>::quiet_NaN();
  f[2][18] = std::numeric_limits<float>::infinity();
  h[1][19] = 0x7fc1;  // a bf16 NaN
  std::vector<float> want_f(n);
  std::vector<uint16_t> want_h(n);
  for (size_t i = 0; i < n; ++i) {
    float a = f[0][i], b = Bf16ToFloat(h[0][i]);
    for (int q = 1; q < ranks; ++q) {
      a += f[q][i];
      b += Bf16ToFloat(h[q][i]);
    }
    want_f[i] = a;
    want_h[i] = FloatToBf16(b);
  }
  std::vector<const std::byte*> fs, hs;
  for (int q = 0; q < ranks; ++q) {
    fs.push_back(reinterpret_cast<const std::byte*>(f[q].data()));
    hs.push_back(reinterpret_cast<const std::byte*>(h[q].data()));
  }
  std::vector<std::byte> out(n * sizeof(float) + 1);
  SumInRankOrder(fs.data(), ranks, n, DType::kF32, out.data() + 1);
  EXPECT_EQ(std::memcmp(out.data() + 1, want_f.data(), n * sizeof(float)), 0);
  SumInRankOrder(hs.data(), ranks, n, DType::kBF16, out.data() + 1);
  EXPECT_EQ(std::memcmp(out.data() + 1, want_h.data(), n * sizeof(uint16_t)), 0);
}

// A host communicator whose BroadcastBytes hands rank `victim` another offer: as if that rank
// ran where the leader's segment is not visible (another host or container), or met a forger.
class OfferTamperer final : public Communicator {
 public:
  OfferTamperer(std::unique_ptr<Communicator> inner, int victim, bool forge_cookie)
      : inner_(std::move(inner)), victim_(victim), forge_cookie_(forge_cookie) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string_view name() const override { return inner_->name(); }
  absl::Status AllReduce(std::span<const std::byte> s, std::span<std::byte> r, DType d,
                         StreamHandle h) override {
    return inner_->AllReduce(s, r, d, h);
  }
  absl::Status AllGather(std::span<const std::byte> s, std::span<std::byte> r, DType d,
                         StreamHandle h) override {
    return inner_->AllGather(s, r, d, h);
  }
  absl::Status ReduceScatter(std::span<const std::byte> s, std::span<std::byte> r, DType d,
                             StreamHandle h) override {
    return inner_->ReduceScatter(s, r, d, h);
  }
  absl::Status AllToAll(std::span<const std::byte> s, std::span<const int64_t> sc,
                        std::span<std::byte> r, std::span<const int64_t> rc, DType d,
                        StreamHandle h) override {
    return inner_->AllToAll(s, sc, r, rc, d, h);
  }
  absl::Status Broadcast(std::span<std::byte> data, DType d, int root, StreamHandle h) override {
    return inner_->Broadcast(data, d, root, h);
  }
  absl::Status BroadcastBytes(std::string& bytes, int root) override {
    absl::Status s = inner_->BroadcastBytes(bytes, root);
    if (s.ok() && rank() == victim_) {
      absl::StatusOr<ShmOffer> offer = ShmOffer::Decode(bytes);
      if (!offer.ok()) return offer.status();
      if (forge_cookie_) {
        offer->cookie[3] ^= 0x40;
      } else {
        offer->name = "/expertmesh-on-another-host";
      }
      bytes = offer->Encode();
    }
    return s;
  }
  absl::Status Barrier() override { return inner_->Barrier(); }

 private:
  std::unique_ptr<Communicator> inner_;
  int victim_;
  bool forge_cookie_;
};

struct ProbeRun {
  std::vector<absl::StatusOr<ShmProbeResult>> results;
};

// Runs the probe on a fake host group of `world` ranks; options[r] per rank.
ProbeRun Probe(int world, const std::vector<ShmProbeOptions>& options, int victim = -1,
               bool forge_cookie = false) {
  std::vector<std::unique_ptr<Communicator>> hosts = CreateFakeGroup(world, kTimeout);
  if (victim >= 0) {
    for (auto& h : hosts) h = std::make_unique<OfferTamperer>(std::move(h), victim, forge_cookie);
  }
  ProbeRun run;
  for (int r = 0; r < world; ++r) run.results.emplace_back(absl::UnknownError("not run"));
  RunOnRanks(world, [&](int r) {
    run.results[r] = ProbeSharedMemory(*hosts[r], options[r]);
    return absl::OkStatus();
  });
  return run;
}

std::vector<ShmProbeOptions> Same(int world, ShmProbeOptions o = {}) {
  o.shm.timeout = kTimeout;
  return std::vector<ShmProbeOptions>(world, o);
}

TEST(ShmProbeTest, RanksOnOneHostChooseSharedMemory) {
  ProbeRun run = Probe(3, Same(3));
  for (auto& r : run.results) {
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_NE(r->comm, nullptr) << r->reason;
    EXPECT_EQ(r->comm->name(), "shm");
    EXPECT_EQ(r->local_ranks, 3);
    EXPECT_THAT(r->reason, ::testing::StartsWith("shm: all 3 ranks"));
  }
  std::vector<absl::Status> barrier =
      RunOnRanks(3, [&](int r) { return run.results[r]->comm->Barrier(); });
  for (const absl::Status& s : barrier) EXPECT_TRUE(s.ok()) << s;
}

TEST(ShmProbeTest, ARankThatCannotOpenTheSegmentKeepsTheGroupOnGloo) {
  for (bool forge_cookie : {false, true}) {
    SCOPED_TRACE(forge_cookie ? "forged cookie" : "segment not visible");
    ProbeRun run = Probe(3, Same(3), /*victim=*/2, forge_cookie);
    for (int r = 0; r < 3; ++r) {
      ASSERT_TRUE(run.results[r].ok()) << run.results[r].status();
      EXPECT_EQ(run.results[r]->comm, nullptr);
      EXPECT_THAT(run.results[r]->reason, HasSubstr("gloo: 2 of 3 ranks share"));
      EXPECT_THAT(run.results[r]->reason, HasSubstr("rank 2 could not attach"));
      EXPECT_THAT(run.results[r]->reason,
                  HasSubstr(forge_cookie ? "cookie differs" : "No such file"));
      EXPECT_EQ(run.results[r]->local_ranks, r == 2 ? 1 : 2);
    }
  }
}

TEST(ShmProbeTest, OneRankAskingForGlooKeepsTheGroupOnGloo) {
  std::vector<ShmProbeOptions> options = Same(2);
  options[1].use_shm = false;
  ProbeRun run = Probe(2, options);
  for (auto& r : run.results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->comm, nullptr);
    EXPECT_EQ(r->local_ranks, 2);  // known all the same: a CPU group divides the cores
    EXPECT_THAT(r->reason, HasSubstr("rank 1 asked for gloo"));
  }
}

TEST(ShmProbeTest, RequiredSharedMemoryThatCannotWorkFails) {
  std::vector<ShmProbeOptions> options = Same(2);
  options[0].require_shm = true;
  ProbeRun run = Probe(2, options, /*victim=*/1);
  EXPECT_TRUE(absl::IsFailedPrecondition(run.results[0].status())) << run.results[0].status();
  ASSERT_TRUE(run.results[1].ok());
  EXPECT_EQ(run.results[1]->comm, nullptr);
}

}  // namespace
}  // namespace expertmesh::comm
