// Batched sampling, one block per row. Every filter is a threshold on a 32-bit ranking key (the
// logit's bits mapped to an unsigned order, -0 folded onto +0), found by radix select without
// sorting the vocabulary:
//   1. one pass: the max logit, the greedy argmax (lowest id on ties) and the NaN/+inf check;
//   2. min_p and e > 0 keep every token whose key reaches a threshold, found by a warp-parallel
//      search over keys (e = exp((logit - max) / T) only grows with the key);
//   3. top_k: a count radix select (four 8-bit digits, shared-memory histograms) finds the k-th
//      key; the survivors, ties broken by lower id, are compacted in id order into the row's
//      workspace, so everything after reads k entries instead of the vocabulary;
//   4. top_p: a mass radix select (eight 4-bit digits) finds the key where the mass of the more
//      likely tokens reaches top_p * total, and how many of the tokens tied on it (lowest ids
//      first) the host would take; the survivors are compacted likewise;
//   5. the draw: an inverse-CDF scan over the survivors in id order, in chunks.
// Ranking by the logit rather than by e is the host's order (e is monotone in the logit): the
// two differ only where distinct logits give the same double e (see sampling.h).
// e is recomputed from the key where a pass needs it (a double exp is cheaper than reading a
// stored double back). Sums are per-thread sequential, then a fixed tree over the block;
// histograms count with integer atomics (order-free), so a row's result is deterministic.
#include <cfloat>
#include <climits>
#include <cstdint>

#include "common/splitmix64.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/sampling.h"

namespace expertmesh::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kScanItems = 4;  // consecutive entries per thread in the ordered passes
constexpr int kChunk = kThreads * kScanItems;
constexpr unsigned kFullMask = 0xffffffffu;

// Unsigned order of floats: larger key = larger value; -0 and +0 share a key (they are equal
// logits to the host). NaNs never reach a key (the row is rejected first).
__device__ __forceinline__ uint32_t KeyOf(float v) {
  uint32_t b = __float_as_uint(v);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float FloatOfKey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// The host's relative probability of a token (1 for the most likely one).
struct RowMath {
  float max_logit;
  double inv_t;
  __device__ __forceinline__ double Prob(uint32_t key) const {
    const double d =
        __dsub_rn(static_cast<double>(FloatOfKey(key)), static_cast<double>(max_logit));
    return exp(__dmul_rn(d, inv_t));
  }
};

// The tokens still in the running: the whole row (entry i = token i, a member when its key
// reaches kmin) or a compacted list of keys and ids in the workspace, in id order.
struct Candidates {
  const float* logits;
  const uint32_t* keys;  // non-null: compacted
  const int32_t* ids;
  int32_t n;
  uint32_t kmin;

  __device__ __forceinline__ bool Get(int32_t i, uint32_t* key, int32_t* id) const {
    if (keys != nullptr) {
      *key = keys[i];
      *id = ids[i];
      return true;
    }
    *key = KeyOf(logits[i]);
    *id = i;
    return *key >= kmin;
  }
};

// A filter's outcome: the members with key > key, and the first `ties` members (in id order)
// with key == key.
struct Threshold {
  uint32_t key;
  int32_t ties;
};

struct Shared {
  float warp_best[kWarps];
  int32_t warp_best_id[kWarps];
  float max_logit;
  int32_t argmax;
  uint32_t kmin;
  uint32_t prefix;
  int32_t need;
  int32_t members;
  int32_t tie_count;
  int32_t above_count;
  int32_t found;
  int32_t flag;
  double above;
  double bucket_mass[16];
  int32_t hist[256];
  double warp_mass[kWarps][16];
  double scan_d[kWarps];
  unsigned long long scan_u[kWarps];
  double sum_scratch[32];
  int32_t max_scratch[32];
};

__device__ __forceinline__ bool Better(float v, int32_t i, float bv, int32_t bi) {
  return v > bv || (v == bv && i < bi);
}

// Exclusive prefix over the block in thread order; `total` gets the sum. Starts with a barrier,
// so `scratch` (kWarps values) may be reused by consecutive calls.
template <typename T>
__device__ T BlockExclusiveScan(T v, T* scratch, T* total) {
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  T incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T u = __shfl_up_sync(kFullMask, incl, o);
    if (lane >= o) incl += u;
  }
  // The lane before's inclusive sum, not incl - v: exact for floating point too.
  T excl = __shfl_up_sync(kFullMask, incl, 1);
  if (lane == 0) excl = T(0);
  __syncthreads();
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  T before = T(0), sum = T(0);
  for (int w = 0; w < kWarps; ++w) {
    const T s = scratch[w];
    if (w < warp) before += s;
    sum += s;
  }
  *total = sum;
  return before + excl;
}

// Step 1: max, argmax (lowest id on ties) and whether a NaN or +inf is present.
__device__ bool RowStats(const float* row, int32_t vocab, Shared& sh) {
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  float best = -INFINITY;
  int32_t best_id = INT_MAX;
  bool bad = false;
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < vocab; i += kThreads) {
    const float v = row[i];
    bad |= isnan(v) || v == INFINITY;
    if (Better(v, i, best, best_id)) {
      best = v;
      best_id = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, best, o);
    const int32_t oi = __shfl_xor_sync(kFullMask, best_id, o);
    if (Better(ov, oi, best, best_id)) {
      best = ov;
      best_id = oi;
    }
  }
  if (lane == 0) {
    sh.warp_best[warp] = best;
    sh.warp_best_id[warp] = best_id;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < kWarps ? sh.warp_best[lane] : -INFINITY;
    best_id = lane < kWarps ? sh.warp_best_id[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFullMask, best, o);
      const int32_t oi = __shfl_xor_sync(kFullMask, best_id, o);
      if (Better(ov, oi, best, best_id)) {
        best = ov;
        best_id = oi;
      }
    }
    if (lane == 0) {
      sh.max_logit = best;
      sh.argmax = best_id;
    }
  }
  return __syncthreads_or(bad ? 1 : 0) != 0;  // also publishes max_logit and argmax
}

// Step 2 (warp 0): the smallest key whose token the host keeps (e > 0 and e >= min_p). The
// max logit's key qualifies (e = 1) and -inf's does not (e = 0); each round tests 32 keys.
__device__ uint32_t FindMinKey(const RowMath& m, float min_p) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const double floor_p = static_cast<double>(min_p);
  uint32_t lo = KeyOf(-INFINITY), hi = KeyOf(m.max_logit);  // keep(lo) false, keep(hi) true
  while (hi - lo > 1) {
    const uint64_t span = hi - lo, step = (span + 31) / 32;
    const uint64_t at = static_cast<uint64_t>(lo) + step * static_cast<uint64_t>(lane + 1);
    const uint32_t key = at < hi ? static_cast<uint32_t>(at) : hi;
    const double e = m.Prob(key);
    const unsigned kept = __ballot_sync(kFullMask, e > 0.0 && e >= floor_p);
    const int first = __ffs(kept) - 1;  // lane 31 tests hi, so some lane keeps
    const uint32_t new_hi = __shfl_sync(kFullMask, key, first);
    const uint32_t new_lo =
        first == 0 ? lo : __shfl_sync(kFullMask, key, first > 0 ? first - 1 : 0);
    hi = new_hi;
    lo = new_lo;
  }
  return hi;
}

// Step 3: the k-th largest member key and how many members tied on it to keep. False when
// there are no more than k members (top_k keeps everything).
__device__ bool SelectByCount(const Candidates& c, int32_t k, Shared& sh, Threshold* out) {
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    sh.prefix = 0;
    sh.need = k;
    sh.flag = 0;
  }
  uint32_t mask = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int i = tid; i < 256; i += kThreads) sh.hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = sh.prefix;
    for (int32_t i = tid; i < c.n; i += kThreads) {
      uint32_t key;
      int32_t id;
      if (c.Get(i, &key, &id) && (key & mask) == prefix) {
        atomicAdd(&sh.hist[(key >> shift) & 255u], 1);
      }
    }
    __syncthreads();
    if (warp == 0) {
      // Read before the shuffles below converge the warp: one lane rewrites it afterwards.
      const int need = sh.need;
      // Lane l owns digits 255 - 8l down to 248 - 8l: lanes in descending digit order.
      const int top = 255 - 8 * lane;
      int local = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) local += sh.hist[top - j];
      int incl = local;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(kFullMask, incl, o);
        if (lane >= o) incl += u;
      }
      const int total = __shfl_sync(kFullMask, incl, 31);
      if (pass == 0 && lane == 0) {
        sh.members = total;
        if (need >= total) sh.flag = 1;
      }
      const int excl = incl - local;
      if (need <= total && excl < need && need <= incl) {
        int run = excl;
        for (int j = 0; j < 8; ++j) {
          const int d = top - j;
          if (run + sh.hist[d] >= need) {
            sh.prefix = prefix | (static_cast<uint32_t>(d) << shift);
            sh.need = need - run;
            break;
          }
          run += sh.hist[d];
        }
      }
    }
    __syncthreads();
    if (sh.flag) return false;
    mask |= 0xffu << shift;
  }
  *out = Threshold{sh.prefix, sh.need};
  return true;
}

// Step 4: the smallest most-likely set with mass >= target, as a threshold; `kept` gets its
// size and `members` the size of c. Where the sums fall an ulp short of the target, the
// digit search keeps descending into the least likely keys, which ends in keeping everything
// (the host's answer when its mass never reaches the target).
__device__ Threshold SelectByMass(const Candidates& c, const RowMath& m, double target, Shared& sh,
                                  int32_t* kept, int32_t* members) {
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    sh.prefix = 0;
    sh.above = 0.0;
    sh.above_count = 0;
  }
  uint32_t mask = 0;
  for (int pass = 0; pass < 8; ++pass) {
    const int shift = 28 - 4 * pass;
    if (tid < 16) sh.hist[tid] = 0;
    __syncthreads();
    const uint32_t prefix = sh.prefix;
    double acc[16];
#pragma unroll
    for (int d = 0; d < 16; ++d) acc[d] = 0.0;
    for (int32_t i = tid; i < c.n; i += kThreads) {
      uint32_t key;
      int32_t id;
      if (!c.Get(i, &key, &id) || (key & mask) != prefix) continue;
      const uint32_t digit = (key >> shift) & 15u;
      const double e = m.Prob(key);
#pragma unroll
      for (int d = 0; d < 16; ++d) acc[d] += digit == static_cast<uint32_t>(d) ? e : 0.0;
      atomicAdd(&sh.hist[digit], 1);
    }
#pragma unroll
    for (int d = 0; d < 16; ++d) {
      const double s = ops::WarpSum(acc[d]);
      if (lane == 0) sh.warp_mass[warp][d] = s;
    }
    __syncthreads();
    if (tid < 16) {
      double s = 0.0;
      for (int w = 0; w < kWarps; ++w) s += sh.warp_mass[w][tid];
      sh.bucket_mass[tid] = s;
    }
    __syncthreads();
    if (tid == 0) {
      if (pass == 0) {
        int total = 0;
        for (int d = 0; d < 16; ++d) total += sh.hist[d];
        sh.members = total;
      }
      double run = sh.above;
      int run_count = sh.above_count;
      int chosen = -1;
      double last_run = run;
      int last_count = run_count, last = -1;
      for (int d = 15; d >= 0; --d) {
        if (sh.hist[d] == 0) continue;
        last = d;
        last_run = run;
        last_count = run_count;
        if (run + sh.bucket_mass[d] >= target) {
          chosen = d;
          break;
        }
        run += sh.bucket_mass[d];
        run_count += sh.hist[d];
      }
      if (chosen < 0) {
        chosen = last;  // never -1: the prefix chosen before has members
        run = last_run;
        run_count = last_count;
      }
      sh.above = run;
      sh.above_count = run_count;
      sh.tie_count = sh.hist[chosen];
      sh.prefix = prefix | (static_cast<uint32_t>(chosen) << shift);
    }
    __syncthreads();
    mask |= 15u << shift;
  }
  // The tied tokens share one e: the host takes them in id order until the mass is reached.
  if (tid == 0) {
    const double above = sh.above, e = m.Prob(sh.prefix);
    const int32_t n_tie = sh.tie_count;
    double guess = ceil((target - above) / e);
    guess = guess < 1.0 ? 1.0 : (guess > n_tie ? n_tie : guess);
    int32_t j = static_cast<int32_t>(guess);
    while (j > 1 && above + (j - 1) * e >= target) --j;
    while (j < n_tie && above + j * e < target) ++j;
    sh.need = j;
  }
  __syncthreads();
  *kept = sh.above_count + sh.need;
  *members = sh.members;
  return Threshold{sh.prefix, sh.need};
}

// Copies the members a threshold keeps, in id order, to (keys, ids); may run in place.
// Positions come from a block scan of (above, tied) counts, so no atomic decides the order.
__device__ void Compact(const Candidates& c, Threshold t, uint32_t* keys, int32_t* ids,
                        Shared& sh) {
  unsigned long long carry = 0;  // (above count << 32) | tied count of earlier chunks
  for (int32_t base = 0; base < c.n; base += kChunk) {
    const int32_t first = base + static_cast<int32_t>(threadIdx.x) * kScanItems;
    uint32_t key[kScanItems];
    int32_t id[kScanItems];
    uint8_t kind[kScanItems];  // 0: dropped, 1: above, 2: tied
    uint32_t n_above = 0, n_tied = 0;
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      key[j] = 0;
      id[j] = 0;
      kind[j] = 0;
      if (first + j < c.n && c.Get(first + j, &key[j], &id[j])) {
        if (key[j] > t.key) {
          kind[j] = 1;
          ++n_above;
        } else if (key[j] == t.key) {
          kind[j] = 2;
          ++n_tied;
        }
      }
    }
    unsigned long long chunk = 0;
    const unsigned long long before = BlockExclusiveScan<unsigned long long>(
        (static_cast<unsigned long long>(n_above) << 32) | n_tied, sh.scan_u, &chunk);
    const unsigned long long at = carry + before;
    int64_t above = static_cast<int64_t>(at >> 32), tied = static_cast<int64_t>(at & 0xffffffffu);
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      if (kind[j] == 0) continue;
      const int64_t pos = above + (tied < t.ties ? tied : t.ties);
      const bool keep = kind[j] == 1 || tied < t.ties;
      if (kind[j] == 1) {
        ++above;
      } else {
        ++tied;
      }
      if (keep) {
        keys[pos] = key[j];
        ids[pos] = id[j];
      }
    }
    carry += chunk;
  }
  __syncthreads();  // the list is complete before anyone reads it
}

// Sum of e over the members (per-thread sequential, then the block tree).
__device__ double Mass(const Candidates& c, const RowMath& m, Shared& sh) {
  double s = 0.0;
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < c.n; i += kThreads) {
    uint32_t key;
    int32_t id;
    if (c.Get(i, &key, &id)) s += m.Prob(key);
  }
  return ops::BlockSum(s, sh.sum_scratch);
}

// Step 5: the first member in id order whose cumulative normalised probability exceeds u;
// the last member when rounding leaves u above the summed mass (as the host).
__device__ int32_t Draw(const Candidates& c, const RowMath& m, double total, double u, Shared& sh) {
  if (threadIdx.x == 0) sh.found = INT_MAX;
  double carry = 0.0;
  int32_t last_id = -1;
  for (int32_t base = 0; base < c.n; base += kChunk) {
    const int32_t first = base + static_cast<int32_t>(threadIdx.x) * kScanItems;
    double p[kScanItems];
    bool member[kScanItems];
    double local = 0.0;
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      uint32_t key = 0;
      int32_t id = 0;
      member[j] = first + j < c.n && c.Get(first + j, &key, &id);
      p[j] = member[j] ? m.Prob(key) / total : 0.0;
      if (member[j]) last_id = id;
      local += p[j];
    }
    double chunk = 0.0;
    double cumulative = carry + BlockExclusiveScan<double>(local, sh.scan_d, &chunk);
#pragma unroll
    for (int j = 0; j < kScanItems; ++j) {
      if (!member[j]) continue;
      cumulative += p[j];
      if (u < cumulative) {
        atomicMin(&sh.found, first + j);
        break;
      }
    }
    __syncthreads();
    if (sh.found != INT_MAX) break;  // uniform: read after the barrier
    carry += chunk;
  }
  if (sh.found != INT_MAX) {
    uint32_t key;
    int32_t id = 0;
    c.Get(sh.found, &key, &id);
    return id;
  }
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  last_id = ops::WarpMax(last_id);
  if (lane == 0) sh.max_scratch[warp] = last_id;
  __syncthreads();
  int32_t best = -1;
  for (int w = 0; w < kWarps; ++w) best = max(best, sh.max_scratch[w]);
  return best;
}

__global__ void __launch_bounds__(kThreads)
    SamplingKernel(SamplingArgs a, int64_t stride, int64_t ws_stride) {
  __shared__ Shared sh;
  const int64_t r = blockIdx.x;
  const float* row = a.logits + r * stride;
  const int32_t vocab = static_cast<int32_t>(a.vocab);
  const kernels::SamplingRow p = a.params[r];

  const bool bad = RowStats(row, vocab, sh);
  if (bad || !(sh.max_logit > -INFINITY)) {
    if (threadIdx.x == 0) {
      a.tokens[r] = 0;
      ops::SetErrorFlag(a.error_flags, kErrorSampling);
    }
    return;
  }
  if (p.temperature < kernels::kGreedyTemperature) {
    if (threadIdx.x == 0) a.tokens[r] = sh.argmax;
    return;
  }
  const RowMath m{sh.max_logit, 1.0 / static_cast<double>(p.temperature)};
  if (threadIdx.x < 32) {
    const uint32_t kmin = FindMinKey(m, p.min_p);
    if (threadIdx.x == 0) sh.kmin = kmin;
  }
  __syncthreads();

  uint32_t* ws_keys = static_cast<uint32_t*>(a.workspace) + r * 2 * ws_stride;
  int32_t* ws_ids = reinterpret_cast<int32_t*>(ws_keys + ws_stride);
  Candidates c{row, nullptr, nullptr, vocab, sh.kmin};
  Threshold t;
  if (p.top_k > 0 && p.top_k < vocab && SelectByCount(c, p.top_k, sh, &t)) {
    Compact(c, t, ws_keys, ws_ids, sh);
    c = Candidates{nullptr, ws_keys, ws_ids, p.top_k, sh.kmin};
  }
  double total = Mass(c, m, sh);
  if (p.top_p < 1.0f) {
    int32_t kept = 0, members = 0;
    t = SelectByMass(c, m, static_cast<double>(p.top_p) * total, sh, &kept, &members);
    if (kept < members) {
      Compact(c, t, ws_keys, ws_ids, sh);
      c = Candidates{nullptr, ws_keys, ws_ids, kept, sh.kmin};
      total = Mass(c, m, sh);
    }
  }
  const int32_t token = Draw(c, m, total, ::expertmesh::CounterUniform(p.seed, p.counter), sh);
  if (threadIdx.x == 0) a.tokens[r] = token;
}

int64_t WorkspaceStride(int64_t vocab) { return (vocab + 3) / 4 * 4; }

}  // namespace

size_t SamplingWorkspaceBytes(int64_t rows, int64_t vocab) {
  return static_cast<size_t>(rows) * static_cast<size_t>(WorkspaceStride(vocab)) * 2 *
         sizeof(uint32_t);
}

cudaError_t LaunchSampling(const SamplingArgs& a, cudaStream_t stream) {
  if (a.rows < 0 || a.vocab < 1 || a.vocab >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  if (a.rows > INT_MAX) return cudaErrorInvalidValue;
  const int64_t stride = a.logits_stride == 0 ? a.vocab : a.logits_stride;
  if (stride < a.vocab) return cudaErrorInvalidValue;
  if (a.workspace == nullptr || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.rows == 0) return cudaSuccess;
  if (a.logits == nullptr || a.params == nullptr || a.tokens == nullptr) {
    return cudaErrorInvalidValue;
  }
  SamplingKernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a, stride,
                                                                         WorkspaceStride(a.vocab));
  return cudaGetLastError();
}

}  // namespace expertmesh::cuda
