// The NCCL communicator: every collective with ranks as threads, one GPU per rank (NCCL runs one
// rank of a communicator per device), against a host reference: data movement exact, sums
// within stated bounds and identical on every rank. Group sizes 1, 2, 4 and 8 each skip
// visibly on a machine with fewer GPUs. The failure paths: a rank that never joins, a rank
// without a usable device, a peer that does not take part in a collective (null stream and
// caller's stream), host memory. Without a GPU every case skips, except the ones about having
// none.
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_util.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/comm/single_communicator.h"

namespace expertmesh::comm {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(30);

int GpuCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

// Runs fn(rank) on `world` threads at once, each with its rank's device current.
std::vector<absl::Status> OnRanks(int world, const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      if (cudaSetDevice(r) != cudaSuccess) {
        results[r] = absl::InternalError("cudaSetDevice");
        return;
      }
      results[r] = fn(r);
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// A group of `world` NCCL ranks over an in-process host group; rank r on device r.
struct Group {
  std::vector<std::unique_ptr<Communicator>> host;
  std::vector<std::unique_ptr<Communicator>> nccl;  // destroyed before `host`, which it uses

  ~Group() {
    // Leaving is collective-free, but each rank's communicator is released on its own device.
    OnRanks(static_cast<int>(nccl.size()), [&](int r) {
      nccl[r].reset();
      return absl::OkStatus();
    });
  }
};

absl::Status MakeGroup(int world, absl::Duration timeout, Group& group) {
  group.host = CreateFakeGroup(world, timeout);
  group.nccl.resize(world);
  std::vector<absl::Status> results = OnRanks(world, [&](int r) -> absl::Status {
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        CreateNcclCommunicator({.device = r, .timeout = timeout}, *group.host[r]);
    if (!c.ok()) return c.status();
    group.nccl[r] = *std::move(c);
    return absl::OkStatus();
  });
  for (int r = 0; r < world; ++r) {
    if (!results[r].ok()) return results[r];
  }
  return absl::OkStatus();
}

// Host data <-> a device buffer of the current device.
template <typename T>
cuda::DeviceBuffer Upload(const std::vector<T>& host) {
  absl::StatusOr<cuda::DeviceBuffer> buffer =
      cuda::DeviceBuffer::Allocate(std::max<size_t>(host.size() * sizeof(T), 1));
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!host.empty()) {
    EXPECT_EQ(
        cudaMemcpy(buffer->get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  return *std::move(buffer);
}

template <typename T>
std::vector<T> Download(const cuda::DeviceBuffer& buffer, size_t count) {
  std::vector<T> host(count);
  if (count > 0) {
    EXPECT_EQ(cudaMemcpy(host.data(), buffer.get(), count * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
  }
  return host;
}

template <typename T>
std::span<const std::byte> In(const cuda::DeviceBuffer& b, size_t count) {
  return {static_cast<const std::byte*>(b.get()), count * sizeof(T)};
}
template <typename T>
std::span<std::byte> Out(const cuda::DeviceBuffer& b, size_t count) {
  return {static_cast<std::byte*>(b.get()), count * sizeof(T)};
}

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

absl::Status Expect(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

// Collectives on groups of GetParam() ranks.
class NcclCollectivesTest : public testing::CudaTestWithParam<int> {
 protected:
  void SetUp() override {
    testing::CudaTestWithParam<int>::SetUp();
    if (IsSkipped()) return;
    world_ = GetParam();
    if (GpuCount() < world_) {
      GTEST_SKIP() << "a group of " << world_ << " NCCL ranks needs " << world_
                   << " GPUs; this machine has " << GpuCount();
    }
    ASSERT_TRUE(MakeGroup(world_, kTimeout, group_).ok());
  }

  // Runs fn on every rank and expects OK from all.
  void Run(const std::function<absl::Status(int, Communicator&)>& fn) {
    std::vector<absl::Status> results =
        OnRanks(world_, [&](int r) { return fn(r, *group_.nccl[r]); });
    for (int r = 0; r < world_; ++r) {
      EXPECT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
    }
  }

  int world_ = 0;
  Group group_;
};

TEST_P(NcclCollectivesTest, RanksSizesAndDeviceBuffers) {
  Run([&](int r, Communicator& c) {
    return Expect(
        c.rank() == r && c.world_size() == world_ && c.name() == "nccl" && c.device_buffers(),
        "rank, world size, name or device_buffers wrong");
  });
}

TEST_P(NcclCollectivesTest, AllReduceF32OutOfPlaceAndInPlaceIdenticalOnEveryRank) {
  constexpr size_t kN = 70001;  // odd: no size NCCL would split evenly
  std::vector<double> exact(kN, 0.0);
  for (int r = 0; r < world_; ++r) {
    std::vector<float> v = RankFloats(r, kN, 1);
    for (size_t i = 0; i < kN; ++i) exact[i] += v[i];
  }
  std::vector<std::vector<float>> out(world_), in_place(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    cuda::DeviceBuffer send = Upload(RankFloats(r, kN, 1));
    cuda::DeviceBuffer recv = Upload(std::vector<float>(kN, -1.0f));
    if (absl::Status s = c.AllReduce(In<float>(send, kN), Out<float>(recv, kN), DType::kF32);
        !s.ok()) {
      return s;
    }
    out[r] = Download<float>(recv, kN);
    if (absl::Status s = c.AllReduce(In<float>(send, kN), Out<float>(send, kN), DType::kF32);
        !s.ok()) {
      return s;
    }
    in_place[r] = Download<float>(send, kN);
    return absl::OkStatus();
  });
  for (size_t i = 0; i < kN; ++i) {
    // fp32 sums of world_ terms of magnitude <= 4 in any order.
    ASSERT_NEAR(out[0][i], exact[i], 4.0 * world_ * world_ * 1.2e-7) << "element " << i;
  }
  for (int r = 0; r < world_; ++r) {
    EXPECT_EQ(std::memcmp(out[r].data(), out[0].data(), kN * sizeof(float)), 0) << "rank " << r;
    EXPECT_EQ(std::memcmp(in_place[r].data(), out[0].data(), kN * sizeof(float)), 0)
        << "in place, rank " << r;
  }
}

// bf16 is summed in fp32 and rounded once: the result is within half a bf16 step (plus the fp32
// error) of the exact sum. Rounding at every hop, as NCCL's own bf16 sum does, misses that
// bound with 4 or more ranks: element 0 is built so that it does (1 + three 0.75 * 2^-8).
TEST_P(NcclCollectivesTest, AllReduceBf16SumsInF32AndRoundsOnce) {
  constexpr size_t kN = 4099;
  auto values = [&](int r) {
    std::vector<uint16_t> v = RankBf16(r, kN, 2);
    v[0] = FloatToBf16(r == 0 ? 1.0f : 0.75f / 256.0f);
    return v;
  };
  std::vector<double> exact(kN, 0.0);
  for (int r = 0; r < world_; ++r) {
    std::vector<uint16_t> v = values(r);
    for (size_t i = 0; i < kN; ++i) exact[i] += Bf16ToFloat(v[i]);
  }
  std::vector<std::vector<uint16_t>> out(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    cuda::DeviceBuffer data = Upload(values(r));
    if (absl::Status s = c.AllReduce(In<uint16_t>(data, kN), Out<uint16_t>(data, kN), DType::kBF16);
        !s.ok()) {
      return s;
    }
    out[r] = Download<uint16_t>(data, kN);
    return absl::OkStatus();
  });
  for (size_t i = 0; i < kN; ++i) {
    const double got = Bf16ToFloat(out[0][i]);
    const double step = std::ldexp(1.0, std::ilogb(std::max(std::fabs(got), 1e-30)) - 7);
    ASSERT_LE(std::fabs(got - exact[i]), 0.5 * step + 4.0 * world_ * 1.2e-7)
        << "element " << i << ": got " << got << ", exact " << exact[i];
  }
  for (int r = 1; r < world_; ++r) EXPECT_EQ(out[r], out[0]) << "rank " << r;
}

TEST_P(NcclCollectivesTest, ReduceScatterF32AndBf16) {
  constexpr size_t kChunk = 1031;
  const size_t total = kChunk * world_;
  std::vector<double> exact_f32(total, 0.0), exact_bf16(total, 0.0);
  for (int r = 0; r < world_; ++r) {
    std::vector<float> f = RankFloats(r, total, 3);
    std::vector<uint16_t> b = RankBf16(r, total, 4);
    for (size_t i = 0; i < total; ++i) {
      exact_f32[i] += f[i];
      exact_bf16[i] += Bf16ToFloat(b[i]);
    }
  }
  std::vector<std::vector<float>> f32(world_);
  std::vector<std::vector<uint16_t>> bf16(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    cuda::DeviceBuffer fs = Upload(RankFloats(r, total, 3));
    cuda::DeviceBuffer fr = Upload(std::vector<float>(kChunk, 0.0f));
    cuda::DeviceBuffer bs = Upload(RankBf16(r, total, 4));
    cuda::DeviceBuffer br = Upload(std::vector<uint16_t>(kChunk, 0));
    if (absl::Status s = c.ReduceScatter(In<float>(fs, total), Out<float>(fr, kChunk), DType::kF32);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            c.ReduceScatter(In<uint16_t>(bs, total), Out<uint16_t>(br, kChunk), DType::kBF16);
        !s.ok()) {
      return s;
    }
    f32[r] = Download<float>(fr, kChunk);
    bf16[r] = Download<uint16_t>(br, kChunk);
    return absl::OkStatus();
  });
  for (int r = 0; r < world_; ++r) {
    for (size_t i = 0; i < kChunk; ++i) {
      const size_t g = r * kChunk + i;
      ASSERT_NEAR(f32[r][i], exact_f32[g], 4.0 * world_ * world_ * 1.2e-7) << r << ":" << i;
      const double got = Bf16ToFloat(bf16[r][i]);
      const double step = std::ldexp(1.0, std::ilogb(std::max(std::fabs(got), 1e-30)) - 7);
      ASSERT_LE(std::fabs(got - exact_bf16[g]), 0.5 * step + 4.0 * world_ * 1.2e-7)
          << r << ":" << i;
    }
  }
}

TEST_P(NcclCollectivesTest, AllGatherIsExact) {
  constexpr size_t kN = 777;  // bytes of i32 elements, odd count
  std::vector<std::vector<int32_t>> out(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    std::vector<int32_t> mine(kN);
    for (size_t i = 0; i < kN; ++i) mine[i] = static_cast<int32_t>(r * 100000 + i);
    cuda::DeviceBuffer send = Upload(mine);
    cuda::DeviceBuffer recv = Upload(std::vector<int32_t>(kN * world_, -1));
    if (absl::Status s =
            c.AllGather(In<int32_t>(send, kN), Out<int32_t>(recv, kN * world_), DType::kI32);
        !s.ok()) {
      return s;
    }
    out[r] = Download<int32_t>(recv, kN * world_);
    return absl::OkStatus();
  });
  for (int r = 0; r < world_; ++r) {
    for (int p = 0; p < world_; ++p) {
      for (size_t i = 0; i < kN; ++i) {
        ASSERT_EQ(out[r][p * kN + i], static_cast<int32_t>(p * 100000 + i)) << r << "/" << p;
      }
    }
  }
}

// Rank p sends (p + 2q) % 5 elements to rank q (zeros included, to itself too), each element
// naming its sender, receiver and index.
TEST_P(NcclCollectivesTest, AllToAllUnevenIsExact) {
  auto count = [](int from, int to) { return static_cast<int64_t>((from + 2 * to) % 5) * 37; };
  auto value = [](int from, int to, int64_t i) {
    return static_cast<int32_t>(from * 1000000 + to * 10000 + i);
  };
  std::vector<std::vector<int32_t>> out(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    std::vector<int64_t> send_counts(world_), recv_counts(world_);
    std::vector<int32_t> send;
    for (int q = 0; q < world_; ++q) {
      send_counts[q] = count(r, q);
      recv_counts[q] = count(q, r);
      for (int64_t i = 0; i < send_counts[q]; ++i) send.push_back(value(r, q, i));
    }
    int64_t total_recv = 0;
    for (int64_t n : recv_counts) total_recv += n;
    // One spare element at the end of recv: it must stay untouched.
    cuda::DeviceBuffer s = Upload(send);
    cuda::DeviceBuffer d = Upload(std::vector<int32_t>(total_recv + 1, -7));
    if (absl::Status st = c.AllToAll(In<int32_t>(s, send.size()), send_counts,
                                     Out<int32_t>(d, total_recv + 1), recv_counts, DType::kI32);
        !st.ok()) {
      return st;
    }
    out[r] = Download<int32_t>(d, total_recv + 1);
    return absl::OkStatus();
  });
  for (int r = 0; r < world_; ++r) {
    size_t at = 0;
    for (int p = 0; p < world_; ++p) {
      for (int64_t i = 0; i < count(p, r); ++i) {
        ASSERT_EQ(out[r][at++], value(p, r, i)) << "rank " << r << " from " << p << " #" << i;
      }
    }
    EXPECT_EQ(out[r][at], -7) << "rank " << r << ": a byte past the counts was written";
  }
}

TEST_P(NcclCollectivesTest, BroadcastFromEveryRootAndBroadcastBytes) {
  constexpr size_t kN = 513;
  for (int root = 0; root < world_; ++root) {
    std::vector<std::vector<float>> out(world_);
    std::vector<std::string> bytes(world_);
    Run([&](int r, Communicator& c) -> absl::Status {
      cuda::DeviceBuffer data = Upload(RankFloats(r, kN, 5));
      if (absl::Status s = c.Broadcast(Out<float>(data, kN), DType::kF32, root); !s.ok()) return s;
      out[r] = Download<float>(data, kN);
      bytes[r] = r == root ? std::string(100 + root, static_cast<char>('a' + root)) : "junk";
      return c.BroadcastBytes(bytes[r], root);
    });
    for (int r = 0; r < world_; ++r) {
      EXPECT_EQ(out[r], RankFloats(root, kN, 5)) << "root " << root << ", rank " << r;
      EXPECT_EQ(bytes[r], std::string(100 + root, static_cast<char>('a' + root)));
    }
  }
}

// On a caller's stream the call only enqueues: the result is there once the stream is synced.
// Many calls in a row, with the buffer of each feeding the next.
TEST_P(NcclCollectivesTest, CallersStreamOrdersManyCalls) {
  constexpr size_t kN = 4096;
  constexpr int kCalls = 20;
  std::vector<std::vector<float>> out(world_);
  Run([&](int r, Communicator& c) -> absl::Status {
    absl::StatusOr<cuda::CudaStream> stream = cuda::CudaStream::Create();
    if (!stream.ok()) return stream.status();
    cuda::DeviceBuffer data = Upload(std::vector<float>(kN, 1.0f));
    for (int i = 0; i < kCalls; ++i) {
      // x -> world * x each time; exact in fp32 for these sizes.
      if (absl::Status s = c.AllReduce(In<float>(data, kN), Out<float>(data, kN), DType::kF32,
                                       StreamHandle{stream->get()});
          !s.ok()) {
        return s;
      }
      if (i == kCalls / 2) c.Barrier().IgnoreError();  // host work between enqueues
    }
    if (cudaStreamSynchronize(stream->get()) != cudaSuccess) return absl::InternalError("sync");
    out[r] = Download<float>(data, kN);
    return absl::OkStatus();
  });
  const float expected = std::pow(static_cast<float>(world_), static_cast<float>(kCalls));
  for (int r = 0; r < world_; ++r) {
    for (size_t i = 0; i < kN; ++i) ASSERT_EQ(out[r][i], expected) << r << ":" << i;
  }
}

TEST_P(NcclCollectivesTest, HostMemoryIsRefusedAndTheCommunicatorStaysUsable) {
  constexpr size_t kN = 64;
  Run([&](int r, Communicator& c) -> absl::Status {
    std::vector<float> host(kN, 1.0f);
    const absl::Status refused =
        c.AllReduce(std::as_bytes(std::span<const float>(host)),
                    std::as_writable_bytes(std::span<float>(host)), DType::kF32);
    if (refused.code() != absl::StatusCode::kInvalidArgument ||
        !absl::StrContains(refused.message(), "host memory")) {
      return absl::InternalError(absl::StrCat("expected INVALID_ARGUMENT: ", refused.ToString()));
    }
    // Argument errors every transport checks, too.
    cuda::DeviceBuffer data = Upload(std::vector<float>(kN, 1.0f));
    if (c.AllReduce(In<float>(data, kN), Out<float>(data, kN), DType::kI32).code() !=
        absl::StatusCode::kInvalidArgument) {
      return absl::InternalError("an i32 all-reduce was not refused");
    }
    if (absl::Status s = c.AllReduce(In<float>(data, kN), Out<float>(data, kN), DType::kF32);
        !s.ok()) {
      return s;
    }
    std::vector<float> got = Download<float>(data, kN);
    return Expect(got[0] == static_cast<float>(world_), "the later all-reduce is wrong");
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, NcclCollectivesTest, ::testing::Values(1, 2, 4, 8),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat("world", info.param);
                         });

class NcclFailureTest : public testing::CudaTest {};

// Rank 1 passes the id exchange and then never joins NCCL (its process died): rank 0's join
// ends with DEADLINE_EXCEEDED after the timeout instead of waiting forever. One GPU suffices.
TEST_F(NcclFailureTest, ARankThatNeverJoinsTimesOut) {
  std::vector<std::unique_ptr<Communicator>> host = CreateFakeGroup(2, kTimeout);
  absl::Status joined;
  const auto start = std::chrono::steady_clock::now();
  std::thread leader([&] {
    (void)cudaSetDevice(0);
    joined = CreateNcclCommunicator({.device = 0, .timeout = absl::Seconds(3)}, *host[0]).status();
  });
  // What CreateNcclCommunicator does on the host communicator, and no more.
  uint8_t ready = 1;
  std::vector<uint8_t> all(2);
  ASSERT_TRUE(host[1]
                  ->AllGather(std::as_bytes(std::span<const uint8_t>(&ready, 1)),
                              std::as_writable_bytes(std::span<uint8_t>(all)), DType::kU8)
                  .ok());
  std::string id;
  ASSERT_TRUE(host[1]->BroadcastBytes(id, 0).ok());
  EXPECT_EQ(id.size(), 128u);
  leader.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(joined.code(), absl::StatusCode::kDeadlineExceeded) << joined;
  EXPECT_THAT(joined.message(), HasSubstr("did not form"));
  EXPECT_LT(seconds, 20.0);
}

// A rank whose device is not usable fails the whole group at once, named on every rank.
TEST_F(NcclFailureTest, ARankWithoutItsDeviceFailsEveryRankAtOnce) {
  std::vector<std::unique_ptr<Communicator>> host = CreateFakeGroup(2, kTimeout);
  absl::Status rank1;
  std::thread other([&] {
    rank1 = CreateNcclCommunicator({.device = 4096, .timeout = kTimeout}, *host[1]).status();
  });
  const absl::Status rank0 =
      CreateNcclCommunicator({.device = 0, .timeout = kTimeout}, *host[0]).status();
  other.join();
  EXPECT_EQ(rank1.code(), absl::StatusCode::kFailedPrecondition) << rank1;
  EXPECT_THAT(rank1.message(), HasSubstr("device 4096"));
  EXPECT_EQ(rank0.code(), absl::StatusCode::kFailedPrecondition) << rank0;
  EXPECT_THAT(rank0.message(), HasSubstr("rank(s) 1"));
}

// Rank 1 skips a collective: rank 0 fails within the timeout, on its own stream and (through the
// watchdog) on a caller's stream, and the communicator stays broken.
TEST_F(NcclFailureTest, APeerThatDoesNotTakePartBreaksTheCommunicator) {
  if (GpuCount() < 2) GTEST_SKIP() << "needs 2 GPUs; this machine has " << GpuCount();
  constexpr size_t kN = 1024;
  for (const bool callers_stream : {false, true}) {
    Group group;
    ASSERT_TRUE(MakeGroup(2, absl::Seconds(3), group).ok());
    std::vector<absl::Status> results = OnRanks(1, [&](int) -> absl::Status {
      Communicator& c = *group.nccl[0];
      cuda::DeviceBuffer data = Upload(std::vector<float>(kN, 1.0f));
      absl::StatusOr<cuda::CudaStream> stream = cuda::CudaStream::Create();
      if (!stream.ok()) return stream.status();
      const auto start = std::chrono::steady_clock::now();
      absl::Status first =
          c.AllReduce(In<float>(data, kN), Out<float>(data, kN), DType::kF32,
                      callers_stream ? StreamHandle{stream->get()} : StreamHandle{});
      if (callers_stream) {
        if (!first.ok()) return first;
        // Returns once the watchdog aborted the stuck kernels.
        (void)cudaStreamSynchronize(stream->get());
        (void)cudaGetLastError();
        first = c.AllReduce(In<float>(data, kN), Out<float>(data, kN), DType::kF32);
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_EQ(first.code(), absl::StatusCode::kDeadlineExceeded) << first;
      EXPECT_THAT(first.message(), HasSubstr("nccl rank 0: AllReduce"));
      EXPECT_LT(seconds, 20.0);
      const absl::Status later = c.Barrier();
      EXPECT_EQ(later.code(), absl::StatusCode::kDeadlineExceeded) << later;
      return absl::OkStatus();
    });
    EXPECT_TRUE(results[0].ok()) << results[0];
  }
}

// What a machine without a GPU says (this case runs where the others skip).
TEST(NcclWithoutGpuTest, CreatingReportsNoUsableDevice) {
  if (cuda::CudaDeviceAvailable()) GTEST_SKIP() << "this machine has a GPU";
  std::unique_ptr<Communicator> host = CreateSingleCommunicator();
  absl::StatusOr<std::unique_ptr<Communicator>> c =
      CreateNcclCommunicator({.device = 0, .timeout = kTimeout}, *host);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("no usable CUDA device"));
}

TEST(NcclOptionsTest, TimeoutMustBePositive) {
  std::unique_ptr<Communicator> host = CreateSingleCommunicator();
  EXPECT_EQ(
      CreateNcclCommunicator({.device = 0, .timeout = absl::ZeroDuration()}, *host).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace expertmesh::comm
