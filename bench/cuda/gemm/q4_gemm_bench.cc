// GPU benchmark of the 4-bit-weight products (kernels/cuda/gemm/q4_gemm.h), one line per case,
// never asserting on timings (tools/gpu-check.sh's kernels step runs it):
//  (a) q4_decode kind=dense: the W4A16 weight stream (kGemv) of a [16384, 7168] linear with
//      group-128 scales (symmetric, and asymmetric with zero points) at 1 and 8 tokens, rotating
//      over 4 copies of the weight (235 MB, past any L2) so weights come from DRAM; as bytes
//      moved per second (packed int4 bytes plus scales and zero points, x read, out written)
//      against device copy bandwidth (read + write);
//  (b) q4_decode kind=grouped: the same for the grouped expert GEMM at Qwen3-30B-A3B's expert
//      shapes (128 experts, top-8, hidden 2048, moe_intermediate 768) at 1, 8 and 32 tokens,
//      rotating through 16 routings, the active experts' bytes counted once;
//  (c) q4_grouped_prefill: the tensor-core path (kMma) on the same experts at 512 and 4096
//      tokens, as TFLOP/s.
// Times are cudaEvent medians after warm-up. The whole run takes a few seconds.
// The floor to compare with (not yet measured: no GPU was lent when this was written): the dense
// case moves 58.7 MB of int4 bytes and 3.7 MB of scales per call, about 21 us at the ~3.0 TB/s
// copy bandwidth PLATFORM.md records for an H100, so vs_copy near 1 is the stream at full speed.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <random>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/gemm/bench_fill.h"
#include "kernels/cuda/gemm/q4_gemm.h"

namespace expertmesh::cuda {
namespace {

using Proj = bench::MoeProj;
constexpr int kExperts = bench::kMoeExperts;
constexpr int kTopK = bench::kMoeTopK;
constexpr auto& kProjs = bench::kMoeProjs;
constexpr int kRoutings = 16;
constexpr int kGroup = 128;

using bench::DeviceAlloc;
using bench::MedianMs;
using bench::ToDevice;

// Packed bytes, scales and (asymmetric) zero points of an [n, k] group-128 weight.
double WeightBytes(int64_t n, int64_t k, bool zero_points) {
  const double groups = static_cast<double>(n) * (k / kGroup);
  return static_cast<double>(n) * k / 2 + groups * 4 * (zero_points ? 2 : 1);
}

// A device f32 grid of n x (k / 128): scales near 1/8 (weights of about +-1), or zero points.
const float* MakeGrid(int64_t n, int64_t k, bool zeros, std::mt19937& rng) {
  std::vector<float> host(static_cast<size_t>(n * (k / kGroup)));
  std::uniform_real_distribution<float> dist(0.5f / 8, 2.0f / 8);
  for (float& v : host) v = zeros ? static_cast<float>(rng() % 16) : dist(rng);
  return ToDevice(host);
}

Q4Groups MakeGroups(int64_t n, int64_t k, bool zero_points, std::mt19937& rng) {
  Q4Groups g;
  g.scales = MakeGrid(n, k, false, rng);
  if (zero_points) g.zero_points = MakeGrid(n, k, true, rng);
  g.ld = static_cast<int32_t>(k / kGroup);
  g.group_size = kGroup;
  return g;
}

void DenseDecode(double copy_gbs, cudaStream_t stream) {
  constexpr int kCopies = 4;
  const int64_t n = 16384, k = 7168;
  std::mt19937 rng(31);
  void* w[kCopies];
  Q4Groups groups[2][kCopies];
  for (int c = 0; c < kCopies; ++c) {
    w[c] = DeviceAlloc(static_cast<size_t>(n * k / 2));
    // Random bytes: every nibble value occurs (the e4m3 fill only avoids a few byte values).
    BENCH_CHECK(LaunchFillRandomE4m3(w[c], static_cast<size_t>(n * k / 2), 5 + c, stream));
    for (int asym = 0; asym < 2; ++asym) groups[asym][c] = MakeGroups(n, k, asym == 1, rng);
  }
  for (int asym = 0; asym < 2; ++asym) {
    for (int64_t tokens : {1, 8}) {
      void* x = DeviceAlloc(static_cast<size_t>(tokens * k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(tokens * n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(tokens * k), 3, 1.0f, stream));
      Q4GemmArgs a;
      a.x = x;
      a.out = out;
      a.m = tokens;
      a.k = k;
      a.n = n;
      a.weight = w[0];
      a.weight_groups = groups[asym][0];
      const Q4GemmPath planned = PlannedQ4GemmPath(a);
      const float ms = MedianMs(stream, kCopies, 5 * kCopies, [&](int i) {
        a.weight = w[i % kCopies];
        a.weight_groups = groups[asym][i % kCopies];
        BENCH_CHECK(LaunchQ4Gemm(a, stream));
      });
      const double bytes = WeightBytes(n, k, asym == 1) + static_cast<double>(tokens) * (n + k) * 2;
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf(
          "q4_decode kind=dense tokens=%lld group=%d zero_points=%d path=%s n=%lld k=%lld "
          "ms=%.4f GBps=%.1f vs_copy=%.3f\n",
          static_cast<long long>(tokens), kGroup, asym,
          planned == Q4GemmPath::kGemv ? "gemv" : "other", static_cast<long long>(n),
          static_cast<long long>(k), ms, gbs, gbs / copy_gbs);
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
  }
  for (void* p : w) BENCH_CHECK(cudaFree(p));
}

// One projection's experts: packed bytes and a group grid each (symmetric).
struct Experts {
  void* pointers = nullptr;  // device const void*[E]
  void* groups = nullptr;    // device Q4Groups[E]
};

Experts MakeExperts(const Proj& p, uint32_t seed, std::mt19937& rng, cudaStream_t stream) {
  Experts e;
  const size_t per = static_cast<size_t>(p.n * p.k / 2);
  char* bytes = static_cast<char*>(DeviceAlloc(per * kExperts));
  BENCH_CHECK(LaunchFillRandomE4m3(bytes, per * kExperts, seed, stream));
  std::vector<const void*> ptrs(kExperts);
  std::vector<Q4Groups> groups(kExperts);
  for (int i = 0; i < kExperts; ++i) {
    ptrs[i] = bytes + i * per;
    groups[i] = MakeGroups(p.n, p.k, false, rng);
  }
  e.pointers = ToDevice(ptrs);
  e.groups = ToDevice(groups);
  return e;
}

Q4GemmArgs GroupedArgs(const Proj& p, const Experts& e, const void* x, const int32_t* offsets,
                       int64_t m, void* out) {
  Q4GemmArgs a = bench::MoeActivationArgs<Q4GemmArgs>(p, x, offsets, m, out);
  a.weights = static_cast<const void* const*>(e.pointers);
  a.expert_groups = static_cast<const Q4Groups*>(e.groups);
  return a;
}

void GroupedDecode(const Experts (&experts)[2], double copy_gbs, cudaStream_t stream) {
  std::mt19937 rng(29);
  for (int64_t tokens : {1, 8, 32}) {
    bench::DeviceRoutings routings = bench::MakeRoutings(tokens, kExperts, kTopK, kRoutings, rng);
    const std::vector<int32_t*>& d_offsets = routings.offsets;
    const double mean_active = routings.MeanActive();
    const int64_t m = tokens * kTopK;
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 9, 1.0f, stream));
      Q4GemmArgs a = GroupedArgs(p, experts[pi], x, d_offsets[0], m, out);
      const Q4GemmPath planned = PlannedQ4GemmPath(a);
      const float ms = MedianMs(stream, kRoutings, 3 * kRoutings, [&](int i) {
        a.expert_offsets = d_offsets[i % kRoutings];
        BENCH_CHECK(LaunchQ4Gemm(a, stream));
      });
      const double bytes =
          mean_active * WeightBytes(p.n, p.k, false) + static_cast<double>(m) * (p.k + p.n) * 2;
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf(
          "q4_decode kind=grouped tokens=%lld proj=%s group=%d path=%s m=%lld n=%lld k=%lld "
          "active_experts=%.1f ms=%.4f GBps=%.1f vs_copy=%.3f\n",
          static_cast<long long>(tokens), p.name, kGroup,
          planned == Q4GemmPath::kGemv ? "gemv" : "other", static_cast<long long>(m),
          static_cast<long long>(p.n), static_cast<long long>(p.k), mean_active, ms, gbs,
          gbs / copy_gbs);
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    routings.Free();
  }
}

void Prefill(const Experts (&experts)[2], cudaStream_t stream) {
  std::mt19937 rng(23);
  for (int64_t tokens : {512, 4096}) {
    const std::vector<int32_t> offsets = bench::RandomOffsets(tokens, kExperts, kTopK, rng);
    const int64_t m = offsets.back();
    int32_t* d_offsets = ToDevice(offsets);
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 7, 1.0f, stream));
      Q4GemmArgs a = GroupedArgs(p, experts[pi], x, d_offsets, m, out);
      a.path = Q4GemmPath::kMma;
      const float ms = MedianMs(stream, 2, 7, [&](int) { BENCH_CHECK(LaunchQ4Gemm(a, stream)); });
      const double flop = 2.0 * static_cast<double>(m) * p.n * p.k;
      std::printf(
          "q4_grouped_prefill tokens=%lld proj=%s path=mma m=%lld n=%lld k=%lld experts=%d "
          "ms=%.3f TFLOPs=%.1f\n",
          static_cast<long long>(tokens), p.name, static_cast<long long>(m),
          static_cast<long long>(p.n), static_cast<long long>(p.k), kExperts, ms,
          flop / (ms * 1e-3) / 1e12);
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    BENCH_CHECK(cudaFree(d_offsets));
  }
}

int Main() {
  if (!bench::HaveGpu()) return 0;
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  const double copy_gbs = bench::CopyBandwidthGBs(stream, 2, 7);
  DenseDecode(copy_gbs, stream);
  std::mt19937 rng(17);
  const Experts experts[2] = {MakeExperts(kProjs[0], 1, rng, stream),
                              MakeExperts(kProjs[1], 2, rng, stream)};
  BENCH_CHECK(cudaStreamSynchronize(stream));
  GroupedDecode(experts, copy_gbs, stream);
  Prefill(experts, stream);
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace expertmesh::cuda

int main() { return expertmesh::cuda::Main(); }
