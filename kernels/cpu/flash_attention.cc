// Flash attention over the kernel table's products: the families without AMX, f32 queries or
// caches on any family (the fp32 golden mode), and the definitions flash_attention.h shares.
#include "kernels/cpu/flash_attention.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/row_loops.h"

namespace expertmesh::kernels::cpu::flash {
namespace {

// Rows (queries x group) per tile. The kernel-table path keeps scores, probabilities, two
// [rows, dv] accumulators and the queries of 128 rows in a 512 KiB L2; the AMX path packs each
// key block once for 256 rows (its buffers are bf16 and its tiles want row pairs of 16).
constexpr int64_t kTableRows = 128;
static_assert(kKeyBlock <= kQkMaxKeys, "a key block must fit one qk_bf16 call");
constexpr int64_t kAmxRows = 256;

// e^x for -87 <= x <= 0, to ~2 ulp: a degree-6 polynomial of 2^f on [-1/2, 1/2] scaled by 2^n.
// Plain arithmetic so that GCC vectorises the loop calling it at any target; the clamp to -87
// is the caller's (ClampExp), in a loop of its own: inside this one it stops the vectoriser.
// e^-87 ~ 1.6e-38 stands for anything smaller: such a probability never changes an fp32 sum
// of ones.
inline float ExpNonPositive(float x) {
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest: |t| < 2^22
  const float y = (t - n) * 0.693147180559945309f;
  float poly = 1.0f / 720.0f;
  poly = poly * y + 1.0f / 120.0f;
  poly = poly * y + 1.0f / 24.0f;
  poly = poly * y + 1.0f / 6.0f;
  poly = poly * y + 0.5f;
  poly = poly * y + 1.0f;
  poly = poly * y + 1.0f;
  return poly * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}
inline float ClampExp(float x) { return x < -87.0f ? -87.0f : x; }

// One row of a key block's online softmax, in place: its first `visible` scores times `scale`
// become e^(score - max), max the larger of `running_max` and theirs (returned), and *sum gets
// their sum. Built for every vector width (row_loops.h: the same bits in each); the max and the
// sum go in 16 lanes (lane j % 16) combined in a fixed tree, since one chain of dependent adds
// and compares over the row cost a 4,096-token prefill more than both of its products.
EXPERTMESH_ROW_LOOP float SoftmaxBlockRow(float* sr, int64_t visible, float scale,
                                          float running_max, float* sum) {
  constexpr int kLanes = 16;
  for (int64_t j = 0; j < visible; ++j) sr[j] *= scale;
  float lane_max[kLanes];
  for (int l = 0; l < kLanes; ++l) lane_max[l] = running_max;
  int64_t j = 0;
  for (; j + kLanes <= visible; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lane_max[l] = sr[j + l] > lane_max[l] ? sr[j + l] : lane_max[l];
    }
  }
  for (; j < visible; ++j) {
    lane_max[j % kLanes] = sr[j] > lane_max[j % kLanes] ? sr[j] : lane_max[j % kLanes];
  }
  float mx = lane_max[0];
  for (int l = 1; l < kLanes; ++l) mx = lane_max[l] > mx ? lane_max[l] : mx;
  for (j = 0; j < visible; ++j) sr[j] = ClampExp(sr[j] - mx);
  for (j = 0; j < visible; ++j) sr[j] = ExpNonPositive(sr[j]);
  float lane_sum[kLanes] = {};
  for (j = 0; j + kLanes <= visible; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane_sum[l] += sr[j + l];
  }
  for (; j < visible; ++j) lane_sum[j % kLanes] += sr[j];
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) lane_sum[l] += lane_sum[l + width];
  }
  *sum = lane_sum[0];
  return mx;
}

// o = o * a + acc, then (ScaleRowInto) out = o * inv: the accumulator's merge and the final
// normalisation, for every vector width.
EXPERTMESH_ROW_LOOP void ScaleAddRow(float* o, float a, const float* acc, int64_t n) {
  for (int64_t d = 0; d < n; ++d) o[d] = o[d] * a + acc[d];
}
EXPERTMESH_ROW_LOOP void ScaleRowInto(const float* o, float inv, float* out, int64_t n) {
  for (int64_t d = 0; d < n; ++d) out[d] = o[d] * inv;
}

}  // namespace

bool UseAmx(const CpuContext& ctx, const Params& p) {
  return ctx.kernels->amx_gemm_bf16 != nullptr && p.q_bf16 && p.cache_bf16;
}

int32_t TileTokens(const CpuContext& ctx, const Params& p) {
  const int64_t rows = UseAmx(ctx, p) ? kAmxRows : kTableRows;
  return static_cast<int32_t>(std::clamp<int64_t>(rows / p.group, 1, 128));
}

void RunTile(const CpuContext& ctx, const Params& p, const Tile& t, int64_t kvh, float* out) {
  const KernelTable& kt = *ctx.kernels;
  const int64_t group = p.group, dk = p.dk, dv = p.dv, rows = t.count * group;
  // Queries in fp32 on every family: the bf16 dot-product GEMM (gemm_bf16_xbf16) measured 5x
  // slower here, on 16-key runs of the cache, than widening the keys in gemm_bf16.
  const bool xbf16 = false;
  // bf16 queries and cache where the table has bf16 dot products (AVX512_BF16): both products
  // on bf16 operands, twice the multiply-adds per instruction of fp32 FMAs; the probabilities
  // are rounded to bf16 for the values' product, as on the AMX tiles (their sum stays fp32).
  const bool dot =
      p.q_bf16 && p.cache_bf16 && kt.qk_bf16_dot != nullptr && kt.pv_bf16_dot != nullptr;
  const int64_t dk_even = (dk + 1) / 2 * 2;  // the dot products' query rows, in whole pairs
  thread_local std::vector<float> qf, s, acc, o, m, l, alpha;
  thread_local std::vector<uint16_t> qb, pb;
  if (dot) qb.resize(static_cast<size_t>(rows * dk_even));
  for (int64_t i = 0; i < t.count; ++i) {
    const int64_t src = ((t.first_token + i) * p.q_heads + kvh * group) * dk;
    const int64_t dst = i * group * dk;
    if (dot) {
      for (int64_t g = 0; g < group; ++g) {
        uint16_t* row = qb.data() + (i * group + g) * dk_even;
        std::memcpy(row, static_cast<const uint16_t*>(p.q) + src + g * dk, dk * 2);
        if (dk_even > dk) row[dk] = 0;  // an odd dk's last pair
      }
    } else if (xbf16) {
      qb.resize(rows * dk);
      std::memcpy(qb.data() + dst, static_cast<const uint16_t*>(p.q) + src, group * dk * 2);
    } else if (p.q_bf16) {
      qf.resize(rows * dk);
      kt.bf16_to_f32(static_cast<const uint16_t*>(p.q) + src, qf.data() + dst, group * dk);
    } else {
      qf.resize(rows * dk);
      std::memcpy(qf.data() + dst, static_cast<const float*>(p.q) + src, group * dk * 4);
    }
  }
  o.assign(rows * dv, 0.0f);
  m.assign(rows, -std::numeric_limits<float>::infinity());
  l.assign(rows, 0.0f);
  alpha.resize(rows);
  s.resize(rows * kKeyBlock);
  acc.resize(rows * dv);
  const int64_t end = t.first_pos + t.count;  // keys visible to the tile's last query
  const int64_t ld_k = p.kv_heads * dk, ld_v = p.kv_heads * dv;
  // Calls f(pos, run, cache_row) for each run of the block's positions that is contiguous in
  // the cache (runs end at cache-block boundaries: absolute positions again).
  auto for_runs = [&](int64_t key0, int64_t nk, auto&& f) {
    for (int64_t pos = key0; pos < key0 + nk;) {
      const int64_t run = std::min(p.block_size - pos % p.block_size, key0 + nk - pos);
      f(pos, run, CacheRow(p, t, kvh, pos));
      pos += run;
    }
  };
  // With the table's block product (AVX-512), the block's keys go in as one list of rows.
  const bool block_qk = dot || (p.cache_bf16 && !xbf16 && kt.qk_bf16 != nullptr);
  const uint16_t* keys[kKeyBlock];
  const uint16_t* values[kKeyBlock];
  static_assert(kKeyBlock % 2 == 0, "a whole block's probabilities are whole pairs");
  if (dot) pb.resize(static_cast<size_t>(rows * kKeyBlock));
  for (int64_t key0 = 0; key0 < end; key0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, end - key0);
    for_runs(key0, nk, [&](int64_t pos, int64_t run, int64_t row) {
      float* dst = s.data() + (pos - key0);
      if (block_qk) {
        const uint16_t* first = static_cast<const uint16_t*>(p.k) + row * dk;
        for (int64_t i = 0; i < run; ++i) keys[pos - key0 + i] = first + i * ld_k;
        if (dot) {
          const uint16_t* first_v = static_cast<const uint16_t*>(p.v) + row * dv;
          for (int64_t i = 0; i < run; ++i) values[pos - key0 + i] = first_v + i * ld_v;
        }
      } else if (xbf16) {
        kt.gemm_bf16_xbf16(qb.data(), dk, rows, dk, static_cast<const uint16_t*>(p.k) + row * dk,
                           ld_k, run, dst, kKeyBlock);
      } else if (p.cache_bf16) {
        kt.gemm_bf16(qf.data(), dk, rows, dk, static_cast<const uint16_t*>(p.k) + row * dk, ld_k,
                     run, dst, kKeyBlock);
      } else {
        kt.gemm_f32(qf.data(), dk, rows, dk, static_cast<const float*>(p.k) + row * dk, ld_k, run,
                    dst, kKeyBlock);
      }
    });
    if (dot) {
      kt.qk_bf16_dot(qb.data(), dk_even, rows, dk, keys, nk, s.data(), kKeyBlock);
    } else if (block_qk) {
      kt.qk_bf16(qf.data(), dk, rows, dk, keys, nk, s.data(), kKeyBlock);
    }
    // Online softmax. A row sees positions <= its own; alpha < 0 marks a row this block lies
    // wholly past (its state is left as it is, so it does not matter that the block was visited).
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s.data() + r * kKeyBlock;
      const int64_t visible = std::min(nk, t.first_pos + r / group - key0 + 1);
      if (visible <= 0) {
        alpha[r] = -1.0f;
        std::fill(sr, sr + nk, 0.0f);
        continue;
      }
      float sum = 0.0f;
      const float mx = SoftmaxBlockRow(sr, visible, p.scale, m[r], &sum);
      std::fill(sr + visible, sr + nk, 0.0f);
      alpha[r] = ExpNonPositive(ClampExp(m[r] - mx));
      l[r] = l[r] * alpha[r] + sum;
      m[r] = mx;
    }
    std::fill(acc.begin(), acc.end(), 0.0f);
    if (dot) {
      // Each row's probabilities as bf16, a zero after an odd block's last one.
      const int64_t nk_even = (nk + 1) / 2 * 2;
      for (int64_t r = 0; r < rows; ++r) {
        uint16_t* pr = pb.data() + r * nk_even;
        kt.f32_to_bf16(s.data() + r * kKeyBlock, pr, nk);
        if (nk_even > nk) pr[nk] = 0;
      }
      kt.pv_bf16_dot(pb.data(), nk_even, rows, nk, values, dv, acc.data(), dv);
    } else {
      for_runs(key0, nk, [&](int64_t pos, int64_t run, int64_t row) {
        const float* pr = s.data() + (pos - key0);
        if (p.cache_bf16) {
          kt.pv_bf16(pr, kKeyBlock, rows, run, static_cast<const uint16_t*>(p.v) + row * dv, ld_v,
                     dv, acc.data(), dv);
        } else {
          kt.pv_f32(pr, kKeyBlock, rows, run, static_cast<const float*>(p.v) + row * dv, ld_v, dv,
                    acc.data(), dv);
        }
      });
    }
    for (int64_t r = 0; r < rows; ++r) {
      if (alpha[r] < 0.0f) continue;
      float* orow = o.data() + r * dv;
      const float* arow = acc.data() + r * dv;
      ScaleAddRow(orow, alpha[r], arow, dv);
    }
  }
  for (int64_t r = 0; r < rows; ++r) ScaleRowInto(o.data() + r * dv, 1.0f / l[r], out + r * dv, dv);
}

}  // namespace expertmesh::kernels::cpu::flash
