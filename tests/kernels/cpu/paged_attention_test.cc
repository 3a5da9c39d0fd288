// KV cache writes (bit-exact) and paged causal attention against a double-precision reference
// over contiguous K/V: prefill, chunked prefill (queries starting at an offset), decode, mixed
// batches, GQA/MQA ratios, MLA-style unequal key/value widths, long contexts, bf16 caches.
// Shapes are chosen awkward for the flash kernel (flash_attention.h): query counts that are odd
// or not a multiple of its tile, contexts that end inside a 64-key block or a cache block, cache
// blocks of 1 and 7 positions, head dims that are not whole 32-value AMX tiles. Every case runs
// on every kernel family this CPU has (the others skip visibly); bf16 queries with a bf16 cache
// take the AMX tile path on the amx family and the VDPBF16PS products on avx512bf16.
//
// Tolerances (ToleranceFor): f32 2e-5 abs/rel, from fp32 sums of up to ~1500 unit-size products
// and a ~2-ulp exp against a double reference. bf16 1e-2 abs/rel with cosine >= 0.9999: the
// output itself is rounded to bf16 (2^-9 relative), and the AMX and AVX512_BF16 paths multiply
// values by probabilities rounded to bf16 (2^-9 relative each, averaging out over the positions).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <tuple>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

struct SeqSpec {
  int32_t q_len;
  int32_t seq_len;  // cached tokens after this step, >= q_len
};

struct AttnCase {
  std::string name;
  std::vector<SeqSpec> seqs;
  int64_t q_heads, kv_heads, dk, dv, block_size;
  DType dtype, cache_dtype;
};

class PagedAttentionTest : public CpuOpTest<AttnCase> {};

TEST_P(PagedAttentionTest, MatchesContiguousReference) {
  std::mt19937 rng(static_cast<unsigned>(c().seqs.size() * 101 + c().dk));
  const int64_t bs = c().block_size, hq = c().q_heads, hkv = c().kv_heads;
  const int64_t num_seqs = static_cast<int64_t>(c().seqs.size());
  int64_t max_blocks = 1, total_blocks = 0, n = 0;
  for (const SeqSpec& s : c().seqs) {
    max_blocks = std::max<int64_t>(max_blocks, (s.seq_len + bs - 1) / bs);
    total_blocks += (s.seq_len + bs - 1) / bs;
    n += s.q_len;
  }
  // Blocks handed out in shuffled order, plus spare blocks nobody uses.
  const int64_t pool_blocks = total_blocks + 3;
  std::vector<int32_t> free_ids(pool_blocks);
  std::iota(free_ids.begin(), free_ids.end(), 0);
  std::shuffle(free_ids.begin(), free_ids.end(), rng);
  std::vector<int32_t> tables(num_seqs * max_blocks, -1), q_start{0}, lens;
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t b = 0; b < (c().seqs[s].seq_len + bs - 1) / bs; ++b) {
      tables[s * max_blocks + b] = free_ids.back();
      free_ids.pop_back();
    }
    q_start.push_back(q_start.back() + c().seqs[s].q_len);
    lens.push_back(c().seqs[s].seq_len);
  }
  Tensor k_cache = *Tensor::Zeros(c().cache_dtype, {pool_blocks, bs, hkv, c().dk});
  Tensor v_cache = *Tensor::Zeros(c().cache_dtype, {pool_blocks, bs, hkv, c().dv});

  // Every cached token of every sequence is written with KvCacheWrite (one call for all).
  int64_t all_tokens = 0;
  for (const SeqSpec& s : c().seqs) all_tokens += s.seq_len;
  Tensor k_all = RandomTensor(c().dtype, {all_tokens, hkv, c().dk}, rng);
  Tensor v_all = RandomTensor(c().dtype, {all_tokens, hkv, c().dv}, rng);
  std::vector<int32_t> slot_map;
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int32_t p = 0; p < c().seqs[s].seq_len; ++p) {
      slot_map.push_back(tables[s * max_blocks + p / bs] * static_cast<int32_t>(bs) + p % bs);
    }
  }
  ASSERT_TRUE(
      backend_->KvCacheWrite(k_all, v_all, I32Tensor(slot_map, {all_tokens}), k_cache, v_cache)
          .ok());
  // The cache holds exactly what was written (bit-exact when dtypes match).
  if (c().cache_dtype == c().dtype) {
    const size_t row = hkv * c().dk * DTypeSize(c().dtype);
    for (int64_t t = 0; t < all_tokens; ++t) {
      ASSERT_EQ(0, std::memcmp(static_cast<char*>(k_cache.raw_data()) + slot_map[t] * row,
                               static_cast<char*>(k_all.raw_data()) + t * row, row))
          << "k row of token " << t;
    }
  }

  Tensor q = RandomTensor(c().dtype, {n, hq, c().dk}, rng);
  kernels::PagedAttentionBatch batch{I32Tensor(q_start, {num_seqs + 1}),
                                     I32Tensor(lens, {num_seqs}),
                                     I32Tensor(tables, {num_seqs, max_blocks})};
  const float scale = 1.0f / std::sqrt(static_cast<float>(c().dk));
  GuardedTensor out(c().dtype, {n, hq, c().dv});
  absl::Status st = backend_->PagedAttention(q, k_cache, v_cache, batch, scale, out.tensor());
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(out.GuardsIntact());

  // Batch invariance: each sequence alone gives bit-identical rows.
  for (int64_t s = 0; s < num_seqs && num_seqs > 1; ++s) {
    const int32_t q_len = c().seqs[s].q_len;
    std::vector<int32_t> one_table(tables.begin() + s * max_blocks,
                                   tables.begin() + (s + 1) * max_blocks);
    kernels::PagedAttentionBatch alone{I32Tensor({0, q_len}, {2}), I32Tensor({lens[s]}, {1}),
                                       I32Tensor(one_table, {1, max_blocks})};
    Tensor q_one = *q.Slice(q_start[s], q_start[s] + q_len);
    Tensor out_one = *Tensor::Empty(c().dtype, {q_len, hq, c().dv});
    ASSERT_TRUE(backend_->PagedAttention(q_one, k_cache, v_cache, alone, scale, out_one).ok());
    EXPECT_TRUE(TensorsEqual(out_one, *out.tensor().Slice(q_start[s], q_start[s] + q_len)))
        << "sequence " << s;
  }

  // Reference over the contiguous K/V as stored in the cache (so bf16 caches round the same).
  Tensor k_stored = *Tensor::Empty(c().cache_dtype, {all_tokens, hkv, c().dk});
  Tensor v_stored = *Tensor::Empty(c().cache_dtype, {all_tokens, hkv, c().dv});
  for (auto [src, dst, d] :
       {std::tuple{&k_cache, &k_stored, c().dk}, {&v_cache, &v_stored, c().dv}}) {
    const size_t row = hkv * d * DTypeSize(c().cache_dtype);
    for (int64_t t = 0; t < all_tokens; ++t) {
      std::memcpy(static_cast<char*>(dst->raw_data()) + t * row,
                  static_cast<char*>(src->raw_data()) + slot_map[t] * row, row);
    }
  }
  const std::vector<double> qd = ToDoubles(q), kd = ToDoubles(k_stored), vd = ToDoubles(v_stored);
  std::vector<double> ref(n * hq * c().dv);
  int64_t token_base = 0;  // first row of this sequence in k_all
  for (int64_t s = 0; s < num_seqs; ++s) {
    const SeqSpec& sp = c().seqs[s];
    for (int32_t i = 0; i < sp.q_len; ++i) {
      const int64_t t = q_start[s] + i, pos = sp.seq_len - sp.q_len + i;
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / (hq / hkv);
        std::vector<double> sc(pos + 1);
        for (int64_t p = 0; p <= pos; ++p) {
          double dot = 0;
          for (int64_t d = 0; d < c().dk; ++d) {
            dot += qd[(t * hq + h) * c().dk + d] * kd[((token_base + p) * hkv + kvh) * c().dk + d];
          }
          sc[p] = dot * scale;
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0;
        for (double& x : sc) sum += x = std::exp(x - mx);
        for (int64_t d = 0; d < c().dv; ++d) {
          double acc = 0;
          for (int64_t p = 0; p <= pos; ++p) {
            acc += sc[p] / sum * vd[((token_base + p) * hkv + kvh) * c().dv + d];
          }
          ref[(t * hq + h) * c().dv + d] = acc;
        }
      }
    }
    token_base += sp.seq_len;
  }
  EXPECT_TRUE(TensorsClose(out.tensor(), ref, ToleranceFor(c().dtype, 2e-5)));
}

const AttnCase kAttnCases[] = {
    {"prefill_one_token", {{1, 1}}, 4, 4, 64, 64, 16, DType::kF32, DType::kF32},
    {"prefill", {{37, 37}}, 4, 2, 64, 64, 16, DType::kF32, DType::kF32},
    {"chunked_prefill", {{20, 53}}, 8, 2, 32, 32, 16, DType::kF32, DType::kF32},
    {"decode_long_context", {{1, 1500}}, 8, 1, 64, 64, 16, DType::kF32, DType::kF32},
    {"mixed_batch",
     {{1, 40}, {17, 17}, {1, 3}, {5, 70}},
     6,
     3,
     48,
     48,
     8,
     DType::kF32,
     DType::kF32},
    {"gqa8_decode_batch",
     {{1, 100}, {1, 16}, {1, 17}},
     16,
     2,
     128,
     128,
     16,
     DType::kF32,
     DType::kF32},
    {"mla_unequal_dims", {{9, 12}, {1, 30}}, 4, 4, 192, 128, 16, DType::kF32, DType::kF32},
    {"block_size_1", {{3, 5}}, 2, 1, 16, 16, 1, DType::kF32, DType::kF32},
    {"bf16", {{11, 11}, {1, 64}}, 4, 2, 64, 64, 16, DType::kBF16, DType::kBF16},
    {"f32_into_bf16_cache", {{6, 20}}, 4, 2, 64, 64, 16, DType::kF32, DType::kBF16},
    // Flash-kernel shapes: GQA groups 1/4/8, several 64-key blocks, tiles cut mid-prompt.
    {"gqa1_odd_prefill", {{77, 77}}, 4, 4, 64, 64, 16, DType::kF32, DType::kF32},
    {"gqa1_odd_prefill_bf16", {{77, 77}}, 4, 4, 64, 64, 16, DType::kBF16, DType::kBF16},
    {"gqa4_long_prefill_bf16", {{203, 203}}, 16, 4, 128, 128, 16, DType::kBF16, DType::kBF16},
    {"gqa8_chunked_batch",
     {{45, 200}, {130, 130}, {1, 77}},
     32,
     4,
     128,
     128,
     16,
     DType::kF32,
     DType::kF32},
    {"gqa8_chunked_batch_bf16",
     {{45, 200}, {130, 130}, {1, 77}},
     32,
     4,
     128,
     128,
     16,
     DType::kBF16,
     DType::kBF16},
    // MLA: absorbed (one latent kv head, dk 576 = 512 + 64 rope, dv 512) and per-head 192/128.
    {"mla_576_512", {{20, 70}, {1, 33}}, 16, 1, 576, 512, 16, DType::kF32, DType::kF32},
    {"mla_576_512_bf16", {{20, 70}, {1, 33}}, 16, 1, 576, 512, 16, DType::kBF16, DType::kBF16},
    {"mla_192_128_bf16", {{33, 100}, {1, 65}}, 8, 8, 192, 128, 16, DType::kBF16, DType::kBF16},
    // Cache blocks of 7 positions (runs cut inside tiles), dk 48 (a partial 32-value tile).
    {"odd_block_size_bf16", {{29, 131}}, 8, 2, 48, 48, 7, DType::kBF16, DType::kBF16},
    {"odd_block_size", {{29, 131}}, 8, 2, 48, 48, 7, DType::kF32, DType::kF32},
    // Head dims off the 16-lane vectors (the AVX-512 products' partial columns and keys).
    {"dims_off_vectors_bf16", {{21, 90}, {1, 37}}, 6, 2, 40, 24, 5, DType::kBF16, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, PagedAttentionTest,
                         ::testing::Combine(::testing::ValuesIn(kAttnCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<AttnCase>);

// Chunking and batch invariance: each query row of one sequence gets the same bits whether the
// whole prompt is one call, the row sits in a chunk (queries [a, b) at seq_len b) of any size,
// the row is decoded alone, or another sequence shares the batch. The flash kernel promises this
// (flash_attention.h) by walking keys in blocks fixed at absolute positions.
class PagedAttentionChunkingTest : public CpuOpTest<AttnCase> {};

TEST_P(PagedAttentionChunkingTest, RowsIndependentOfChunkingAndBatch) {
  std::mt19937 rng(7);
  const int64_t len = c().seqs[0].seq_len, bs = c().block_size, hq = c().q_heads;
  const int64_t hkv = c().kv_heads, blocks = (len + bs - 1) / bs;
  Tensor k_cache = RandomTensor(c().cache_dtype, {blocks, bs, hkv, c().dk}, rng);
  Tensor v_cache = RandomTensor(c().cache_dtype, {blocks, bs, hkv, c().dv}, rng);
  Tensor q_all = RandomTensor(c().dtype, {len, hq, c().dk}, rng);
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c().dk));

  Tensor full = *Tensor::Empty(c().dtype, {len, hq, c().dv});
  kernels::PagedAttentionBatch whole{I32Tensor({0, static_cast<int32_t>(len)}, {2}),
                                     I32Tensor({static_cast<int32_t>(len)}, {1}),
                                     I32Tensor(table, {1, blocks})};
  ASSERT_TRUE(backend_->PagedAttention(q_all, k_cache, v_cache, whole, scale, full).ok());

  const size_t q_row = hq * c().dk * DTypeSize(c().dtype);
  // Chunks [a, b): the last query alone (decode), short and tile-crossing chunks, a middle chunk.
  const std::vector<std::pair<int64_t, int64_t>> chunks = {
      {len - 1, len}, {len - 2, len}, {len - 7, len}, {len - 69, len},
      {0, 1},         {3, 70},        {len / 2, len}, {65, len - 1}};
  for (const auto& [a, b] : chunks) {
    // The chunk's queries, then a decoy sequence (one query at position 39) in the same batch.
    const int64_t cnt = b - a;
    Tensor q = *Tensor::Empty(c().dtype, {cnt + 1, hq, c().dk});
    std::memcpy(q.raw_data(), static_cast<const char*>(q_all.raw_data()) + a * q_row, cnt * q_row);
    std::memcpy(static_cast<char*>(q.raw_data()) + cnt * q_row, q_all.raw_data(), q_row);
    std::vector<int32_t> tables2(table);
    tables2.insert(tables2.end(), table.begin(), table.end());
    kernels::PagedAttentionBatch chunk{
        I32Tensor({0, static_cast<int32_t>(cnt), static_cast<int32_t>(cnt + 1)}, {3}),
        I32Tensor({static_cast<int32_t>(b), 40}, {2}), I32Tensor(tables2, {2, blocks})};
    Tensor out = *Tensor::Empty(c().dtype, {cnt + 1, hq, c().dv});
    ASSERT_TRUE(backend_->PagedAttention(q, k_cache, v_cache, chunk, scale, out).ok());
    EXPECT_TRUE(TensorsEqual(*out.Slice(0, cnt), *full.Slice(a, b)))
        << "queries [" << a << ", " << b << ") of " << len;
  }
}

const AttnCase kChunkingCases[] = {
    {"gqa4_bf16", {{203, 203}}, 16, 4, 128, 128, 16, DType::kBF16, DType::kBF16},
    {"gqa8_f32", {{150, 150}}, 32, 4, 64, 64, 16, DType::kF32, DType::kF32},
    {"mla_576_512_bf16", {{100, 100}}, 16, 1, 576, 512, 16, DType::kBF16, DType::kBF16},
    {"gqa1_f32_into_bf16_cache", {{97, 97}}, 4, 4, 64, 64, 7, DType::kF32, DType::kBF16},
    {"dims_off_vectors_bf16", {{90, 90}}, 6, 2, 40, 24, 5, DType::kBF16, DType::kBF16},
};

INSTANTIATE_TEST_SUITE_P(Cpu, PagedAttentionChunkingTest,
                         ::testing::Combine(::testing::ValuesIn(kChunkingCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<AttnCase>);

TEST(PagedAttentionErrors, BadBatchDescriptions) {
  auto backend = *CpuBackend::Create({});
  Tensor q = *Tensor::Zeros(DType::kF32, {2, 2, 8});
  Tensor kc = *Tensor::Zeros(DType::kF32, {4, 4, 1, 8}),
         vc = *Tensor::Zeros(DType::kF32, {4, 4, 1, 8});
  Tensor out = *Tensor::Empty(DType::kF32, {2, 2, 8});
  // Block id 9 of a 4-block pool.
  kernels::PagedAttentionBatch bad_block{I32Tensor({0, 2}, {2}), I32Tensor({6}, {1}),
                                         I32Tensor({0, 9}, {1, 2})};
  absl::Status s = backend->PagedAttention(q, kc, vc, bad_block, 0.3f, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has id 9"), std::string_view::npos) << s;
  // seq_len shorter than the number of queries.
  kernels::PagedAttentionBatch short_seq{I32Tensor({0, 2}, {2}), I32Tensor({1}, {1}),
                                         I32Tensor({0, 1}, {1, 2})};
  EXPECT_EQ(backend->PagedAttention(q, kc, vc, short_seq, 0.3f, out).code(),
            absl::StatusCode::kInvalidArgument);
  // 3 q heads over 2 kv heads.
  Tensor q3 = *Tensor::Zeros(DType::kF32, {2, 3, 8});
  Tensor kc2 = *Tensor::Zeros(DType::kF32, {4, 4, 2, 8}),
         vc2 = *Tensor::Zeros(DType::kF32, {4, 4, 2, 8});
  Tensor out3 = *Tensor::Empty(DType::kF32, {2, 3, 8});
  EXPECT_EQ(backend->PagedAttention(q3, kc2, vc2, short_seq, 0.3f, out3).code(),
            absl::StatusCode::kInvalidArgument);
  // A slot beyond the cache.
  Tensor k = *Tensor::Zeros(DType::kF32, {1, 1, 8});
  EXPECT_EQ(backend->KvCacheWrite(k, k, I32Tensor({16}, {1}), kc, vc).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace expertmesh::testing
