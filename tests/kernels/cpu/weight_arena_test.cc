// The CPU backend's weight arena: exact copies, packed and aligned, chunks that outlive the arena,
// weights larger than a chunk, and the backend's choice between copying and using in place.
#include "kernels/cpu/weight_arena.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace expertmesh::kernels::cpu {
namespace {

using kernels::Tensor;

Tensor Filled(DType dtype, std::initializer_list<int64_t> shape, uint32_t seed) {
  Tensor t = *Tensor::Empty(dtype, shape);
  auto* bytes = static_cast<uint8_t*>(t.raw_data());
  for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(seed * 131 + i * 7);
  return t;
}

void ExpectSameContents(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(std::vector<int64_t>(a.shape().begin(), a.shape().end()),
            std::vector<int64_t>(b.shape().begin(), b.shape().end()));
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0);
}

TEST(WeightArena, CopiesAreExactAlignedAndPackedInOrder) {
  WeightArena arena(size_t{4} << 20);
  std::vector<Tensor> hosts, copies;
  for (uint32_t i = 0; i < 5; ++i) {
    hosts.push_back(Filled(i % 2 == 0 ? DType::kBF16 : DType::kF32, {37, 11 + i}, i));
    copies.push_back(*arena.Copy(hosts.back()));
  }
  for (size_t i = 0; i < hosts.size(); ++i) {
    ExpectSameContents(hosts[i], copies[i]);
    EXPECT_NE(copies[i].raw_data(), hosts[i].raw_data());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(copies[i].raw_data()) % kernels::kCpuAlignment, 0u);
    if (i > 0) {
      // One after another in the same chunk, each starting at the next aligned address.
      const auto prev_end =
          reinterpret_cast<uintptr_t>(copies[i - 1].raw_data()) + copies[i - 1].nbytes();
      const auto begin = reinterpret_cast<uintptr_t>(copies[i].raw_data());
      EXPECT_GE(begin, prev_end);
      EXPECT_LT(begin - prev_end, kernels::kCpuAlignment);
    }
  }
  size_t total = 0;
  for (const Tensor& c : copies) total += c.nbytes();
  EXPECT_GE(arena.bytes_used(), total);
  EXPECT_LT(arena.bytes_used(), total + copies.size() * kernels::kCpuAlignment);
}

TEST(WeightArena, ChunksStartOnHugePageBoundariesAndFillUp) {
  WeightArena arena(size_t{2} << 20);
  // Three 768 KiB weights: two fit the first 2 MiB chunk, the third opens a second one.
  std::vector<Tensor> copies;
  for (uint32_t i = 0; i < 3; ++i)
    copies.push_back(*arena.Copy(Filled(DType::kBF16, {384, 1024}, i)));
  const auto addr = [&](int i) { return reinterpret_cast<uintptr_t>(copies[i].raw_data()); };
  EXPECT_EQ(addr(0) % (size_t{2} << 20), 0u);
  EXPECT_EQ(addr(1), addr(0) + copies[0].nbytes());
  EXPECT_EQ(addr(2) % (size_t{2} << 20), 0u);
}

TEST(WeightArena, WeightLargerThanAChunkGetsItsOwnAndTheChunkKeepsFilling) {
  WeightArena arena(size_t{2} << 20);
  const Tensor small_a = *arena.Copy(Filled(DType::kF32, {16, 16}, 1));
  const Tensor big_host = Filled(DType::kBF16, {3, 1 << 20}, 2);  // 6 MiB
  const Tensor big = *arena.Copy(big_host);
  const Tensor small_b = *arena.Copy(Filled(DType::kF32, {16, 16}, 3));
  ExpectSameContents(big_host, big);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.raw_data()) % (size_t{2} << 20), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small_b.raw_data()),
            reinterpret_cast<uintptr_t>(small_a.raw_data()) + small_a.nbytes());
}

TEST(WeightArena, CopiesByThePoolsThreadsAreExact) {
  ThreadPool pool(2);
  WeightArena arena(size_t{4} << 20);
  // Pieces of 2 MiB: several whole ones and a partial last one, at an unaligned size.
  const Tensor host = Filled(DType::kBF16, {5, (3 << 20) / 5 + 77}, 6);
  ExpectSameContents(host, *arena.Copy(host, &pool));
  const Tensor small = Filled(DType::kF32, {3, 5}, 7);
  ExpectSameContents(small, *arena.Copy(small, &pool));
}

TEST(WeightArena, CopiesOutliveTheArena) {
  const Tensor host = Filled(DType::kBF16, {64, 64}, 9);
  Tensor copy;
  {
    WeightArena arena;
    copy = *arena.Copy(host);
  }
  ExpectSameContents(host, copy);
  // Still writable memory of ours.
  std::memset(copy.raw_data(), 0, copy.nbytes());
  EXPECT_EQ(static_cast<const uint8_t*>(copy.raw_data())[copy.nbytes() - 1], 0);
}

TEST(WeightArena, EmptyTensorCopies) {
  WeightArena arena;
  const Tensor copy = *arena.Copy(*Tensor::Empty(DType::kBF16, {0, 8}));
  EXPECT_EQ(copy.numel(), 0);
}

TEST(CpuBackendWeights, CopiedOrUsedInPlaceAsConfigured) {
  const Tensor host = Filled(DType::kBF16, {32, 48}, 4);
  for (bool copy : {false, true}) {
    CpuBackendOptions options;
    options.num_threads = 1;
    options.copy_weights = copy;
    std::unique_ptr<CpuBackend> backend = *CpuBackend::Create(options);
    const Tensor prepared = *backend->PrepareWeight(host);
    ExpectSameContents(host, prepared);
    EXPECT_EQ(prepared.raw_data() != host.raw_data(), copy);
    // An absent optional weight stays absent.
    EXPECT_FALSE(backend->PrepareWeight(Tensor())->defined());
  }
}

}  // namespace
}  // namespace expertmesh::kernels::cpu
