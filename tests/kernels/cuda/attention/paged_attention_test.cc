// LaunchPagedAttention against the CPU backend's PagedAttention on the same inputs, through
// every kernel that can take the case (auto, simple, split-K, tensor cores).
// Tolerances: f32 q (f32 or bf16 cache): max |gpu - cpu| <= 1e-4. bf16 q and cache: both
// sides read the same bf16 inputs; the GPU rounds P to bf16 on tensor cores and its output to
// bf16, so max |gpu - cpu| <= 2e-2 and cosine(gpu, cpu) > 0.9999.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/error_flags.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace expertmesh::cuda {
namespace {

using kernels::Tensor;
using testing::CudaTestWithParam;
using testing::DeviceTensor;
using testing::ToDevice;
using testing::ToHost;

struct Seq {
  int q_len;
  int seq_len;
};

struct AttnCase {
  std::string name;
  std::vector<Seq> seqs;
  int q_heads;
  int kv_heads;
  int k_dim;
  int v_dim;
  int block_size;
  DType q_dtype;
  DType cache_dtype;
  bool kv_same = false;  // MLA: v_cache is k_cache (k_dim == v_dim)
};

std::string Name(const ::testing::TestParamInfo<AttnCase>& info) { return info.param.name; }

// The inputs of one case, on the host.
struct Inputs {
  Tensor q, k_cache, v_cache, query_start, seq_lens, block_tables;
  int64_t n = 0, num_blocks = 0, max_blocks = 0;
  float scale = 1.0f;
};

Tensor Make(DType dtype, std::initializer_list<int64_t> shape) {
  auto t = Tensor::Empty(dtype, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

void FillRandom(Tensor& t, std::mt19937& rng, float amplitude) {
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::kF32) {
      t.data<float>()[i] = dist(rng);
    } else {
      t.data<uint16_t>()[i] = FloatToBf16(dist(rng));
    }
  }
}

Inputs BuildInputs(const AttnCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  const int64_t seqs = static_cast<int64_t>(c.seqs.size());
  std::vector<int64_t> used(seqs);
  for (int64_t s = 0; s < seqs; ++s) {
    in.n += c.seqs[s].q_len;
    used[s] = (c.seqs[s].seq_len + c.block_size - 1) / c.block_size;
    in.num_blocks += used[s];
    in.max_blocks = std::max(in.max_blocks, used[s]);
  }
  in.max_blocks += 1;  // a spare column, left -1: never read
  in.num_blocks += 5;  // blocks no sequence owns
  // Block ids in a random order, so that no sequence's blocks are contiguous.
  std::vector<int32_t> ids(in.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  in.q = Make(c.q_dtype, {in.n, c.q_heads, c.k_dim});
  FillRandom(in.q, rng, 1.5f);
  in.k_cache = Make(c.cache_dtype, {in.num_blocks, c.block_size, c.kv_heads, c.k_dim});
  FillRandom(in.k_cache, rng, 1.0f);
  if (c.kv_same) {
    in.v_cache = in.k_cache;
  } else {
    in.v_cache = Make(c.cache_dtype, {in.num_blocks, c.block_size, c.kv_heads, c.v_dim});
    FillRandom(in.v_cache, rng, 1.0f);
  }
  in.query_start = Make(DType::kI32, {seqs + 1});
  in.seq_lens = Make(DType::kI32, {seqs});
  in.block_tables = Make(DType::kI32, {seqs, in.max_blocks});
  int32_t* qs = in.query_start.data<int32_t>();
  int32_t* table = in.block_tables.data<int32_t>();
  std::fill(table, table + seqs * in.max_blocks, -1);
  qs[0] = 0;
  size_t next = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    qs[s + 1] = qs[s] + c.seqs[s].q_len;
    in.seq_lens.data<int32_t>()[s] = c.seqs[s].seq_len;
    for (int64_t b = 0; b < used[s]; ++b) table[s * in.max_blocks + b] = ids[next++];
  }
  in.scale = 1.0f / std::sqrt(static_cast<float>(c.k_dim));
  return in;
}

std::vector<float> ToFloats(const Tensor& t) {
  std::vector<float> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    v[i] = t.dtype() == DType::kF32 ? t.data<float>()[i] : Bf16ToFloat(t.data<uint16_t>()[i]);
  }
  return v;
}

// The CPU backend's answer.
std::vector<float> CpuReference(const AttnCase& c, const Inputs& in) {
  auto backend = kernels::cpu::CpuBackend::Create({});
  EXPECT_TRUE(backend.ok()) << backend.status();
  Tensor out = Make(c.q_dtype, {in.n, c.q_heads, c.v_dim});
  kernels::PagedAttentionBatch batch{in.query_start, in.seq_lens, in.block_tables};
  const absl::Status st =
      (*backend)->PagedAttention(in.q, in.k_cache, in.v_cache, batch, in.scale, out);
  EXPECT_TRUE(st.ok()) << st;
  return ToFloats(out);
}

struct GpuResult {
  std::vector<float> out;
  uint32_t flags = 0;
  cudaError_t launch = cudaSuccess;
  size_t workspace_bytes = 0;
};

GpuResult RunGpu(const AttnCase& c, const Inputs& in, PagedAttentionPath path) {
  DeviceTensor q = ToDevice(in.q), k = ToDevice(in.k_cache);
  DeviceTensor v;
  if (!c.kv_same) v = ToDevice(in.v_cache);
  DeviceTensor qs = ToDevice(in.query_start), lens = ToDevice(in.seq_lens);
  DeviceTensor tables = ToDevice(in.block_tables);
  DeviceTensor out = ToDevice(Make(c.q_dtype, {in.n, c.q_heads, c.v_dim}));
  // Poison: 0xff.. is a NaN in f32 and bf16, so an element nobody writes fails the check.
  EXPECT_EQ(cudaMemset(out.buffer.get(), 0xff, out.tensor.nbytes()), cudaSuccess);
  auto flags = DeviceBuffer::Allocate(sizeof(uint32_t));
  EXPECT_TRUE(flags.ok());
  EXPECT_EQ(cudaMemset(flags->get(), 0, sizeof(uint32_t)), cudaSuccess);

  PagedAttentionArgs args;
  args.q = q.tensor.raw_data();
  args.q_dtype = c.q_dtype;
  args.k_cache = k.tensor.raw_data();
  args.v_cache = c.kv_same ? k.tensor.raw_data() : v.tensor.raw_data();
  args.cache_dtype = c.cache_dtype;
  args.query_start = qs.tensor.data<int32_t>();
  args.seq_lens = lens.tensor.data<int32_t>();
  args.block_tables = tables.tensor.data<int32_t>();
  args.out = out.tensor.raw_data();
  args.num_tokens = in.n;
  args.num_seqs = static_cast<int64_t>(c.seqs.size());
  args.q_heads = c.q_heads;
  args.kv_heads = c.kv_heads;
  args.k_dim = c.k_dim;
  args.v_dim = c.v_dim;
  args.num_blocks = in.num_blocks;
  args.block_size = c.block_size;
  args.max_blocks_per_seq = in.max_blocks;
  args.scale = in.scale;
  args.error_flags = flags->as<uint32_t>();
  args.path = path;
  GpuResult r;
  r.workspace_bytes = PagedAttentionWorkspaceBytes(args);
  DeviceBuffer workspace;
  if (r.workspace_bytes > 0) {
    auto ws = DeviceBuffer::Allocate(r.workspace_bytes);
    EXPECT_TRUE(ws.ok());
    workspace = std::move(*ws);
    // Poisoned too: the reduce must read only what the split kernel wrote.
    EXPECT_EQ(cudaMemset(workspace.get(), 0xff, r.workspace_bytes), cudaSuccess);
  }
  args.workspace = workspace.get();
  args.workspace_bytes = r.workspace_bytes;
  r.launch = LaunchPagedAttention(args, nullptr);
  if (r.launch != cudaSuccess) return r;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&r.flags, flags->get(), sizeof(uint32_t), cudaMemcpyDeviceToHost),
            cudaSuccess);
  r.out = ToFloats(ToHost(out.tensor));
  return r;
}

bool TensorCoreDims(const AttnCase& c) {
  return c.q_dtype == DType::kBF16 && c.cache_dtype == DType::kBF16 &&
         ((c.k_dim == 64 && c.v_dim == 64) || (c.k_dim == 128 && c.v_dim == 128) ||
          (c.k_dim == 192 && c.v_dim == 128));
}

// Work of the simple kernel (one CTA per token and head over its whole context): skipped on
// the biggest cases, which it would take seconds for.
int64_t QueryKeyPairs(const AttnCase& c) {
  int64_t pairs = 0;
  for (const Seq& s : c.seqs) pairs += static_cast<int64_t>(s.q_len) * s.seq_len;
  return pairs * c.q_heads;
}

void ExpectClose(const AttnCase& c, const std::vector<float>& want, const std::vector<float>& got) {
  ASSERT_EQ(want.size(), got.size());
  const bool exact = c.q_dtype == DType::kF32;
  const double tol = exact ? 1e-4 : 2e-2;
  double max_diff = 0.0, dot = 0.0, ww = 0.0, gg = 0.0;
  int64_t bad = 0, first_bad = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(want[i]) - got[i]);
    if (!std::isfinite(got[i]) || !(d <= tol)) {
      if (first_bad < 0) first_bad = static_cast<int64_t>(i);
      ++bad;
    }
    if (std::isfinite(d)) max_diff = std::max(max_diff, d);
    dot += static_cast<double>(want[i]) * got[i];
    ww += static_cast<double>(want[i]) * want[i];
    gg += static_cast<double>(got[i]) * got[i];
  }
  EXPECT_EQ(bad, 0) << bad << " of " << want.size() << " elements off by more than " << tol
                    << " (or not finite); first at " << first_bad << ": cpu "
                    << (first_bad >= 0 ? want[first_bad] : 0.0f) << " gpu "
                    << (first_bad >= 0 ? got[first_bad] : 0.0f) << "; max diff " << max_diff;
  if (!exact && ww > 0.0) {
    EXPECT_GT(dot / std::sqrt(ww * gg), 0.9999) << "cosine similarity";
  }
}

class PagedAttentionGpuTest : public CudaTestWithParam<AttnCase> {};

TEST_P(PagedAttentionGpuTest, MatchesCpuOnEveryPath) {
  const AttnCase& c = GetParam();
  const Inputs in = BuildInputs(c, 1234u + static_cast<uint32_t>(c.name.size()));
  const std::vector<float> want = CpuReference(c, in);
  std::vector<std::pair<PagedAttentionPath, const char*>> paths = {
      {PagedAttentionPath::kAuto, "auto"}, {PagedAttentionPath::kSplitK, "split_k"}};
  if (QueryKeyPairs(c) <= (int64_t{1} << 26))
    paths.push_back({PagedAttentionPath::kSimple, "simple"});
  if (TensorCoreDims(c)) paths.push_back({PagedAttentionPath::kTensorCore, "tensor_core"});
  for (const auto& [path, name] : paths) {
    SCOPED_TRACE(name);
    const GpuResult r = RunGpu(c, in, path);
    ASSERT_EQ(r.launch, cudaSuccess) << cudaGetErrorName(r.launch);
    EXPECT_EQ(r.flags, 0u);
    ExpectClose(c, want, r.out);
  }
}

constexpr DType kF32 = DType::kF32;
constexpr DType kBF16 = DType::kBF16;

INSTANTIATE_TEST_SUITE_P(
    Shapes, PagedAttentionGpuTest,
    ::testing::Values(
        // One token, one block.
        AttnCase{"one_token_f32", {{1, 1}}, 4, 4, 16, 16, 16, kF32, kF32},
        AttnCase{"one_token_bf16", {{1, 1}}, 8, 2, 64, 64, 16, kBF16, kBF16},
        // Decode batches, GQA ratios 1 / 4 / 8 and MQA.
        AttnCase{
            "decode_gqa1_bf16", {{1, 17}, {1, 100}, {1, 1000}}, 8, 8, 128, 128, 16, kBF16, kBF16},
        AttnCase{
            "decode_gqa4_bf16", {{1, 33}, {1, 517}, {1, 2}}, 32, 8, 128, 128, 16, kBF16, kBF16},
        AttnCase{"decode_gqa8_f32", {{1, 90}, {1, 300}}, 16, 2, 64, 64, 8, kF32, kF32},
        AttnCase{"decode_mqa_bf16", {{1, 250}, {1, 7}}, 8, 1, 128, 128, 16, kBF16, kBF16},
        AttnCase{"decode_f32_bf16_cache", {{1, 200}, {1, 31}}, 8, 2, 128, 128, 16, kF32, kBF16},
        // Prefill with odd q_len, chunked prefill (earlier tokens cached), mixed batches.
        AttnCase{"prefill_odd_f32", {{7, 7}}, 4, 2, 32, 32, 4, kF32, kF32},
        AttnCase{"prefill_odd_bf16", {{13, 13}}, 8, 2, 128, 128, 16, kBF16, kBF16},
        AttnCase{"chunked_prefill_bf16", {{13, 40}, {70, 200}}, 8, 2, 64, 64, 16, kBF16, kBF16},
        AttnCase{"mixed_bf16",
                 {{1, 50}, {33, 33}, {1, 9}, {5, 70}, {129, 300}},
                 32,
                 8,
                 128,
                 128,
                 16,
                 kBF16,
                 kBF16},
        AttnCase{"mixed_f32", {{1, 50}, {33, 33}, {1, 9}, {5, 70}}, 8, 2, 64, 64, 16, kF32, kF32},
        AttnCase{"mixed_f32_bf16_cache", {{1, 20}, {9, 30}}, 4, 1, 128, 128, 16, kF32, kBF16},
        // Head dims 16 (tiny golden models), 192/128 (DeepSeek without absorption), odd dims
        // (20/36 bf16: the split-K kernel's scalar loads).
        AttnCase{"dim16_f32", {{3, 10}, {1, 5}}, 4, 2, 16, 16, 16, kF32, kF32},
        AttnCase{"dim8_block1_f32", {{5, 9}, {1, 3}}, 6, 3, 8, 8, 1, kF32, kF32},
        AttnCase{"dim192_128_bf16", {{40, 40}, {1, 90}}, 16, 16, 192, 128, 16, kBF16, kBF16},
        AttnCase{"dim_odd_bf16", {{6, 21}, {1, 12}}, 6, 2, 20, 36, 5, kBF16, kBF16},
        // MLA (k_cache == v_cache, one kv head, many q heads): 576 and a generic latent width.
        AttnCase{
            "mla576_decode_bf16", {{1, 300}, {1, 77}}, 16, 1, 576, 576, 64, kBF16, kBF16, true},
        AttnCase{
            "mla576_128_heads_bf16", {{1, 500}, {1, 64}}, 128, 1, 576, 576, 64, kBF16, kBF16, true},
        AttnCase{"mla576_prefill_bf16", {{9, 30}}, 16, 1, 576, 576, 64, kBF16, kBF16, true},
        AttnCase{
            "mla576_f32_bf16_cache", {{1, 100}, {3, 40}}, 16, 1, 576, 576, 64, kF32, kBF16, true},
        AttnCase{"mla_generic_f32", {{1, 60}, {4, 20}}, 8, 1, 48, 48, 16, kF32, kF32, true},
        // Long contexts: many blocks, split-K engaged.
        AttnCase{"long_decode_bf16",
                 {{1, 8192}, {1, 5000}, {1, 8000}, {1, 100}},
                 32,
                 8,
                 128,
                 128,
                 16,
                 kBF16,
                 kBF16},
        AttnCase{"long_decode_f32", {{1, 8192}}, 8, 2, 64, 64, 16, kF32, kF32},
        AttnCase{"long_mla_decode_bf16", {{1, 8192}}, 16, 1, 576, 576, 64, kBF16, kBF16, true},
        AttnCase{"long_chunked_prefill_bf16",
                 {{256, 3000}, {1, 4000}},
                 8,
                 2,
                 128,
                 128,
                 16,
                 kBF16,
                 kBF16}),
    Name);

// A block id outside [0, num_blocks) sets kErrorBlockId on every path (the CPU backend rejects
// it as InvalidArgument).
TEST_P(PagedAttentionGpuTest, BadBlockIdSetsErrorFlag) {
  const AttnCase& c = GetParam();
  if (QueryKeyPairs(c) > (int64_t{1} << 22)) GTEST_SKIP() << "one small case per shape suffices";
  Inputs in = BuildInputs(c, 99u);
  const int64_t last = static_cast<int64_t>(c.seqs.size()) - 1;
  in.block_tables.data<int32_t>()[last * in.max_blocks] = static_cast<int32_t>(in.num_blocks + 3);
  for (PagedAttentionPath path :
       {PagedAttentionPath::kAuto, PagedAttentionPath::kSplitK, PagedAttentionPath::kSimple}) {
    const GpuResult r = RunGpu(c, in, path);
    ASSERT_EQ(r.launch, cudaSuccess) << cudaGetErrorName(r.launch);
    EXPECT_EQ(r.flags & kErrorBlockId, kErrorBlockId) << "path " << static_cast<int>(path);
  }
  if (TensorCoreDims(c)) {
    const GpuResult r = RunGpu(c, in, PagedAttentionPath::kTensorCore);
    ASSERT_EQ(r.launch, cudaSuccess);
    EXPECT_EQ(r.flags & kErrorBlockId, kErrorBlockId);
  }
}

// seq_len < q_len is an inconsistent batch: flagged, not a crash.
TEST_P(PagedAttentionGpuTest, InconsistentBatchSetsErrorFlag) {
  const AttnCase& c = GetParam();
  if (QueryKeyPairs(c) > (int64_t{1} << 22)) GTEST_SKIP() << "one small case per shape suffices";
  Inputs in = BuildInputs(c, 7u);
  in.seq_lens.data<int32_t>()[0] = c.seqs[0].q_len - 1;
  const GpuResult r = RunGpu(c, in, PagedAttentionPath::kAuto);
  ASSERT_EQ(r.launch, cudaSuccess);
  EXPECT_EQ(r.flags & kErrorBlockId, kErrorBlockId);
}

// The long decode cases really split the context (and so use the workspace and the reduce).
TEST(PagedAttentionPlanTest, LongDecodeSplitsTheContext) {
  PagedAttentionArgs args;
  args.q_dtype = DType::kBF16;
  args.cache_dtype = DType::kBF16;
  args.num_tokens = 4;
  args.num_seqs = 4;
  args.q_heads = 32;
  args.kv_heads = 8;
  args.k_dim = 128;
  args.v_dim = 128;
  args.num_blocks = 2048;
  args.block_size = 16;
  args.max_blocks_per_seq = 513;
  EXPECT_GT(PagedAttentionWorkspaceBytes(args), 0u);
  args.path = PagedAttentionPath::kSimple;
  EXPECT_EQ(PagedAttentionWorkspaceBytes(args), 0u);
}

}  // namespace
}  // namespace expertmesh::cuda
