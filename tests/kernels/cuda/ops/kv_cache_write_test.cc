// LaunchKvCacheWrite against the CPU backend's KvCacheWrite. Same-dtype writes are copies and
// f32 into a bf16 cache is one rounding to nearest even on both sides, so the whole caches
// (which start with the same random contents, to catch writes to the wrong slot) must be
// bit-identical. Covers padding slots (-1), a token-per-slot decode, prefill into scattered
// slots, block size 1, DeepSeek's 192/128 head dims, the MLA latent cache written as k and v
// at once (one tensor, one cache), odd row sizes (scalar copies), a batch of nothing but
// padding, more tokens than one grid, and slots past the cache (error flag, token skipped).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/kv_cache_write.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/ops/ops_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTest;
using testing::CudaTestWithParam;
using testing::DeviceFlags;
using testing::DeviceTensor;

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;

struct KvCase {
  std::string name;
  int64_t tokens, kv_heads, k_dim, v_dim;
  DType dtype, cache_dtype;
  int64_t block_size, num_blocks;
  double padding;          // fraction of tokens with slot -1
  bool shared_kv = false;  // MLA: v is k and v_cache is k_cache
};

std::string Name(const ::testing::TestParamInfo<KvCase>& info) { return info.param.name; }

struct Inputs {
  Tensor k, v, slots, k_cache, v_cache;
};

Inputs Build(const KvCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  in.k = testing::RandomTensor(c.dtype, {c.tokens, c.kv_heads, c.k_dim}, rng, -3.0f, 3.0f);
  in.v = c.shared_kv
             ? in.k
             : testing::RandomTensor(c.dtype, {c.tokens, c.kv_heads, c.v_dim}, rng, -3.0f, 3.0f);
  in.k_cache = testing::RandomTensor(
      c.cache_dtype, {c.num_blocks, c.block_size, c.kv_heads, c.k_dim}, rng, 10.0f, 20.0f);
  in.v_cache = c.shared_kv ? in.k_cache
                           : testing::RandomTensor(
                                 c.cache_dtype, {c.num_blocks, c.block_size, c.kv_heads, c.v_dim},
                                 rng, 10.0f, 20.0f);
  // Distinct slots in a random order; a fraction of the tokens is padding.
  std::vector<int32_t> all(c.num_blocks * c.block_size);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  EXPECT_GE(all.size(), static_cast<size_t>(c.tokens));
  in.slots = testing::HostEmpty(DType::kI32, {c.tokens});
  std::bernoulli_distribution pad(c.padding);
  for (int64_t t = 0; t < c.tokens; ++t) in.slots.data<int32_t>()[t] = pad(rng) ? -1 : all[t];
  return in;
}

struct Caches {
  Tensor k_cache, v_cache;
  uint32_t flags = 0;
};

Caches RunCpu(const Inputs& in, const Tensor& slots, bool shared_kv) {
  Caches out{testing::Clone(in.k_cache), Tensor()};
  out.v_cache = shared_kv ? out.k_cache : testing::Clone(in.v_cache);
  auto cpu = testing::CpuReference();
  const absl::Status st = cpu->KvCacheWrite(in.k, in.v, slots, out.k_cache, out.v_cache);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

Caches RunGpu(const KvCase& c, const Inputs& in) {
  DeviceTensor k = testing::ToDevice(in.k), v, slots = testing::ToDevice(in.slots);
  if (!c.shared_kv) v = testing::ToDevice(in.v);
  DeviceTensor kc = testing::ToDevice(in.k_cache), vc;
  if (!c.shared_kv) vc = testing::ToDevice(in.v_cache);
  DeviceFlags flags;
  KvCacheWriteArgs a;
  a.k = k.tensor.raw_data();
  a.v = c.shared_kv ? k.tensor.raw_data() : v.tensor.raw_data();
  a.dtype = c.dtype;
  a.slot_mapping = slots.tensor.data<int32_t>();
  a.k_cache = kc.tensor.raw_data();
  a.v_cache = c.shared_kv ? kc.tensor.raw_data() : vc.tensor.raw_data();
  a.cache_dtype = c.cache_dtype;
  a.num_tokens = c.tokens;
  a.kv_heads = c.kv_heads;
  a.k_dim = c.k_dim;
  a.v_dim = c.v_dim;
  a.num_slots = c.num_blocks * c.block_size;
  a.error_flags = flags.get();
  EXPECT_EQ(LaunchKvCacheWrite(a, nullptr), cudaSuccess);
  Caches out;
  out.flags = flags.Read();
  out.k_cache = testing::ToHost(kc.tensor);
  out.v_cache = c.shared_kv ? out.k_cache : testing::ToHost(vc.tensor);
  return out;
}

class KvCacheWriteGpuTest : public CudaTestWithParam<KvCase> {};

TEST_P(KvCacheWriteGpuTest, BitIdenticalToCpu) {
  const KvCase& c = GetParam();
  const Inputs in = Build(c, 29u + static_cast<uint32_t>(c.name.size()));
  const Caches want = RunCpu(in, in.slots, c.shared_kv);
  const Caches got = RunGpu(c, in);
  EXPECT_EQ(got.flags, 0u);
  EXPECT_TRUE(testing::BitEqual(got.k_cache, want.k_cache)) << "k_cache";
  if (!c.shared_kv) {
    EXPECT_TRUE(testing::BitEqual(got.v_cache, want.v_cache)) << "v_cache";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, KvCacheWriteGpuTest,
    ::testing::Values(
        KvCase{"one_token_f32", 1, 1, 64, 64, kF32, kF32, 1, 3, 0.0},
        KvCase{"llama_decode_bf16", 5, 8, 128, 128, kBF16, kBF16, 16, 10, 0.3},
        KvCase{"prefill_bf16", 300, 8, 128, 128, kBF16, kBF16, 16, 40, 0.05},
        KvCase{"deepseek_192_128_bf16", 9, 16, 192, 128, kBF16, kBF16, 64, 4, 0.2},
        KvCase{"mla_latent_shared_bf16", 7, 1, 576, 576, kBF16, kBF16, 64, 2, 0.2, true},
        KvCase{"mla_latent_shared_f32_into_bf16", 7, 1, 576, 576, kF32, kBF16, 64, 2, 0.2, true},
        KvCase{"f32_into_bf16", 9, 2, 64, 64, kF32, kBF16, 16, 4, 0.2},
        KvCase{"f32_into_bf16_odd", 5, 3, 5, 3, kF32, kBF16, 4, 4, 0.2},
        KvCase{"odd_f32", 6, 3, 3, 5, kF32, kF32, 2, 8, 0.2},
        KvCase{"odd_bf16", 6, 1, 7, 9, kBF16, kBF16, 3, 5, 0.2},
        KvCase{"all_padding", 4, 2, 16, 16, kBF16, kBF16, 4, 2, 1.0},
        // More tokens than the 65535 blocks of one grid.
        KvCase{"many_tokens", 70000, 1, 8, 8, kBF16, kBF16, 16, 4700, 0.1}),
    Name);

// A slot past num_blocks * block_size sets kErrorKvSlot and that token is not written; the
// others are (compared with the CPU on the same slots, the bad ones turned into padding).
class KvCacheWriteErrorTest : public CudaTest {};

TEST_F(KvCacheWriteErrorTest, SlotPastTheCacheIsFlaggedAndSkipped) {
  for (DType cache : {kBF16, kF32}) {
    SCOPED_TRACE(testing::DTypeShort(cache));
    const KvCase c{"bad_slots", 8, 2, 16, 8, kF32, cache, 4, 3, 0.0};
    Inputs in = Build(c, 11);
    in.slots.data<int32_t>()[2] = 12;  // == num_slots
    in.slots.data<int32_t>()[6] = 1 << 30;
    Tensor fixed = testing::Clone(in.slots);
    fixed.data<int32_t>()[2] = fixed.data<int32_t>()[6] = -1;
    const Caches want = RunCpu(in, fixed, false);
    const Caches got = RunGpu(c, in);
    EXPECT_EQ(got.flags, static_cast<uint32_t>(kErrorKvSlot));
    EXPECT_TRUE(testing::BitEqual(got.k_cache, want.k_cache)) << "k_cache";
    EXPECT_TRUE(testing::BitEqual(got.v_cache, want.v_cache)) << "v_cache";
  }
}

// Argument checks return before touching the device, so this runs without a GPU too.
TEST(KvCacheWriteLaunchTest, UnsupportedDtypePairsAreInvalidValue) {
  KvCacheWriteArgs a;
  a.num_tokens = 1;
  a.dtype = DType::kBF16;
  a.cache_dtype = DType::kF32;  // bf16 into an f32 cache is not offered
  EXPECT_EQ(LaunchKvCacheWrite(a, nullptr), cudaErrorInvalidValue);
  a.dtype = DType::kF16;
  a.cache_dtype = DType::kF16;
  EXPECT_EQ(LaunchKvCacheWrite(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
