// LaunchEmbedding against the CPU backend's Embedding. A lookup is a copy (same dtype) or one
// conversion through fp32 rounded to nearest even, identically on both sides, so outputs must
// be bit-identical. Covers every dtype pair, the 16-byte vector path and its scalar fallbacks
// (odd rows, a misaligned table), one token, repeated ids, more tokens than one grid's worth of
// blocks, and out-of-range ids (error flag, zeroed row).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/embedding.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceFlags;
using testing::DeviceTensor;

struct EmbeddingCase {
  int64_t vocab;
  int64_t hidden;
  int64_t tokens;
  DType table_dtype;
  DType out_dtype;
  size_t table_offset_bytes = 0;  // nonzero: a misaligned table (scalar path)
};

std::string Name(const ::testing::TestParamInfo<EmbeddingCase>& info) {
  const EmbeddingCase& c = info.param;
  return testing::DTypeShort(c.table_dtype) + "_to_" + testing::DTypeShort(c.out_dtype) + "_v" +
         std::to_string(c.vocab) + "_h" + std::to_string(c.hidden) + "_n" +
         std::to_string(c.tokens) + (c.table_offset_bytes ? "_misaligned" : "");
}

Tensor RandomIds(int64_t n, int64_t vocab, std::mt19937& rng) {
  Tensor ids = testing::HostEmpty(DType::kI32, {n});
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  for (int64_t i = 0; i < n; ++i) ids.data<int32_t>()[i] = dist(rng);
  return ids;
}

struct GpuRun {
  Tensor out;
  uint32_t flags = 0;
};

GpuRun RunGpu(const EmbeddingCase& c, const Tensor& table, const Tensor& ids) {
  testing::OffsetDeviceTensor d_table = testing::ToDeviceAt(table, c.table_offset_bytes);
  DeviceTensor d_ids = testing::ToDevice(ids);
  DeviceTensor d_out = testing::DevicePoisoned(c.out_dtype, {c.tokens, c.hidden});
  DeviceFlags flags;
  EmbeddingArgs a;
  a.table = d_table.data;
  a.table_dtype = c.table_dtype;
  a.ids = d_ids.tensor.data<int32_t>();
  a.out = d_out.tensor.raw_data();
  a.out_dtype = c.out_dtype;
  a.num_tokens = c.tokens;
  a.vocab = c.vocab;
  a.hidden = c.hidden;
  a.error_flags = flags.get();
  EXPECT_EQ(LaunchEmbedding(a, nullptr), cudaSuccess);
  GpuRun r;
  r.flags = flags.Read();
  r.out = testing::ToHost(d_out.tensor);
  return r;
}

class EmbeddingGpuTest : public CudaTestWithParam<EmbeddingCase> {};

TEST_P(EmbeddingGpuTest, BitIdenticalToCpu) {
  const EmbeddingCase& c = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(c.vocab * 31 + c.hidden));
  const Tensor table = testing::RandomTensor(c.table_dtype, {c.vocab, c.hidden}, rng, -3.0f, 3.0f);
  const Tensor ids = RandomIds(c.tokens, c.vocab, rng);
  Tensor want = testing::HostEmpty(c.out_dtype, {c.tokens, c.hidden});
  auto cpu = testing::CpuReference();
  ASSERT_TRUE(cpu->Embedding(table, ids, want).ok());
  const GpuRun r = RunGpu(c, table, ids);
  EXPECT_EQ(r.flags, 0u);
  EXPECT_TRUE(testing::BitEqual(r.out, want));
}

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;
constexpr DType kF16 = DType::kF16;

INSTANTIATE_TEST_SUITE_P(
    Shapes, EmbeddingGpuTest,
    ::testing::Values(
        // Same dtype: 16-byte vectors (rows of 16 bytes multiples) and the scalar fallbacks.
        EmbeddingCase{1000, 7168, 1, kBF16, kBF16}, EmbeddingCase{129280, 64, 37, kBF16, kBF16},
        EmbeddingCase{50, 7, 9, kBF16, kBF16}, EmbeddingCase{50, 5, 9, kF32, kF32},
        EmbeddingCase{50, 64, 9, kF32, kF32}, EmbeddingCase{50, 64, 9, kBF16, kBF16, 2},
        EmbeddingCase{50, 64, 9, kF32, kF32, 4},
        // Conversions through fp32.
        EmbeddingCase{300, 33, 17, kBF16, kF32}, EmbeddingCase{300, 33, 17, kF32, kBF16},
        EmbeddingCase{300, 33, 17, kF16, kF32}, EmbeddingCase{300, 2048, 3, kF16, kBF16},
        // More tokens than the 65535 blocks of one grid.
        EmbeddingCase{1000, 8, 70000, kBF16, kBF16}, EmbeddingCase{1000, 3, 70000, kBF16, kF32}),
    Name);

// Ids outside [0, vocab) set kErrorEmbeddingId and zero their rows; the other rows are looked
// up as usual (compared with the CPU on the same ids with the bad ones replaced).
class EmbeddingErrorTest : public CudaTest {};

TEST_F(EmbeddingErrorTest, OutOfRangeIdsFlagAndZeroTheirRows) {
  for (DType dtype : {kBF16, kF32}) {
    SCOPED_TRACE(testing::DTypeShort(dtype));
    for (DType out_dtype : {kBF16, kF32}) {
      const EmbeddingCase c{100, 24, 6, dtype, out_dtype};
      std::mt19937 rng(5);
      const Tensor table = testing::RandomTensor(dtype, {c.vocab, c.hidden}, rng);
      Tensor ids = RandomIds(c.tokens, c.vocab, rng);
      ids.data<int32_t>()[1] = -1;
      ids.data<int32_t>()[4] = static_cast<int32_t>(c.vocab);
      Tensor fixed = testing::Clone(ids);
      fixed.data<int32_t>()[1] = fixed.data<int32_t>()[4] = 0;
      Tensor want = testing::HostEmpty(out_dtype, {c.tokens, c.hidden});
      auto cpu = testing::CpuReference();
      ASSERT_TRUE(cpu->Embedding(table, fixed, want).ok());
      for (int64_t t : {1, 4}) {
        for (int64_t i = 0; i < c.hidden; ++i) testing::SetValue(want, t * c.hidden + i, 0.0f);
      }
      const GpuRun r = RunGpu(c, table, ids);
      EXPECT_EQ(r.flags, static_cast<uint32_t>(kErrorEmbeddingId));
      EXPECT_TRUE(testing::BitEqual(r.out, want));
    }
  }
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(EmbeddingLaunchTest, UnsupportedOutputDtypeIsInvalidValue) {
  EmbeddingArgs a;
  a.out_dtype = DType::kF16;
  a.num_tokens = 1;
  a.hidden = 1;
  EXPECT_EQ(LaunchEmbedding(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
