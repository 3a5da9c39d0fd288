// Every collective on every host transport with 2 and 4 ranks as threads, against a naive
// reference: data movement compared with ==, reductions within a stated tolerance (and
// identical on every rank).
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/comm/comm_test_util.h"
#include "worker/comm/single_communicator.h"

namespace expertmesh::comm {
namespace {

using testing::MakeThreadGroup;
using testing::RunOnRanks;
using testing::ThreadGroup;
using testing::Transport;

constexpr absl::Duration kTimeout = absl::Seconds(20);

// Deterministic inputs: every rank can compute every other rank's data for the reference.
std::vector<float> RankFloats(int rank, size_t n, int salt) {
  std::mt19937 rng(1000 * rank + salt);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> RankBf16(int rank, size_t n, int salt) {
  std::vector<uint16_t> v;
  for (float x : RankFloats(rank, n, salt)) v.push_back(FloatToBf16(x));
  return v;
}

template <typename T>
std::span<const std::byte> In(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}
template <typename T>
std::span<std::byte> Out(std::vector<T>& v) {
  return std::as_writable_bytes(std::span<T>(v));
}

absl::Status Expect(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

class CollectivesTest : public ::testing::TestWithParam<std::tuple<Transport, int>> {
 protected:
  void SetUp() override {
    auto [transport, world] = GetParam();
    world_ = world;
    absl::StatusOr<ThreadGroup> group = MakeThreadGroup(transport, world, kTimeout);
    ASSERT_TRUE(group.ok()) << group.status();
    group_ = *std::move(group);
  }

  // Runs fn on every rank and expects OK from all.
  void Run(const std::function<absl::Status(int, Communicator&)>& fn) {
    std::vector<absl::Status> results =
        RunOnRanks(world_, [&](int r) { return fn(r, group_.rank(r)); });
    for (int r = 0; r < world_; ++r)
      EXPECT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
  }

  int world_ = 0;
  ThreadGroup group_;
};

TEST_P(CollectivesTest, RanksAndSizes) {
  Run([&](int r, Communicator& comm) {
    return Expect(comm.rank() == r && comm.world_size() == world_, "rank/world mismatch");
  });
}

TEST_P(CollectivesTest, AllReduceF32OutOfPlaceAndInPlace) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{70001}}) {
    std::vector<double> ref(n, 0.0);
    for (int r = 0; r < world_; ++r) {
      std::vector<float> v = RankFloats(r, n, 1);
      for (size_t i = 0; i < n; ++i) ref[i] += v[i];
    }
    std::vector<std::vector<float>> out(world_, std::vector<float>(n));
    Run([&](int r, Communicator& comm) -> absl::Status {
      std::vector<float> in = RankFloats(r, n, 1);
      if (r % 2 == 0) return comm.AllReduce(In(in), Out(out[r]), DType::kF32);
      out[r] = in;  // odd ranks reduce in place
      return comm.AllReduce(In(out[r]), Out(out[r]), DType::kF32);
    });
    for (int r = 0; r < world_; ++r) {
      EXPECT_EQ(std::memcmp(out[r].data(), out[0].data(), n * sizeof(float)), 0)
          << "rank " << r << " differs from rank 0, n=" << n;
      for (size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(out[r][i], ref[i], 1e-5 * (1 + std::abs(ref[i]))) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST_P(CollectivesTest, AllReduceBf16SumsInF32) {
  const size_t n = 4099;
  std::vector<float> ref(n, 0.0f);
  for (int r = 0; r < world_; ++r) {
    std::vector<uint16_t> v = RankBf16(r, n, 2);
    for (size_t i = 0; i < n; ++i) ref[i] += Bf16ToFloat(v[i]);
  }
  std::vector<std::vector<uint16_t>> out(world_, std::vector<uint16_t>(n));
  Run([&](int r, Communicator& comm) {
    std::vector<uint16_t> in = RankBf16(r, n, 2);
    return comm.AllReduce(In(in), Out(out[r]), DType::kBF16);
  });
  for (int r = 0; r < world_; ++r) {
    EXPECT_EQ(out[r], out[0]) << "rank " << r;
    for (size_t i = 0; i < n; ++i) {
      // One rounding of an fp32 sum (whose order may differ): within a bf16 ulp of the ref.
      float got = Bf16ToFloat(out[r][i]);
      ASSERT_LE(std::abs(got - ref[i]), std::ldexp(std::abs(ref[i]), -7) + 1e-6f) << i;
    }
  }
}

TEST_P(CollectivesTest, AllGatherIsExact) {
  for (size_t n : {size_t{0}, size_t{3}, size_t{4097}}) {
    std::vector<uint16_t> ref;
    for (int r = 0; r < world_; ++r) {
      std::vector<uint16_t> v = RankBf16(r, n, 3);
      ref.insert(ref.end(), v.begin(), v.end());
    }
    std::vector<std::vector<uint16_t>> out(world_, std::vector<uint16_t>(n * world_));
    Run([&](int r, Communicator& comm) {
      std::vector<uint16_t> in = RankBf16(r, n, 3);
      return comm.AllGather(In(in), Out(out[r]), DType::kBF16);
    });
    for (int r = 0; r < world_; ++r) EXPECT_EQ(out[r], ref) << "rank " << r << " n=" << n;
  }
}

TEST_P(CollectivesTest, ReduceScatterF32) {
  const size_t chunk = 513;
  std::vector<std::vector<float>> out(world_, std::vector<float>(chunk));
  Run([&](int r, Communicator& comm) {
    std::vector<float> in = RankFloats(r, chunk * world_, 4);
    return comm.ReduceScatter(In(in), Out(out[r]), DType::kF32);
  });
  for (int r = 0; r < world_; ++r) {
    for (size_t i = 0; i < chunk; ++i) {
      double ref = 0;
      for (int q = 0; q < world_; ++q) ref += RankFloats(q, chunk * world_, 4)[r * chunk + i];
      ASSERT_NEAR(out[r][i], ref, 1e-5 * (1 + std::abs(ref))) << "rank " << r << " i=" << i;
    }
  }
}

TEST_P(CollectivesTest, ReduceScatterBf16) {
  const size_t chunk = 100;
  std::vector<std::vector<uint16_t>> out(world_, std::vector<uint16_t>(chunk));
  Run([&](int r, Communicator& comm) {
    std::vector<uint16_t> in = RankBf16(r, chunk * world_, 5);
    return comm.ReduceScatter(In(in), Out(out[r]), DType::kBF16);
  });
  for (int r = 0; r < world_; ++r) {
    for (size_t i = 0; i < chunk; ++i) {
      float ref = 0;
      for (int q = 0; q < world_; ++q)
        ref += Bf16ToFloat(RankBf16(q, chunk * world_, 5)[r * chunk + i]);
      EXPECT_EQ(out[r][i], FloatToBf16(ref)) << "rank " << r << " i=" << i;
    }
  }
}

// Uneven splits with zero counts, including a rank that sends nothing at all. Each element
// encodes (source, destination, index) so any misplacement shows.
int64_t Count(int src, int dst, int world) {
  if (src == world - 1) return 0;  // the last rank sends nothing
  return (src * 5 + dst * 3) % 4 == 0 ? 0 : (src * 7 + dst * 11) % 9 + 1;
}
int32_t Value(int src, int dst, int64_t i) { return src * 1000000 + dst * 10000 + i; }

TEST_P(CollectivesTest, AllToAllUnevenIsExact) {
  std::vector<std::vector<int32_t>> out(world_);
  std::vector<std::vector<int32_t>> ref(world_);
  for (int r = 0; r < world_; ++r) {
    for (int p = 0; p < world_; ++p) {
      for (int64_t i = 0; i < Count(p, r, world_); ++i) ref[r].push_back(Value(p, r, i));
    }
    out[r].assign(ref[r].size() + 5, -1);  // spare capacity must stay untouched
  }
  Run([&](int r, Communicator& comm) {
    std::vector<int32_t> in;
    std::vector<int64_t> send_counts, recv_counts;
    for (int p = 0; p < world_; ++p) {
      send_counts.push_back(Count(r, p, world_));
      recv_counts.push_back(Count(p, r, world_));
      for (int64_t i = 0; i < send_counts.back(); ++i) in.push_back(Value(r, p, i));
    }
    return comm.AllToAll(In(in), send_counts, Out(out[r]), recv_counts, DType::kI32);
  });
  for (int r = 0; r < world_; ++r) {
    std::vector<int32_t> expected = ref[r];
    expected.insert(expected.end(), 5, -1);
    EXPECT_EQ(out[r], expected) << "rank " << r;
  }
}

TEST_P(CollectivesTest, AllToAllAllZero) {
  Run([&](int, Communicator& comm) {
    std::vector<int64_t> zeros(world_, 0);
    return comm.AllToAll({}, zeros, {}, zeros, DType::kBF16);
  });
}

TEST_P(CollectivesTest, BroadcastFromEveryRoot) {
  for (int root = 0; root < world_; ++root) {
    std::vector<std::vector<float>> data(world_);
    Run([&](int r, Communicator& comm) {
      data[r] = RankFloats(r, 3001, 6);
      return comm.Broadcast(Out(data[r]), DType::kF32, root);
    });
    for (int r = 0; r < world_; ++r) EXPECT_EQ(data[r], RankFloats(root, 3001, 6)) << r;
  }
}

TEST_P(CollectivesTest, BroadcastBytesVariableLength) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{1} << 20}) {
    std::string plan(size, '\0');
    for (size_t i = 0; i < size; ++i) plan[i] = static_cast<char>(i * 131 + 7);
    std::vector<std::string> got(world_);
    Run([&](int r, Communicator& comm) {
      got[r] = r == world_ - 1 ? plan : std::string("stale data on a non-root rank");
      return comm.BroadcastBytes(got[r], world_ - 1);
    });
    for (int r = 0; r < world_; ++r) EXPECT_EQ(got[r], plan) << "rank " << r << " size " << size;
  }
}

TEST_P(CollectivesTest, BarrierAndManyCallsInOrder) {
  Run([&](int r, Communicator& comm) -> absl::Status {
    for (int i = 0; i < 50; ++i) {
      if (absl::Status s = comm.Barrier(); !s.ok()) return s;
      std::vector<float> v = {static_cast<float>(r + i)};
      if (absl::Status s = comm.AllReduce(In(v), Out(v), DType::kF32); !s.ok()) return s;
      float want = world_ * i + world_ * (world_ - 1) / 2.0f;
      if (v[0] != want) return absl::InternalError("wrong sum in iteration " + std::to_string(i));
    }
    return absl::OkStatus();
  });
}

// Bad arguments are rejected before any communication and leave the communicator usable.
TEST_P(CollectivesTest, InvalidArgumentsKeepCommunicatorUsable) {
  Run([&](int, Communicator& comm) -> absl::Status {
    std::vector<float> a(4), b(5);
    std::vector<int32_t> ints(4);
    std::vector<int64_t> short_counts(world_ - 1, 0), negative(world_, 0);
    negative[0] = -1;
    std::vector<absl::Status> bad = {
        comm.AllReduce(In(a), Out(b), DType::kF32),
        comm.AllReduce(In(ints), Out(ints), DType::kI32),
        comm.AllGather(In(a), Out(b), DType::kF32),
        comm.ReduceScatter(In(a), Out(b), DType::kF32),
        comm.AllToAll(In(a), short_counts, Out(b), short_counts, DType::kF32),
        comm.AllToAll(In(a), negative, Out(b), negative, DType::kF32),
        comm.Broadcast(Out(a), DType::kF32, world_),
        comm.BroadcastBytes(*std::make_unique<std::string>(), -1),
    };
    for (const absl::Status& s : bad) {
      if (!absl::IsInvalidArgument(s))
        return absl::InternalError("expected INVALID_ARGUMENT: " + s.ToString());
    }
    std::vector<float> v = {1.0f};
    if (absl::Status s = comm.AllReduce(In(v), Out(v), DType::kF32); !s.ok()) return s;
    return Expect(v[0] == static_cast<float>(world_), "sum after bad calls");
  });
}

INSTANTIATE_TEST_SUITE_P(Transports, CollectivesTest,
                         ::testing::Combine(::testing::Values(Transport::kFake,
                                                              Transport::kGlooHashStore,
                                                              Transport::kGlooGrpc, Transport::kShm,
                                                              Transport::kShmJoin),
                                            ::testing::Values(2, 4)),
                         [](const auto& info) {
                           return testing::TransportName(std::get<0>(info.param)) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

TEST(SingleCommunicatorTest, CollectivesAreCopies) {
  std::unique_ptr<Communicator> comm = CreateSingleCommunicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  std::vector<float> in = RankFloats(0, 17, 7), out(17);
  ASSERT_TRUE(comm->AllReduce(In(in), Out(out), DType::kF32).ok());
  EXPECT_EQ(out, in);
  std::fill(out.begin(), out.end(), 0.0f);
  ASSERT_TRUE(comm->AllGather(In(in), Out(out), DType::kF32).ok());
  EXPECT_EQ(out, in);
  std::vector<int64_t> counts = {10};
  std::vector<float> a2a(17, -1.0f);
  ASSERT_TRUE(comm->AllToAll(In(in), counts, Out(a2a), counts, DType::kF32).ok());
  EXPECT_TRUE(std::equal(in.begin(), in.begin() + 10, a2a.begin()));
  EXPECT_EQ(a2a[10], -1.0f);
  std::string plan = "plan";
  EXPECT_TRUE(comm->BroadcastBytes(plan, 0).ok());
  EXPECT_EQ(plan, "plan");
  EXPECT_TRUE(absl::IsInvalidArgument(comm->Broadcast(Out(out), DType::kF32, 1)));
  EXPECT_TRUE(comm->Barrier().ok());
}

}  // namespace
}  // namespace expertmesh::comm
