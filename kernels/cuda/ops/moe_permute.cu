// MoE permute in two kernels:
//  1. One block computes the expert histogram (integer atomics: the counts do not depend on
//     their order), the exclusive scan into expert_offsets, and the stable scatter of slots:
//     slots are taken in chunks of the block size, in order; inside a chunk a slot's place is
//     its expert's cursor + the count of that expert in earlier warps + its rank among the
//     lanes of its warp with the same expert (__match_any_sync). No atomic decides an order.
//  2. A grid copies rows: out_x[r] = x[sorted_slots[r] / top_k], bit-exactly.
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/device_util.cuh"
#include "kernels/cuda/ops/moe_permute.h"

namespace expertmesh::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Exclusive scan of one int per thread over the block; `total` gets the sum. `scratch`: kWarps.
__device__ int BlockExclusiveScan(int v, int* scratch, int* total) {
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < kWarps; ++w) {
    const int s = scratch[w];
    if (w < warp) before += s;
    sum += s;
  }
  *total = sum;
  return before + incl - v;
}

__global__ void __launch_bounds__(kThreads) MoePermuteOffsetsKernel(MoePermuteArgs a) {
  extern __shared__ int smem[];
  const int E = a.num_experts;
  int* cursor = smem;         // [E]: counts, then each expert's next row
  int* warp_hist = smem + E;  // [kWarps][E]: this chunk's count per warp and expert
  __shared__ int scan_scratch[kWarps];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int64_t m = a.num_tokens * a.top_k;

  for (int i = tid; i < E * (kWarps + 1); i += kThreads) smem[i] = 0;
  __syncthreads();
  for (int64_t s = tid; s < m; s += kThreads) {
    const int e = a.topk_ids[s];
    if (e < 0 || e >= E) {
      ops::SetErrorFlag(a.error_flags, kErrorMoeExpertId);
    } else {
      atomicAdd(&cursor[e], 1);
    }
  }
  __syncthreads();

  // Exclusive scan of the counts: thread i owns experts [i * per, (i + 1) * per).
  const int per = (E + kThreads - 1) / kThreads;
  const int lo = min(E, tid * per), hi = min(E, lo + per);
  int local = 0;
  for (int e = lo; e < hi; ++e) local += cursor[e];
  int total = 0;
  int run = BlockExclusiveScan(local, scan_scratch, &total);
  __syncthreads();  // every count is read before any is overwritten
  for (int e = lo; e < hi; ++e) {
    const int c = cursor[e];
    cursor[e] = run;
    a.expert_offsets[e] = run;
    run += c;
  }
  if (tid == 0) a.expert_offsets[E] = total;
  for (int64_t r = total + tid; r < m; r += kThreads) a.sorted_slots[r] = -1;  // left-out slots
  __syncthreads();

  const unsigned lt_mask = (1u << lane) - 1u;
  for (int64_t base = 0; base < m; base += kThreads) {
    const int64_t s = base + tid;
    int e = s < m ? a.topk_ids[s] : -1;
    if (e >= E) e = -1;
    if (e < 0) e = -1;
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(peers & lt_mask);
    const bool leader = rank == 0;
    if (e >= 0 && leader) warp_hist[warp * E + e] = __popc(peers);
    __syncthreads();
    if (e >= 0) {
      int pos = cursor[e] + rank;
      for (int w = 0; w < warp; ++w) pos += warp_hist[w * E + e];
      a.sorted_slots[pos] = static_cast<int32_t>(s);
    }
    __syncthreads();  // cursors and histograms are read before they change
    if (e >= 0 && leader) {
      atomicAdd(&cursor[e], __popc(peers));
      warp_hist[warp * E + e] = 0;
    }
    __syncthreads();
  }
}

template <typename U>
__global__ void MoePermuteRowsKernel(const U* x, const int32_t* sorted_slots, U* out, int64_t m,
                                     int64_t top_k, int64_t units) {
  for (int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const int32_t slot = sorted_slots[r];
    if (slot < 0) continue;
    const U* src = x + (slot / top_k) * units;
    U* dst = out + r * units;
    for (int64_t i = threadIdx.x; i < units; i += blockDim.x) dst[i] = src[i];
  }
}

template <typename U>
cudaError_t LaunchRows(const MoePermuteArgs& a, int64_t units, cudaStream_t stream) {
  const int64_t m = a.num_tokens * a.top_k;
  const int grid = static_cast<int>(m < 65535 ? m : 65535);
  const int threads = units >= 256 ? 256 : 128;
  MoePermuteRowsKernel<U><<<grid, threads, 0, stream>>>(
      static_cast<const U*>(a.x), a.sorted_slots, static_cast<U*>(a.out_x), m, a.top_k, units);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchMoePermute(const MoePermuteArgs& a, cudaStream_t stream) {
  if (a.num_experts < 1 || a.num_experts > kMoePermuteMaxExperts) return cudaErrorInvalidValue;
  if (a.dtype != DType::kF32 && a.dtype != DType::kBF16) return cudaErrorInvalidValue;
  const int64_t m = a.num_tokens * a.top_k;
  if (m >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  const size_t smem = static_cast<size_t>(a.num_experts) * (kWarps + 1) * sizeof(int);
  MoePermuteOffsetsKernel<<<1, kThreads, smem, stream>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || m == 0 || a.hidden == 0) return err;
  const int64_t row_bytes = a.hidden * static_cast<int64_t>(DTypeSize(a.dtype));
  const bool vec = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a.out_x) % 16 == 0;
  if (vec) return LaunchRows<uint4>(a, row_bytes / 16, stream);
  if (a.dtype == DType::kF32) return LaunchRows<uint32_t>(a, a.hidden, stream);
  return LaunchRows<uint16_t>(a, a.hidden, stream);
}

}  // namespace expertmesh::cuda
