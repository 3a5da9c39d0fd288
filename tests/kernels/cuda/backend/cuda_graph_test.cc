// CUDA graphs through the backend: a captured step replays to the same values as the eager
// ops, follows new inputs written into its stable buffers, is cached per key, and a body that
// synchronises is refused without caching anything.
#include "kernels/cuda/backend/cuda_graph.h"

#include <random>

#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/kernels/cuda/backend/backend_test_util.h"

namespace expertmesh::testing {
namespace {

// A decode-like chain over fixed buffers: embedding -> rms norm -> linear -> silu·mul.
class GraphStepTest : public CudaBackendTest {
 protected:
  static constexpr int64_t kTokens = 4, kVocab = 64, kHidden = 128, kInter = 96;

  void SetUp() override {
    CudaBackendTest::SetUp();
    if (IsSkipped()) return;
    std::mt19937 rng(11);
    table_ = *backend_->PrepareWeight(Random(DType::kBF16, {kVocab, kHidden}, rng));
    norm_ = *backend_->PrepareWeight(Random(DType::kBF16, {kHidden}, rng, 0.5f, 1.5f));
    gate_up_w_ = *backend_->PrepareWeight(Random(DType::kBF16, {2 * kInter, kHidden}, rng));
    ids_ = *backend_->Allocate(DType::kI32, {kTokens});
    x_ = *backend_->Allocate(DType::kBF16, {kTokens, kHidden});
    h_ = *backend_->Allocate(DType::kBF16, {kTokens, kHidden});
    gate_up_ = *backend_->Allocate(DType::kBF16, {kTokens, 2 * kInter});
    out_ = *backend_->Allocate(DType::kBF16, {kTokens, kInter});
  }

  absl::Status Step() {
    if (absl::Status s = backend_->Embedding(table_, ids_, x_); !s.ok()) return s;
    if (absl::Status s = backend_->RmsNorm(x_, nullptr, norm_, 1e-6f, h_); !s.ok()) return s;
    if (absl::Status s = backend_->Linear(h_, gate_up_w_, Tensor(), gate_up_); !s.ok()) return s;
    return backend_->SiluMul(gate_up_, out_);
  }

  void SetIds(const std::vector<int32_t>& ids) {
    ASSERT_TRUE(backend_->CopyFromHost(ids.data(), ids_).ok());
  }

  Tensor table_, norm_, gate_up_w_, ids_, x_, h_, gate_up_, out_;
};

TEST_F(GraphStepTest, ReplayEqualsEager) {
  const std::vector<std::vector<int32_t>> inputs = {{1, 2, 3, 4}, {63, 0, 7, 7}, {5, 9, 40, 2}};
  std::vector<Tensor> eager;
  for (const auto& ids : inputs) {
    SetIds(ids);
    ASSERT_TRUE(Step().ok());
    eager.push_back(Download(out_));
  }
  ASSERT_TRUE(backend_->Zero(out_).ok());
  int body_calls = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    SetIds(inputs[i]);
    const absl::Status s = backend_->CaptureOrReplay(kTokens, [&] {
      ++body_calls;
      return Step();
    });
    ASSERT_TRUE(s.ok()) << s;
    // Same kernels on the same data: bit-identical to the eager run.
    EXPECT_TRUE(TensorsEqual(Download(out_), eager[i])) << "input " << i;
  }
  EXPECT_EQ(body_calls, 1);
  EXPECT_EQ(backend_->memory_stats().cached_graphs, 1u);
  // Another key captures again.
  SetIds(inputs[0]);
  ASSERT_TRUE(backend_
                  ->CaptureOrReplay(kTokens + 1,
                                    [&] {
                                      ++body_calls;
                                      return Step();
                                    })
                  .ok());
  EXPECT_EQ(body_calls, 2);
  EXPECT_TRUE(TensorsEqual(Download(out_), eager[0]));
  ASSERT_TRUE(cuda::ClearCudaGraphs(*backend_).ok());
  EXPECT_EQ(backend_->memory_stats().cached_graphs, 0u);
}

TEST_F(GraphStepTest, TensorsAllocatedInsideTheBodyStayPinned) {
  SetIds({1, 2, 3, 4});
  ASSERT_TRUE(Step().ok());
  const Tensor expected = Download(out_);
  const size_t before = backend_->memory_stats().pool_in_use_bytes;
  // The body's scratch dies when the body returns, but the graph keeps using its address.
  ASSERT_TRUE(backend_
                  ->CaptureOrReplay(
                      1,
                      [&]() -> absl::Status {
                        auto scratch = backend_->Allocate(DType::kBF16, {kTokens, 2 * kInter});
                        if (!scratch.ok()) return scratch.status();
                        if (absl::Status s = backend_->Embedding(table_, ids_, x_); !s.ok())
                          return s;
                        if (absl::Status s = backend_->RmsNorm(x_, nullptr, norm_, 1e-6f, h_);
                            !s.ok()) {
                          return s;
                        }
                        if (absl::Status s = backend_->Linear(h_, gate_up_w_, Tensor(), *scratch);
                            !s.ok()) {
                          return s;
                        }
                        return backend_->SiluMul(*scratch, out_);
                      })
                  .ok());
  EXPECT_GT(backend_->memory_stats().pool_in_use_bytes, before);
  // A new allocation must not get the pinned block; scribble on it and replay.
  auto other = backend_->Allocate(DType::kBF16, {kTokens, 2 * kInter});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(backend_->Zero(*other).ok());
  ASSERT_TRUE(backend_->CaptureOrReplay(1, [] { return absl::InternalError("not called"); }).ok());
  EXPECT_TRUE(TensorsEqual(Download(out_), expected));
  backend_->ClearGraphs();
  // The scratch block went back with the graph; `other` is still held.
  EXPECT_EQ(backend_->memory_stats().pool_in_use_bytes,
            before + cuda::PoolBlockBytes(other->nbytes()));
}

TEST_F(GraphStepTest, SynchronisingBodyIsRefused) {
  SetIds({1, 2, 3, 4});
  const absl::Status s = backend_->CaptureOrReplay(2, [&]() -> absl::Status {
    if (absl::Status st = Step(); !st.ok()) return st;
    return backend_->Synchronize();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(backend_->memory_stats().cached_graphs, 0u);
  EXPECT_FALSE(backend_->capturing());
  // The backend still works eagerly, and the failed body's error is not cached.
  ASSERT_TRUE(Step().ok());
  EXPECT_TRUE(backend_->Synchronize().ok());
  const absl::Status copy = backend_->CaptureOrReplay(3, [&]() -> absl::Status {
    std::vector<int32_t> ids = {0, 0, 0, 0};
    return backend_->CopyFromHost(ids.data(), ids_);
  });
  EXPECT_EQ(copy.code(), absl::StatusCode::kFailedPrecondition) << copy;
  EXPECT_TRUE(backend_->Synchronize().ok());
}

TEST(CaptureOrReplayTest, RejectsOtherBackends) {
  // Any non-CUDA backend: a minimal fake is enough for the type check, which needs no GPU.
  class NotCuda : public kernels::Backend {
   public:
    std::string_view Name() const override { return "fake"; }
    kernels::Device device() const override { return kernels::Device::kCpu; }
    bool Supports(kernels::Op) const override { return false; }
    absl::StatusOr<Tensor> Allocate(DType, std::span<const int64_t>) override {
      return absl::UnimplementedError("");
    }
    absl::Status SetStream(kernels::Stream) override { return absl::OkStatus(); }
    absl::Status Synchronize() override { return absl::OkStatus(); }
    absl::Status CopyFromHost(const void*, Tensor&) override { return absl::OkStatus(); }
    absl::Status CopyToHost(const Tensor&, void*) override { return absl::OkStatus(); }
    absl::Status Zero(Tensor&) override { return absl::OkStatus(); }
    absl::StatusOr<Tensor> PrepareWeight(const Tensor& t) override { return t; }

   protected:
    absl::Status DoEmbedding(const Tensor&, const Tensor&, Tensor&) override { return {}; }
    absl::Status DoRmsNorm(const Tensor&, Tensor*, const Tensor&, float, Tensor&) override {
      return {};
    }
    absl::Status DoRope(const Tensor&, const Tensor&, const kernels::RopeParams&, Tensor&,
                        Tensor&) override {
      return {};
    }
    absl::Status DoLinear(const Tensor&, const Tensor&, const Tensor&, Tensor&) override {
      return {};
    }
    absl::Status DoSiluMul(const Tensor&, Tensor&) override { return {}; }
    absl::Status DoMoeTopK(const Tensor&, const Tensor&, const kernels::MoeRoutingParams&, Tensor&,
                           Tensor&) override {
      return {};
    }
    absl::Status DoMoePermute(const Tensor&, const Tensor&, int, Tensor&, Tensor&,
                              Tensor&) override {
      return {};
    }
    absl::Status DoMoeGroupedLinear(const Tensor&, const Tensor&, std::span<const Tensor>,
                                    Tensor&) override {
      return {};
    }
    absl::Status DoMoeCombine(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, Tensor&) override {
      return {};
    }
    absl::Status DoKvCacheWrite(const Tensor&, const Tensor&, const Tensor&, Tensor&,
                                Tensor&) override {
      return {};
    }
    absl::Status DoPagedAttention(const Tensor&, const Tensor&, const Tensor&,
                                  const kernels::PagedAttentionBatch&, float, Tensor&) override {
      return {};
    }
    absl::Status DoSampleTokens(const Tensor&, std::span<const kernels::SamplingRow>,
                                Tensor&) override {
      return {};
    }
    absl::Status DoMaskLogits(const Tensor&, std::span<const int32_t>, Tensor&) override {
      return {};
    }
  };
  NotCuda fake;
  EXPECT_FALSE(cuda::IsCudaBackend(fake));
  EXPECT_EQ(cuda::CaptureOrReplay(fake, 1, [] { return absl::OkStatus(); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::GetCudaMemoryStats(fake).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace expertmesh::testing
