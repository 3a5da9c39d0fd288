// Faults: a rank that vanishes, hangs or fails mid-sequence makes the other ranks return an
// error status within the timeout (never a hang or a crash), and the error sticks.
#include <chrono>
#include <string>
#include <vector>

#include "gloo/rendezvous/hash_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/comm/comm_test_util.h"
#include "tests/worker/comm/fake_communicator.h"
#include "tests/worker/comm/faulty_communicator.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/rendezvous_client.h"
#include "worker/comm/rendezvous_server.h"

namespace expertmesh::comm {
namespace {

using testing::RunOnRanks;
using testing::Transport;

constexpr absl::Duration kTimeout = absl::Seconds(2);
// Generous bound on "returned within the timeout" for a loaded 2-core machine.
constexpr absl::Duration kSlack = absl::Seconds(8);

bool IsPeerFailure(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

struct Outcome {
  absl::Status status;  // the first failing call's status (OK if none failed)
  int failed_call = -1;
  absl::Duration elapsed;  // time spent in the failing call
  absl::Status after;      // a further call after the failure
};

class FaultTest : public ::testing::TestWithParam<std::tuple<Transport, int>> {
 protected:
  // Runs `calls` all-reduces on every rank, rank spec.rank wrapped with the fault.
  std::vector<Outcome> RunWithFault(const FaultSpec& spec, int calls) {
    auto [transport, world] = GetParam();
    absl::StatusOr<testing::ThreadGroup> group =
        testing::MakeThreadGroup(transport, world, kTimeout);
    EXPECT_TRUE(group.ok()) << group.status();
    if (!group.ok()) return {};
    for (auto& comm : group->comms) comm = CreateFaultyCommunicator(std::move(comm), spec);
    std::vector<Outcome> outcomes(world);
    RunOnRanks(world, [&](int r) {
      Communicator& comm = *group->comms[r];
      for (int i = 0; i < calls; ++i) {
        std::vector<float> v(1000, 1.0f);
        absl::Time start = absl::Now();
        absl::Status s = comm.AllReduce(std::as_bytes(std::span<const float>(v)),
                                        std::as_writable_bytes(std::span<float>(v)), DType::kF32);
        if (!s.ok()) {
          outcomes[r] = Outcome{s, i, absl::Now() - start, comm.Barrier()};
          break;
        }
      }
      return absl::OkStatus();
    });
    return outcomes;
  }
};

TEST_P(FaultTest, VanishingRankFailsTheOthersQuickly) {
  int world = std::get<1>(GetParam());
  FaultSpec spec{.rank = 1, .call = 2, .mode = FaultSpec::Mode::kVanish};
  std::vector<Outcome> outcomes = RunWithFault(spec, 5);
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_TRUE(IsPeerFailure(outcomes[r].status)) << outcomes[r].status;
    EXPECT_EQ(outcomes[r].failed_call, 2);
    EXPECT_LT(outcomes[r].elapsed, kTimeout + kSlack);
    // The communicator stays broken with the same code.
    EXPECT_EQ(outcomes[r].after.code(), outcomes[r].status.code()) << outcomes[r].after;
  }
}

TEST_P(FaultTest, HangingRankGivesDeadlineExceeded) {
  int world = std::get<1>(GetParam());
  FaultSpec spec{.rank = world - 1,
                 .call = 1,
                 .mode = FaultSpec::Mode::kHang,
                 .hang_for = kTimeout + absl::Seconds(1)};
  std::vector<Outcome> outcomes = RunWithFault(spec, 3);
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(outcomes[r].failed_call, 1);
    EXPECT_TRUE(IsPeerFailure(outcomes[r].status)) << outcomes[r].status;
    EXPECT_LT(outcomes[r].elapsed, kTimeout + kSlack);
  }
  EXPECT_TRUE(absl::IsDeadlineExceeded(outcomes[0].status)) << outcomes[0].status;
}

TEST_P(FaultTest, FailingRankLeavesOthersToTimeOut) {
  int world = std::get<1>(GetParam());
  FaultSpec spec{.rank = 0, .call = 0, .mode = FaultSpec::Mode::kFail};
  std::vector<Outcome> outcomes = RunWithFault(spec, 2);
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(world));
  EXPECT_TRUE(absl::IsUnavailable(outcomes[0].status)) << outcomes[0].status;
  EXPECT_THAT(std::string(outcomes[0].status.message()), ::testing::HasSubstr("injected"));
  for (int r = 1; r < world; ++r) {
    EXPECT_TRUE(absl::IsDeadlineExceeded(outcomes[r].status)) << r << ": " << outcomes[r].status;
    EXPECT_LT(outcomes[r].elapsed, kTimeout + kSlack);
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, FaultTest,
                         ::testing::Combine(::testing::Values(Transport::kFake,
                                                              Transport::kGlooHashStore,
                                                              Transport::kShm),
                                            ::testing::Values(2, 4)),
                         [](const auto& info) {
                           return testing::TransportName(std::get<0>(info.param)) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

TEST(FakeFaultTest, MismatchedCollectivesAreInternalOnEveryRank) {
  auto comms = CreateFakeGroup(2, kTimeout);
  std::vector<absl::Status> results = RunOnRanks(2, [&](int r) {
    std::vector<float> v(4, 1.0f), out(8);
    auto in = std::as_bytes(std::span<const float>(v));
    if (r == 0)
      return comms[r]->AllReduce(in, std::as_writable_bytes(std::span<float>(v)), DType::kF32);
    return comms[r]->AllGather(in, std::as_writable_bytes(std::span<float>(out)), DType::kF32);
  });
  for (const absl::Status& s : results) {
    EXPECT_TRUE(absl::IsInternal(s)) << s;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("rank 0 called AllReduce"));
  }
}

TEST(FakeFaultTest, AllToAllCountMismatchIsInternal) {
  auto comms = CreateFakeGroup(2, kTimeout);
  std::vector<absl::Status> results = RunOnRanks(2, [&](int r) {
    std::vector<int32_t> buf(8, r);
    std::vector<int64_t> send = {1, 2};
    std::vector<int64_t> recv = r == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{3, 2};
    return comms[r]->AllToAll(std::as_bytes(std::span<const int32_t>(buf)).first(12), send,
                              std::as_writable_bytes(std::span<int32_t>(buf)).subspan(12), recv,
                              DType::kI32);
  });
  for (const absl::Status& s : results) EXPECT_TRUE(absl::IsInternal(s)) << s;
}

// A rank that never joins: the others fail the rendezvous naming the missing rank.
TEST(GlooRendezvousFaultTest, MissingRankIsNamed) {
  absl::StatusOr<std::unique_ptr<RendezvousServer>> server =
      RendezvousServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string target = "127.0.0.1:" + std::to_string((*server)->port());
  absl::Time start = absl::Now();
  std::vector<absl::Status> results = RunOnRanks(2, [&](int r) -> absl::Status {
    RendezvousClient client(target, absl::Seconds(1));
    GlooRendezvousStore store(client, "gloo", absl::Seconds(1));
    GlooOptions options{
        .rank = r, .world_size = 3, .hostname = "127.0.0.1", .timeout = absl::Seconds(1)};
    return CreateGlooCommunicator(options, store).status();
  });
  for (const absl::Status& s : results) {
    EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("gloo/2"));
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("rank 2"));
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(1) + kSlack);
}

}  // namespace
}  // namespace expertmesh::comm
