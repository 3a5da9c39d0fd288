// The paged KV cache: writing a step's keys/values into their slots, and causal attention of
// the step's queries over the cache (prefill, chunked prefill and decode in one kernel).
//
// Work is split per (sequence, query token, kv head): the task computes the scores of the
// kv head's q-head group against every visible cache position (two passes: scores, then the
// softmax-weighted sum of values), so each K/V row is widened to fp32 once per group.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {
namespace {

// Widens `count` elements at `offset` of an f32/bf16 tensor to f32 (no copy for f32).
const float* RowF32(const CpuContext& ctx, const Tensor& t, int64_t offset, int64_t count,
                    float* scratch) {
  if (t.dtype() == DType::kF32) return t.data<float>() + offset;
  ctx.kernels->bf16_to_f32(t.data<uint16_t>() + offset, scratch, count);
  return scratch;
}

struct AttnTask {
  int32_t seq;
  int32_t token;  // row of q
  int32_t pos;    // absolute position of the token (attends to [0, pos])
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
  for (auto [src, dst] : {std::pair<const Tensor*, Tensor*>{&k, &k_cache}, {&v, &v_cache}}) {
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
                               const Tensor& v_cache, const runtime::PagedAttentionBatch& batch,
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
  std::vector<AttnTask> tasks;
  tasks.reserve(static_cast<size_t>(n));
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
    for (int64_t i = 0; i < q_len; ++i) {
      tasks.push_back({static_cast<int32_t>(s), static_cast<int32_t>(qs[s] + i),
                       static_cast<int32_t>(lens[s] - q_len + i)});
    }
  }

  const int64_t num_tasks = static_cast<int64_t>(tasks.size()) * kv_heads;
  ctx.pool->ParallelFor(num_tasks, 1, [&](int64_t b, int64_t e) {
    std::vector<float> qf(group * dk), scores, acc(group * dv), krow(dk), vrow(dv);
    for (int64_t task = b; task < e; ++task) {
      const AttnTask& at = tasks[task / kv_heads];
      const int64_t kvh = task % kv_heads;
      const int64_t ctx_len = at.pos + 1;
      const int32_t* table = tables + at.seq * max_blocks;
      // q rows of the group: heads [kvh*group, (kvh+1)*group).
      for (int64_t g = 0; g < group; ++g) {
        const int64_t off = (static_cast<int64_t>(at.token) * q_heads + kvh * group + g) * dk;
        const float* src = RowF32(ctx, q, off, dk, qf.data() + g * dk);
        if (src != qf.data() + g * dk) std::memcpy(qf.data() + g * dk, src, dk * sizeof(float));
      }
      scores.resize(static_cast<size_t>(group * ctx_len));
      for (int64_t p = 0; p < ctx_len; ++p) {
        const int64_t slot =
            static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
        const float* kr = RowF32(ctx, k_cache, (slot * kv_heads + kvh) * dk, dk, krow.data());
        for (int64_t g = 0; g < group; ++g) {
          scores[g * ctx_len + p] = scale * ctx.kernels->dot(qf.data() + g * dk, kr, dk);
        }
      }
      for (int64_t g = 0; g < group; ++g) {
        float* sc = scores.data() + g * ctx_len;
        const float max = *std::max_element(sc, sc + ctx_len);
        float sum = 0.0f;
        for (int64_t p = 0; p < ctx_len; ++p) sum += sc[p] = std::exp(sc[p] - max);
        const float inv = 1.0f / sum;
        for (int64_t p = 0; p < ctx_len; ++p) sc[p] *= inv;
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p < ctx_len; ++p) {
        const int64_t slot =
            static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
        const float* vr = RowF32(ctx, v_cache, (slot * kv_heads + kvh) * dv, dv, vrow.data());
        for (int64_t g = 0; g < group; ++g) {
          ctx.kernels->axpy(scores[g * ctx_len + p], vr, acc.data() + g * dv, dv);
        }
      }
      for (int64_t g = 0; g < group; ++g) {
        const int64_t off = (static_cast<int64_t>(at.token) * q_heads + kvh * group + g) * dv;
        StoreF32(ctx, acc.data() + g * dv, out, off, dv);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
