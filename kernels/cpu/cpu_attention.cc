// The paged KV cache: writing a step's keys/values into their slots, and causal attention of
// the step's queries over the cache (prefill, chunked prefill and decode in one kernel).
//
// Attention is flash-style (flash_attention.h): work is split per (sequence, tile of queries,
// kv head); each task walks the keys in fixed blocks of absolute positions with an online
// softmax, so a token's result does not depend on its batch or on how its prompt was chunked.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/flash_attention.h"

namespace expertmesh::kernels::cpu {

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
  const int64_t seqs = batch.seq_lens.dim(0), max_blocks = batch.block_tables.dim(1);
  const int32_t* qs = batch.query_start.data<int32_t>();
  const int32_t* lens = batch.seq_lens.data<int32_t>();
  const int32_t* tables = batch.block_tables.data<int32_t>();

  if (qs[0] != 0 || qs[seqs] != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "paged_attention: query_start must run from 0 to ", n, ", got ", qs[0], " .. ", qs[seqs]));
  }
  const flash::Params params{.q = q.raw_data(),
                             .q_bf16 = q.dtype() == DType::kBF16,
                             .k = k_cache.raw_data(),
                             .v = v_cache.raw_data(),
                             .cache_bf16 = k_cache.dtype() == DType::kBF16,
                             .q_heads = q_heads,
                             .kv_heads = kv_heads,
                             .group = q_heads / kv_heads,
                             .dk = dk,
                             .dv = dv,
                             .block_size = block_size,
                             .max_blocks = max_blocks,
                             .tables = tables,
                             .scale = scale};
  const int32_t tile_tokens = flash::TileTokens(ctx, params);
  std::vector<flash::Tile> tiles;
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
    for (int64_t i = 0; i < q_len; i += tile_tokens) {
      const int32_t count = static_cast<int32_t>(std::min<int64_t>(tile_tokens, q_len - i));
      tiles.push_back({static_cast<int32_t>(s), static_cast<int32_t>(qs[s] + i), count,
                       static_cast<int32_t>(lens[s] - q_len + i)});
    }
  }
  // Longest tiles first: a causal prefill's last tiles read the most keys, and the pool hands
  // out tasks in order, so starting with them keeps both threads busy to the end.
  std::stable_sort(tiles.begin(), tiles.end(), [](const flash::Tile& a, const flash::Tile& b) {
    return a.first_pos + a.count > b.first_pos + b.count;
  });

  const bool amx = flash::UseAmx(ctx, params);
  const int64_t group = params.group;
  ctx.pool->ParallelFor(
      static_cast<int64_t>(tiles.size()) * kv_heads, 1, [&](int64_t b, int64_t e) {
        thread_local std::vector<float> tile_out;
        for (int64_t task = b; task < e; ++task) {
          const flash::Tile& tile = tiles[task / kv_heads];
          const int64_t kvh = task % kv_heads;
          tile_out.resize(static_cast<size_t>(tile.count * group * dv));
          if (amx) {
            flash::RunTileAmx(params, tile, kvh, tile_out.data());
          } else {
            flash::RunTile(ctx, params, tile, kvh, tile_out.data());
          }
          for (int64_t i = 0; i < tile.count; ++i) {
            const int64_t off = ((tile.first_token + i) * q_heads + kvh * group) * dv;
            StoreF32(ctx, tile_out.data() + i * group * dv, out, off, group * dv);
          }
        }
      });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
