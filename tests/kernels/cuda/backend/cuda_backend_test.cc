// CudaBackend plumbing: creation, host <-> device copies, Zero, streams, error flags reported as
// statuses at synchronisation, and the CUDA-free entry points of cuda_backend.h.
#include "kernels/cuda/backend/cuda_backend.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/error_flags.h"
#include "tests/kernels/cuda/backend/backend_test_util.h"

namespace expertmesh::testing {
namespace {

// Pure host logic: runs everywhere, GPU or not.
TEST(ErrorFlagsStatusTest, NamesTheOps) {
  EXPECT_TRUE(cuda::ErrorFlagsStatus(0).ok());
  const absl::Status one = cuda::ErrorFlagsStatus(cuda::kErrorEmbeddingId);
  EXPECT_EQ(one.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(one.message().find("embedding"), std::string::npos) << one;
  const absl::Status two = cuda::ErrorFlagsStatus(cuda::kErrorKvSlot | cuda::kErrorBlockId);
  EXPECT_NE(two.message().find("kv_cache_write"), std::string::npos) << two;
  EXPECT_NE(two.message().find("paged_attention"), std::string::npos) << two;
  const absl::Status unknown = cuda::ErrorFlagsStatus(1u << 30);
  EXPECT_NE(unknown.message().find("unknown"), std::string::npos) << unknown;
}

TEST(CreateCudaBackendTest, UnavailableWithoutGpuOrBadIndex) {
  cuda::CudaBackendOptions options;
  if (!cuda::CudaDeviceAvailable()) {
    auto b = cuda::CreateCudaBackend(options);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
    return;
  }
  options.device = 1000;
  auto b = cuda::CreateCudaBackend(options);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
}

using CudaBackendPlumbingTest = CudaBackendTest;

TEST_F(CudaBackendPlumbingTest, FactoryMakesACudaBackend) {
  auto b = cuda::CreateCudaBackend({});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(cuda::IsCudaBackend(**b));
  EXPECT_EQ((*b)->device(), kernels::Device::kCuda);
  EXPECT_EQ((*b)->Name(), "cuda:0");
  for (int op = 0; op < kernels::kNumOps; ++op) {
    EXPECT_TRUE((*b)->Supports(static_cast<kernels::Op>(op)))
        << kernels::OpName(static_cast<kernels::Op>(op));
  }
  auto stats = cuda::GetCudaMemoryStats(**b);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pool_in_use_bytes, 0u);
}

TEST_F(CudaBackendPlumbingTest, CopyRoundTrips) {
  std::mt19937 rng(7);
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1000}, int64_t{1} << 20}) {
    Tensor host = Random(DType::kF32, {n}, rng);
    Tensor dev = Upload(host);
    EXPECT_TRUE(TensorsEqual(Download(dev), host)) << n;
  }
  // Zero-element tensors are no-ops.
  auto empty = backend_->Allocate(DType::kF32, {0, 4});
  ASSERT_TRUE(empty.ok());
  float dummy = 0;
  EXPECT_TRUE(backend_->CopyFromHost(&dummy, *empty).ok());
  EXPECT_TRUE(backend_->CopyToHost(*empty, &dummy).ok());
}

TEST_F(CudaBackendPlumbingTest, HostBufferReusableAtOnceAndRingWraps) {
  // A tiny ring (4 KiB) so copies wrap and split; the host buffer is overwritten right after
  // each call, as the contract allows.
  cuda::CudaBackendOptions options;
  options.staging_bytes = 4096;
  backend_ = MakeCudaBackend(options);
  ASSERT_NE(backend_, nullptr);
  std::vector<int32_t> buffer(2500);  // 10000 bytes: more than the ring
  std::vector<Tensor> devs;
  for (int round = 0; round < 12; ++round) {
    const int64_t n = round % 3 == 0 ? 2500 : 300 + round;
    std::iota(buffer.begin(), buffer.begin() + n, round * 10000);
    auto t = backend_->Allocate(DType::kI32, {n});
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(backend_->CopyFromHost(buffer.data(), *t).ok());
    std::fill(buffer.begin(), buffer.end(), -1);
    devs.push_back(*t);
  }
  for (int round = 0; round < 12; ++round) {
    Tensor host = Download(devs[round]);
    for (int64_t i = 0; i < host.numel(); ++i) {
      ASSERT_EQ(host.data<int32_t>()[i], round * 10000 + i) << "round " << round << " i " << i;
    }
  }
}

TEST_F(CudaBackendPlumbingTest, ZeroClearsEveryByte) {
  std::mt19937 rng(3);
  Tensor dev = Upload(Random(DType::kBF16, {17, 33}, rng));
  ASSERT_TRUE(backend_->Zero(dev).ok());
  EXPECT_TRUE(TensorsEqual(Download(dev), *Tensor::Zeros(DType::kBF16, {17, 33})));
}

TEST_F(CudaBackendPlumbingTest, HostTensorsAreRejected) {
  Tensor host = *Tensor::Zeros(DType::kF32, {4});
  float buf[4];
  EXPECT_EQ(backend_->CopyFromHost(buf, host).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->CopyToHost(host, buf).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->Zero(host).code(), absl::StatusCode::kInvalidArgument);
  // And the ops' shared validation sees the device mismatch.
  Tensor ids = I32({0}, {1});
  auto out = backend_->Allocate(DType::kF32, {1, 4});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(backend_->Embedding(host, ids, *out).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaBackendPlumbingTest, ErrorFlagBecomesStatusOnceAndIsCleared) {
  // Set a bit directly: the report must name the op and clear the word.
  ASSERT_EQ(cudaMemset(backend_->error_flags(), 0, sizeof(uint32_t)), cudaSuccess);
  const uint32_t bit = cuda::kErrorRopePosition;
  ASSERT_EQ(cudaMemcpy(backend_->error_flags(), &bit, sizeof(bit), cudaMemcpyHostToDevice),
            cudaSuccess);
  const absl::Status s = backend_->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("rope"), std::string::npos) << s;
  EXPECT_TRUE(backend_->Synchronize().ok());
}

TEST_F(CudaBackendPlumbingTest, BadEmbeddingIdReportedAtSynchronize) {
  std::mt19937 rng(5);
  Tensor table = Upload(Random(DType::kBF16, {10, 8}, rng));
  Tensor ids = Upload(I32({1, 10, 3}, {3}));  // 10 is out of range
  auto out = backend_->Allocate(DType::kBF16, {3, 8});
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(backend_->Embedding(table, ids, *out).ok());  // enqueued: no verdict yet
  const absl::Status s = backend_->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("embedding"), std::string::npos) << s;
  EXPECT_TRUE(backend_->Synchronize().ok());
}

TEST_F(CudaBackendPlumbingTest, BadKvSlotReportedAtCopyToHost) {
  std::mt19937 rng(6);
  Tensor k = Upload(Random(DType::kF32, {2, 1, 4}, rng));
  Tensor v = Upload(Random(DType::kF32, {2, 1, 4}, rng));
  Tensor slots = Upload(I32({0, 99}, {2}));
  auto kc = backend_->Allocate(DType::kF32, {2, 4, 1, 4});
  auto vc = backend_->Allocate(DType::kF32, {2, 4, 1, 4});
  ASSERT_TRUE(kc.ok() && vc.ok());
  ASSERT_TRUE(backend_->KvCacheWrite(k, v, slots, *kc, *vc).ok());
  Tensor host = *Tensor::Empty(DType::kF32, {2, 4, 1, 4});
  const absl::Status s = backend_->CopyToHost(*kc, host.raw_data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("kv_cache_write"), std::string::npos) << s;
}

TEST_F(CudaBackendPlumbingTest, SetStreamIsHonoured) {
  auto stream = cuda::CudaStream::Create();
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(backend_->SetStream(kernels::Stream{stream->get()}).ok());
  EXPECT_EQ(backend_->stream(), stream->get());
  std::mt19937 rng(8);
  Tensor host = Random(DType::kF32, {256}, rng);
  Tensor dev = Upload(host);
  ASSERT_TRUE(backend_->Zero(dev).ok());
  // Enqueued on our stream: after synchronising only that stream, the zeros are there.
  ASSERT_EQ(cudaStreamSynchronize(stream->get()), cudaSuccess);
  std::vector<float> raw(256, 1.0f);
  ASSERT_EQ(cudaMemcpy(raw.data(), dev.raw_data(), 1024, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(raw[0], 0.0f);
  EXPECT_EQ(raw[255], 0.0f);
  ASSERT_TRUE(backend_->SetStream(kernels::Stream{}).ok());
  EXPECT_NE(backend_->stream(), stream->get());
  EXPECT_TRUE(backend_->Synchronize().ok());
}

// Backend::SampleTokens on the GPU draws what the CPU backend (the reference) draws: greedy,
// temperature, top_k, top_p, min_p and seeded draws, every row of a batch at once; only the
// [rows] ids come back.
TEST_F(CudaBackendPlumbingTest, SampleTokensMatchesTheCpuBackend) {
  auto cpu = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::mt19937 rng(11);
  for (int64_t vocab : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{151936}}) {
    std::vector<kernels::SamplingRow> rows;
    for (uint64_t seed = 0; seed < 4; ++seed) {
      rows.push_back({.temperature = 0});
      rows.push_back({.temperature = 1.0f, .seed = seed, .counter = seed * 3});
      rows.push_back({.temperature = 0.7f, .top_k = 40, .seed = seed, .counter = 1});
      rows.push_back({.temperature = 1.3f, .top_p = 0.8f, .seed = seed + 9, .counter = 5});
      rows.push_back({.temperature = 0.9f, .min_p = 0.1f, .seed = seed + 17, .counter = 2});
      rows.push_back(
          {.temperature = 1.0f, .top_k = 5, .top_p = 0.5f, .min_p = 0.01f, .seed = seed});
    }
    const int64_t n = static_cast<int64_t>(rows.size());
    Tensor logits = Random(DType::kF32, {n, vocab}, rng, -6.0f, 6.0f);
    Tensor want = *Tensor::Empty(DType::kI32, {n});
    ASSERT_TRUE((*cpu)->SampleTokens(logits, rows, want).ok());
    Tensor dev_logits = Upload(logits);
    auto dev_tokens = backend_->Allocate(DType::kI32, {n});
    ASSERT_TRUE(dev_tokens.ok());
    ASSERT_TRUE(backend_->SampleTokens(dev_logits, rows, *dev_tokens).ok());
    ASSERT_TRUE(backend_->Synchronize().ok());
    EXPECT_TRUE(TensorsEqual(Download(*dev_tokens), want)) << "vocab " << vocab;
  }
}

// Backend::MaskLogits through CudaBackend (the row list goes to the device with the call):
// bit for bit the CPU backend's result, rows without a mask untouched.
TEST_F(CudaBackendPlumbingTest, MaskLogitsMatchesTheCpuBackend) {
  auto cpu = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::mt19937 rng(5);
  for (int64_t vocab : {int64_t{1}, int64_t{70}, int64_t{151936}}) {
    const int64_t words = (vocab + 31) / 32;
    const std::vector<int32_t> rows = {3, 0, 5};
    Tensor logits = Random(DType::kF32, {6, vocab}, rng, -6.0f, 6.0f);
    Tensor masks = *Tensor::Empty(DType::kI32, {3, words});
    for (int64_t i = 0; i < 3 * words; ++i) masks.data<int32_t>()[i] = static_cast<int32_t>(rng());
    Tensor dev_logits = Upload(logits);
    Tensor dev_masks = Upload(masks);
    ASSERT_TRUE((*cpu)->MaskLogits(masks, rows, logits).ok());
    ASSERT_TRUE(backend_->MaskLogits(dev_masks, rows, dev_logits).ok());
    ASSERT_TRUE(backend_->Synchronize().ok());
    EXPECT_TRUE(TensorsEqual(Download(dev_logits), logits)) << "vocab " << vocab;
  }
}

TEST_F(CudaBackendPlumbingTest, SampleTokensReportsANanRowAtSynchronize) {
  std::vector<float> values = {0.5f, std::nanf(""), 1.0f, 2.0f};
  Tensor host = *Tensor::Empty(DType::kF32, {2, 2});
  std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(float));
  Tensor dev = Upload(host);
  auto tokens = backend_->Allocate(DType::kI32, {2});
  ASSERT_TRUE(tokens.ok());
  const std::vector<kernels::SamplingRow> rows = {{.temperature = 0}, {.temperature = 0}};
  ASSERT_TRUE(backend_->SampleTokens(dev, rows, *tokens).ok());  // enqueued
  const absl::Status s = backend_->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("sampling"), absl::string_view::npos) << s;
  EXPECT_TRUE(backend_->Synchronize().ok()) << "the flag is cleared once reported";
}

}  // namespace
}  // namespace expertmesh::testing
