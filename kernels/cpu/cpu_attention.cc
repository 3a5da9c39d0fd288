// The paged KV cache: writing a step's keys/values into their slots, and causal attention of
// the step's queries over the cache (prefill, chunked prefill and decode in one kernel).
//
// Work is split per (sequence, tile of up to 8 queries, kv head): the task computes the scores
// of the tile's queries for the kv head's q-head group against every visible cache position
// with the GEMM micro-kernel (keys read in place), then the softmax-weighted sum of values.
// Every output element is computed in the same order whatever the tile, so a token's result
// does not depend on its batch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {
namespace {

// Query tokens of one sequence handled together: their scores against a cache block are one
// small GEMM (tile rows = tokens x q heads of the kv group) reading keys straight from the cache.
constexpr int32_t kTileTokens = 8;

struct AttnTile {
  int32_t seq;
  int32_t first_token;  // row of q of the tile's first query
  int32_t count;        // queries in the tile
  int32_t first_pos;    // absolute position of the first query
};

}  // namespace

absl::Status CpuKvCacheWrite(const CpuContext& ctx, const Tensor& k, const Tensor& v,
                             const Tensor& slot_mapping, Tensor& k_cache, Tensor& v_cache) {
  const int64_t n = k.dim(0);
  const int64_t capacity = k_cache.dim(0) * k_cache.dim(1);
  const int32_t* slots = slot_mapping.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) {
    if (slots[t] >= capacity) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_write: slot ", slots[t],
                                                     " of token ", t, " is beyond the cache's ",
                                                     capacity, " slots"));
    }
  }
  for (const auto& io : {std::pair<const Tensor*, Tensor*>{&k, &k_cache}, {&v, &v_cache}}) {
    // Not a structured binding: clang < 16 cannot capture one in the lambda below.
    const Tensor* src = io.first;
    Tensor* dst = io.second;
    const int64_t row = src->dim(1) * src->dim(2);
    const bool same = src->dtype() == dst->dtype();
    const size_t bytes = static_cast<size_t>(row) * DTypeSize(dst->dtype());
    ctx.pool->ParallelFor(n, 16, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        if (slots[t] < 0) continue;
        if (same) {
          std::memcpy(static_cast<char*>(dst->raw_data()) + slots[t] * bytes,
                      static_cast<const char*>(src->raw_data()) + t * bytes, bytes);
        } else {  // f32 activations into a bf16 cache
          StoreF32(ctx, src->data<float>() + t * row, *dst, slots[t] * row, row);
        }
      }
    });
  }
  return absl::OkStatus();
}

absl::Status CpuPagedAttention(const CpuContext& ctx, const Tensor& q, const Tensor& k_cache,
                               const Tensor& v_cache, const kernels::PagedAttentionBatch& batch,
                               float scale, Tensor& out) {
  const int64_t n = q.dim(0), q_heads = q.dim(1), dk = q.dim(2), dv = v_cache.dim(3);
  const int64_t num_blocks = k_cache.dim(0), block_size = k_cache.dim(1), kv_heads = k_cache.dim(2);
  const int64_t group = q_heads / kv_heads;
  const int64_t seqs = batch.seq_lens.dim(0), max_blocks = batch.block_tables.dim(1);
  const int32_t* qs = batch.query_start.data<int32_t>();
  const int32_t* lens = batch.seq_lens.data<int32_t>();
  const int32_t* tables = batch.block_tables.data<int32_t>();

  if (qs[0] != 0 || qs[seqs] != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "paged_attention: query_start must run from 0 to ", n, ", got ", qs[0], " .. ", qs[seqs]));
  }
  std::vector<AttnTile> tiles;
  for (int64_t s = 0; s < seqs; ++s) {
    const int64_t q_len = qs[s + 1] - qs[s];
    if (q_len < 0 || lens[s] < q_len || lens[s] > max_blocks * block_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("paged_attention: sequence ", s, " has ", q_len, " queries and seq_len ",
                       lens[s], " (needs q_len <= seq_len <= ", max_blocks * block_size, ")"));
    }
    const int64_t used_blocks = (lens[s] + block_size - 1) / block_size;
    for (int64_t b = 0; b < used_blocks; ++b) {
      const int32_t id = tables[s * max_blocks + b];
      if (id < 0 || id >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("paged_attention: sequence ", s, " block ",
                                                       b, " has id ", id, ", outside [0, ",
                                                       num_blocks, ")"));
      }
    }
    for (int64_t i = 0; i < q_len; i += kTileTokens) {
      const int32_t count = static_cast<int32_t>(std::min<int64_t>(kTileTokens, q_len - i));
      tiles.push_back({static_cast<int32_t>(s), static_cast<int32_t>(qs[s] + i), count,
                       static_cast<int32_t>(lens[s] - q_len + i)});
    }
  }

  const bool bf16_cache = k_cache.dtype() == DType::kBF16;
  const int64_t ld_k = kv_heads * dk, ld_v = kv_heads * dv;
  const int64_t num_tasks = static_cast<int64_t>(tiles.size()) * kv_heads;
  ctx.pool->ParallelFor(num_tasks, 1, [&](int64_t b, int64_t e) {
    std::vector<float> qf, scores, acc;
    for (int64_t task = b; task < e; ++task) {
      const AttnTile& tile = tiles[task / kv_heads];
      const int64_t kvh = task % kv_heads;
      const int64_t rows = static_cast<int64_t>(tile.count) * group;  // row = token * group + g
      const int64_t ctx_len = tile.first_pos + tile.count;  // keys visible to the last query
      const int32_t* table = tables + static_cast<int64_t>(tile.seq) * max_blocks;
      qf.resize(static_cast<size_t>(rows * dk));
      for (int64_t i = 0; i < tile.count; ++i) {
        const int64_t off = ((tile.first_token + i) * q_heads + kvh * group) * dk;
        if (q.dtype() == DType::kF32) {
          std::memcpy(qf.data() + i * group * dk, q.data<float>() + off,
                      group * dk * sizeof(float));
        } else {
          ctx.kernels->bf16_to_f32(q.data<uint16_t>() + off, qf.data() + i * group * dk,
                                   group * dk);
        }
      }
      // Scores: one GEMM per cache block, keys read in place (row stride kv_heads * dk).
      scores.resize(static_cast<size_t>(rows * ctx_len));
      for (int64_t p0 = 0; p0 < ctx_len; p0 += block_size) {
        const int64_t nb = std::min(block_size, ctx_len - p0);
        const int64_t first =
            (static_cast<int64_t>(table[p0 / block_size]) * block_size * kv_heads + kvh) * dk;
        if (bf16_cache) {
          ctx.kernels->gemm_bf16(qf.data(), dk, rows, dk, k_cache.data<uint16_t>() + first, ld_k,
                                 nb, scores.data() + p0, ctx_len);
        } else {
          ctx.kernels->gemm_f32(qf.data(), dk, rows, dk, k_cache.data<float>() + first, ld_k, nb,
                                scores.data() + p0, ctx_len);
        }
      }
      // Causal softmax per row: query i sees positions [0, first_pos + i]; later positions get
      // probability 0 so the value pass can run over whole blocks.
      for (int64_t r = 0; r < rows; ++r) {
        float* sc = scores.data() + r * ctx_len;
        const int64_t visible = tile.first_pos + r / group + 1;
        float max = -std::numeric_limits<float>::infinity();
        for (int64_t p = 0; p < visible; ++p) max = std::max(max, sc[p] *= scale);
        float sum = 0.0f;
        for (int64_t p = 0; p < visible; ++p) sum += sc[p] = std::exp(sc[p] - max);
        const float inv = 1.0f / sum;
        for (int64_t p = 0; p < visible; ++p) sc[p] *= inv;
        std::fill(sc + visible, sc + ctx_len, 0.0f);
      }
      // Values, block by block, read in place (row stride kv_heads * dv).
      acc.assign(static_cast<size_t>(rows * dv), 0.0f);
      for (int64_t p0 = 0; p0 < ctx_len; p0 += block_size) {
        const int64_t nb = std::min(block_size, ctx_len - p0);
        const int64_t first =
            (static_cast<int64_t>(table[p0 / block_size]) * block_size * kv_heads + kvh) * dv;
        if (bf16_cache) {
          ctx.kernels->pv_bf16(scores.data() + p0, ctx_len, rows, nb,
                               v_cache.data<uint16_t>() + first, ld_v, dv, acc.data(), dv);
        } else {
          ctx.kernels->pv_f32(scores.data() + p0, ctx_len, rows, nb, v_cache.data<float>() + first,
                              ld_v, dv, acc.data(), dv);
        }
      }
      for (int64_t i = 0; i < tile.count; ++i) {
        const int64_t off = ((tile.first_token + i) * q_heads + kvh * group) * dv;
        StoreF32(ctx, acc.data() + i * group * dv, out, off, group * dv);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
