// The CUDA backend's memory: the activation pool reuses blocks once their last tensor dies, views
// keep blocks alive, tensors may outlive the backend, the weight arena aligns and bounds.
#include "kernels/cuda/backend/device_memory.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/cuda/backend/backend_test_util.h"

namespace expertmesh::testing {
namespace {

TEST(PoolBlockBytesTest, RoundsToSizeClasses) {
  EXPECT_EQ(cuda::PoolBlockBytes(0), 512u);
  EXPECT_EQ(cuda::PoolBlockBytes(1), 512u);
  EXPECT_EQ(cuda::PoolBlockBytes(513), 1024u);
  EXPECT_EQ(cuda::PoolBlockBytes(size_t{1} << 20), size_t{1} << 20);
  EXPECT_EQ(cuda::PoolBlockBytes((size_t{1} << 20) + 1), size_t{2} << 20);
  EXPECT_EQ(cuda::PoolBlockBytes((size_t{2} << 20) + 1), size_t{4} << 20);
}

using DeviceMemoryTest = CudaBackendTest;

TEST_F(DeviceMemoryTest, FreedBlockIsReused) {
  void* first = nullptr;
  {
    auto t = backend_->Allocate(DType::kF32, {1000});
    ASSERT_TRUE(t.ok()) << t.status();
    first = t->raw_data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % cuda::kDeviceAlignment, 0u);
    const cuda::CudaMemoryStats s = backend_->memory_stats();
    EXPECT_EQ(s.pool_in_use_bytes, 4096u);
    EXPECT_EQ(s.pool_device_allocations, 1u);
  }
  EXPECT_EQ(backend_->memory_stats().pool_in_use_bytes, 0u);
  EXPECT_EQ(backend_->memory_stats().pool_cached_bytes, 4096u);
  // Same size class, another dtype and shape: the same block.
  auto again = backend_->Allocate(DType::kBF16, {2, 1000});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->raw_data(), first);
  EXPECT_EQ(backend_->memory_stats().pool_device_allocations, 1u);
  EXPECT_EQ(backend_->memory_stats().pool_reuses, 1u);
}

TEST_F(DeviceMemoryTest, SmallRequestDoesNotTakeAHugeBlock) {
  void* big_ptr = nullptr;
  {
    auto big = backend_->Allocate(DType::kU8, {int64_t{8} << 20});
    ASSERT_TRUE(big.ok());
    big_ptr = big->raw_data();
  }
  auto small = backend_->Allocate(DType::kU8, {100});
  ASSERT_TRUE(small.ok());
  EXPECT_NE(small->raw_data(), big_ptr);
  EXPECT_EQ(backend_->memory_stats().pool_device_allocations, 2u);
}

TEST_F(DeviceMemoryTest, ViewsAndCopiesKeepTheBlock) {
  Tensor slice;
  void* ptr = nullptr;
  {
    auto t = backend_->Allocate(DType::kF32, {4, 256});
    ASSERT_TRUE(t.ok());
    ptr = t->raw_data();
    auto s = t->Slice(1, 3);
    ASSERT_TRUE(s.ok());
    slice = *s;
  }
  // The slice still owns the block: a new allocation must not get it.
  auto other = backend_->Allocate(DType::kF32, {4, 256});
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->raw_data(), ptr);
  const size_t in_use = backend_->memory_stats().pool_in_use_bytes;
  slice = Tensor();
  EXPECT_EQ(backend_->memory_stats().pool_in_use_bytes, in_use - 4096);
}

TEST_F(DeviceMemoryTest, SteadyStateAllocatesNothing) {
  // The Workspace pattern: the same buffers every step.
  for (int step = 0; step < 50; ++step) {
    auto a = backend_->Allocate(DType::kBF16, {8, 2048});
    auto b = backend_->Allocate(DType::kF32, {8, 151936});
    auto c = backend_->Allocate(DType::kI32, {8, 8});
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  }
  EXPECT_EQ(backend_->memory_stats().pool_device_allocations, 3u);
  EXPECT_EQ(backend_->memory_stats().pool_reuses, 147u);
}

TEST_F(DeviceMemoryTest, TensorsMayOutliveTheBackend) {
  auto act = backend_->Allocate(DType::kF32, {64});
  ASSERT_TRUE(act.ok());
  Tensor host = *Tensor::Zeros(DType::kBF16, {3, 5});
  auto weight = backend_->PrepareWeight(host);
  ASSERT_TRUE(weight.ok());
  Tensor a = *act, w = *weight;
  backend_.reset();
  // Freed after the backend: the pool's and arena's state live as long as their tensors.
  a = Tensor();
  w = Tensor();
  SUCCEED();
}

TEST_F(DeviceMemoryTest, WeightsAreAlignedAndRoundTrip) {
  std::mt19937 rng(1);
  std::vector<Tensor> hosts = {Random(DType::kBF16, {3, 7}, rng), Random(DType::kF32, {5}, rng),
                               Random(DType::kBF16, {129, 65}, rng)};
  for (const Tensor& h : hosts) {
    auto w = backend_->PrepareWeight(h);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->device(), kernels::Device::kCuda);
    EXPECT_EQ(w->dtype(), h.dtype());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(w->raw_data()) % cuda::kDeviceAlignment, 0u);
    EXPECT_TRUE(TensorsEqual(Download(*w), h));
  }
  EXPECT_GE(backend_->memory_stats().weight_bytes, 3u * 256u);
  // A device tensor and an undefined one pass through unchanged.
  auto dev = backend_->Allocate(DType::kF32, {4});
  ASSERT_TRUE(dev.ok());
  auto same = backend_->PrepareWeight(*dev);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->raw_data(), dev->raw_data());
  auto undefined = backend_->PrepareWeight(Tensor());
  ASSERT_TRUE(undefined.ok());
  EXPECT_FALSE(undefined->defined());
}

TEST_F(DeviceMemoryTest, GrowingArenaTakesWeightsLargerThanAChunk) {
  auto arena = cuda::WeightArena::Create(0, /*chunk_bytes=*/4096);
  ASSERT_TRUE(arena.ok());
  const std::vector<int64_t> ten = {10}, many = {3000};
  auto small = arena->Allocate(DType::kF32, ten);
  auto large = arena->Allocate(DType::kF32, many);  // 12000 bytes > a chunk
  auto after = arena->Allocate(DType::kF32, ten);
  ASSERT_TRUE(small.ok() && large.ok() && after.ok());
  EXPECT_EQ(arena->used_bytes(), 256u + 12032u + 256u);
  EXPECT_GE(arena->reserved_bytes(), 4096u + 12032u);
}

TEST_F(DeviceMemoryTest, FixedArenaReportsFull) {
  cuda::CudaBackendOptions options;
  options.weight_arena_bytes = 4096;
  std::unique_ptr<CudaBackend> b = MakeCudaBackend(options);
  ASSERT_NE(b, nullptr);
  Tensor host = *Tensor::Zeros(DType::kF32, {512});  // 2048 bytes
  ASSERT_TRUE(b->PrepareWeight(host).ok());
  ASSERT_TRUE(b->PrepareWeight(host).ok());
  auto third = b->PrepareWeight(host);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
}

TEST_F(DeviceMemoryTest, OutOfMemoryIsResourceExhausted) {
  auto huge = backend_->Allocate(DType::kU8, {int64_t{1} << 50});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted) << huge.status();
  // The failed allocation leaves the backend usable.
  auto fine = backend_->Allocate(DType::kU8, {64});
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(backend_->Synchronize().ok());
}

}  // namespace
}  // namespace expertmesh::testing
