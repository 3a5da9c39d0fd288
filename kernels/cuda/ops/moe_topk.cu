// MoE router top-k: one warp per token, the whole routing (scores, bias, group limit, top-k,
// normalisation, scaling) in one kernel. Lane l holds experts l, l + 32, ... in registers.
// Selections are repeated warp argmaxes with the CPU's order (larger value first, lower id on
// ties); the weight sum is accumulated in pick order, as the CPU does.
#include <cfloat>
#include <climits>

#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/moe_topk.h"

namespace expertmesh::cuda {
namespace {

constexpr int kPerLane = kMoeTopKMaxExperts / 32;
constexpr int kWarps = 4;  // tokens per block

__device__ __forceinline__ bool Better(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia < ib);
}

__global__ void MoeTopKKernel(MoeTopKArgs a) {
  __shared__ float group_score_smem[kWarps][kMoeTopKMaxExperts];
  __shared__ unsigned char group_kept_smem[kWarps][kMoeTopKMaxExperts];
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  float* group_score = group_score_smem[warp];
  unsigned char* group_kept = group_kept_smem[warp];
  const int E = a.num_experts;
  const int64_t token_step = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarps + warp; t < a.num_tokens;
       t += token_step) {
    const float* logits = a.logits + t * E;
    float score[kPerLane], choice[kPerLane];
#pragma unroll
    for (int v = 0; v < kPerLane; ++v) {
      const int e = lane + 32 * v;
      score[v] = e < E ? logits[e] : -INFINITY;
    }
    // 1. scores (fp32).
    if (a.scoring == MoeScoringCode::kSoftmax) {
      float mx = -INFINITY;
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) mx = fmaxf(mx, score[v]);
      mx = ops::WarpMax(mx);
      float sum = 0.0f;
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) {
        score[v] = lane + 32 * v < E ? expf(score[v] - mx) : 0.0f;
        sum += score[v];
      }
      sum = ops::WarpSum(sum);
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) score[v] = __fdiv_rn(score[v], sum);
    } else {
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) score[v] = __fdiv_rn(1.0f, 1.0f + expf(-score[v]));
    }
    // 2. choice = scores + bias.
#pragma unroll
    for (int v = 0; v < kPerLane; ++v) {
      const int e = lane + 32 * v;
      choice[v] = e < E ? (a.bias != nullptr ? score[v] + a.bias[e] : score[v]) : -INFINITY;
    }
    // 3. group limit: experts outside the topk_groups best groups get choice 0 (HF masked_fill).
    if (a.num_groups > 1) {
      const int per_group = E / a.num_groups;
      for (int g = 0; g < a.num_groups; ++g) {
        float first = -INFINITY, second = -INFINITY;  // the two largest choices of group g
#pragma unroll
        for (int v = 0; v < kPerLane; ++v) {
          const int e = lane + 32 * v;
          if (e < E && e / per_group == g) {
            const float c = choice[v];
            if (c > first) {
              second = first;
              first = c;
            } else if (c > second) {
              second = c;
            }
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          const float of = __shfl_xor_sync(0xffffffffu, first, o);
          const float os = __shfl_xor_sync(0xffffffffu, second, o);
          const float lo = fminf(first, of);
          second = fmaxf(lo, first >= of ? second : os);
          first = fmaxf(first, of);
        }
        if (lane == 0) {
          group_score[g] = a.group_score == MoeGroupScoreCode::kMax ? first : first + second;
        }
      }
      __syncwarp();
      // A group is kept when fewer than topk_groups groups rank before it.
      for (int g = lane; g < a.num_groups; g += 32) {
        const float s = group_score[g];
        int rank = 0;
        for (int h = 0; h < a.num_groups; ++h) rank += Better(group_score[h], h, s, g) ? 1 : 0;
        group_kept[g] = rank < a.topk_groups ? 1 : 0;
      }
      __syncwarp();
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) {
        const int e = lane + 32 * v;
        if (e < E && !group_kept[e / per_group]) choice[v] = 0.0f;
      }
      __syncwarp();  // group_score/kept are rewritten for the next token
    }
    // 4. top_k of choice, best first; 5. weights = scores of the picks.
    unsigned taken = 0;
    float sum = 0.0f;
    int32_t* ids_out = a.topk_ids + t * a.top_k;
    float* w_out = a.topk_weights + t * a.top_k;
    for (int j = 0; j < a.top_k; ++j) {
      float best = -INFINITY, best_score = 0.0f;
      int best_id = INT_MAX;
#pragma unroll
      for (int v = 0; v < kPerLane; ++v) {
        const int e = lane + 32 * v;
        if (e < E && !(taken & (1u << v)) && Better(choice[v], e, best, best_id)) {
          best = choice[v];
          best_id = e;
          best_score = score[v];
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, best_id, o);
        const float os = __shfl_xor_sync(0xffffffffu, best_score, o);
        if (Better(ov, oi, best, best_id)) {
          best = ov;
          best_id = oi;
          best_score = os;
        }
      }
      if ((best_id & 31) == lane) taken |= 1u << (best_id >> 5);
      sum += best_score;
      if (lane == 0) {
        ids_out[j] = best_id;
        w_out[j] = best_score;
      }
    }
    if (lane == 0) {
      for (int j = 0; j < a.top_k; ++j) {
        float w = w_out[j];
        if (a.norm_topk_prob) w = __fdiv_rn(w, sum + 1e-20f);
        w_out[j] = w * a.routed_scaling_factor;
      }
    }
  }
}

}  // namespace

cudaError_t LaunchMoeTopK(const MoeTopKArgs& a, cudaStream_t stream) {
  if (a.num_experts < 1 || a.num_experts > kMoeTopKMaxExperts || a.top_k < 1 ||
      a.top_k > a.num_experts || a.num_groups < 1 || a.num_experts % a.num_groups != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.num_tokens == 0) return cudaSuccess;
  const int64_t blocks = ops::CeilDiv(a.num_tokens, kWarps);
  const int grid = static_cast<int>(blocks < 65535 ? blocks : 65535);
  MoeTopKKernel<<<grid, 32 * kWarps, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace expertmesh::cuda
