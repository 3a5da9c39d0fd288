// MoE routing (gate top-k, incl. group-limited), token permutation by expert, and the weighted
// combine of expert outputs with an optional (gated) shared expert.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"

namespace expertmesh::kernels::cpu {
namespace {

// Indices of the `count` largest values, largest first; ties go to the lower index.
void TopIndices(const float* values, int n, int count, std::vector<int>& order, int* out) {
  order.resize(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + count, order.end(), [&](int a, int b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  std::copy(order.begin(), order.begin() + count, out);
}

void RouteToken(const float* logits, const float* bias, const kernels::MoeRoutingParams& p,
                int experts, int32_t* ids, float* weights) {
  std::vector<float> scores(experts), choice(experts);
  std::vector<int> order, picked(p.top_k);
  if (p.scoring == kernels::MoeScoring::kSoftmax) {
    float max = logits[0];
    for (int e = 1; e < experts; ++e) max = std::max(max, logits[e]);
    float sum = 0.0f;
    for (int e = 0; e < experts; ++e) sum += scores[e] = std::exp(logits[e] - max);
    for (int e = 0; e < experts; ++e) scores[e] /= sum;
  } else {
    for (int e = 0; e < experts; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
  }
  for (int e = 0; e < experts; ++e) choice[e] = bias != nullptr ? scores[e] + bias[e] : scores[e];
  if (p.num_groups > 1) {
    const int per_group = experts / p.num_groups;
    std::vector<float> group_score(p.num_groups);
    std::vector<int> top2(2), kept(p.topk_groups);
    for (int g = 0; g < p.num_groups; ++g) {
      const float* c = choice.data() + g * per_group;
      if (p.group_score == kernels::MoeGroupScore::kMax) {
        group_score[g] = *std::max_element(c, c + per_group);
      } else {
        TopIndices(c, per_group, 2, order, top2.data());
        group_score[g] = c[top2[0]] + c[top2[1]];
      }
    }
    TopIndices(group_score.data(), p.num_groups, p.topk_groups, order, kept.data());
    std::vector<bool> keep(p.num_groups, false);
    for (int g : kept) keep[g] = true;
    for (int e = 0; e < experts; ++e) {
      if (!keep[e / per_group]) choice[e] = 0.0f;  // HF masked_fill(~mask, 0.0)
    }
  }
  TopIndices(choice.data(), experts, p.top_k, order, picked.data());
  float sum = 0.0f;
  for (int j = 0; j < p.top_k; ++j) {
    ids[j] = picked[j];
    weights[j] = scores[picked[j]];
    sum += weights[j];
  }
  for (int j = 0; j < p.top_k; ++j) {
    if (p.norm_topk_prob) weights[j] /= (sum + 1e-20f);
    weights[j] *= p.routed_scaling_factor;
  }
}

}  // namespace

absl::Status CpuMoeTopK(const CpuContext& ctx, const Tensor& logits, const Tensor& bias,
                        const kernels::MoeRoutingParams& params, Tensor& topk_ids,
                        Tensor& topk_weights) {
  const int64_t n = logits.dim(0);
  const int experts = static_cast<int>(logits.dim(1));
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  ctx.pool->ParallelFor(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      RouteToken(logits.data<float>() + t * experts, b, params, experts,
                 topk_ids.data<int32_t>() + t * params.top_k,
                 topk_weights.data<float>() + t * params.top_k);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuMoePermute(const CpuContext& ctx, const Tensor& x, const Tensor& topk_ids,
                           int num_experts, Tensor& out_x, Tensor& expert_offsets,
                           Tensor& sorted_slots) {
  const int64_t n = x.dim(0), k = topk_ids.dim(1), hidden = x.dim(1), m = n * k;
  const int32_t* ids = topk_ids.data<int32_t>();
  int32_t* off = expert_offsets.data<int32_t>();
  std::fill(off, off + num_experts + 1, 0);
  for (int64_t s = 0; s < m; ++s) {
    if (ids[s] < 0 || ids[s] >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("moe_permute: expert id ", ids[s],
                                                     " of token ", s / k, " is outside [0, ",
                                                     num_experts, ")"));
    }
    ++off[ids[s] + 1];
  }
  for (int e = 0; e < num_experts; ++e) off[e + 1] += off[e];
  std::vector<int32_t> cursor(off, off + num_experts);
  int32_t* slots = sorted_slots.data<int32_t>();
  for (int64_t s = 0; s < m; ++s) slots[cursor[ids[s]]++] = static_cast<int32_t>(s);
  const size_t row_bytes = static_cast<size_t>(hidden) * DTypeSize(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out_x.raw_data());
  ctx.pool->ParallelFor(m, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      std::memcpy(dst + r * row_bytes, src + (slots[r] / k) * row_bytes, row_bytes);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuMoeCombine(const CpuContext& ctx, const Tensor& y, const Tensor& sorted_slots,
                           const Tensor& topk_ids, const Tensor& topk_weights, const Tensor& shared,
                           const Tensor& shared_gate, Tensor& out) {
  const int64_t n = topk_ids.dim(0), k = topk_ids.dim(1), hidden = y.dim(1), m = n * k;
  std::vector<int64_t> row_of_slot(static_cast<size_t>(m), -1);
  const int32_t* slots = sorted_slots.data<int32_t>();
  for (int64_t r = 0; r < m; ++r) {
    if (slots[r] < 0 || slots[r] >= m || row_of_slot[slots[r]] != -1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "moe_combine: sorted_slots is not a permutation of [0, ", m, ") at row ", r));
    }
    row_of_slot[slots[r]] = r;
  }
  ctx.pool->ParallelFor(n, 1, [&](int64_t b, int64_t e) {
    std::vector<float> acc(static_cast<size_t>(hidden)), row(static_cast<size_t>(hidden));
    std::vector<int> order(static_cast<size_t>(k));
    for (int64_t t = b; t < e; ++t) {
      const int32_t* ids = topk_ids.data<int32_t>() + t * k;
      const float* w = topk_weights.data<float>() + t * k;
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(),
                [&](int a, int c) { return ids[a] < ids[c] || (ids[a] == ids[c] && a < c); });
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int j : order) {
        const int64_t base = row_of_slot[t * k + j] * hidden;
        const float* yr;
        if (y.dtype() == DType::kF32) {
          yr = y.data<float>() + base;
        } else {
          ctx.kernels->bf16_to_f32(y.data<uint16_t>() + base, row.data(), hidden);
          yr = row.data();
        }
        for (int64_t i = 0; i < hidden; ++i) acc[i] += w[j] * yr[i];
      }
      if (shared.defined()) {
        float g = 1.0f;
        if (shared_gate.defined()) g = 1.0f / (1.0f + std::exp(-LoadScalar(shared_gate, t)));
        for (int64_t i = 0; i < hidden; ++i) acc[i] += g * LoadScalar(shared, t * hidden + i);
      }
      StoreF32(ctx, acc.data(), out, t * hidden, hidden);
    }
  });
  return absl::OkStatus();
}

}  // namespace expertmesh::kernels::cpu
