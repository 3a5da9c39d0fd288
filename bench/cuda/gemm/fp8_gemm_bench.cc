// GPU benchmark of the fp8-weight products (kernels/cuda/gemm/fp8_gemm.h), one line per case,
// never asserting on timings (tools/gpu-check.sh's kernels step runs it):
//  (a) fp8_grouped_prefill: the grouped expert GEMM at prefill sizes (Qwen3-30B-A3B's experts:
//      hidden 2048, moe_intermediate 768, 128 experts, top-8, weights e4m3 with 128x128 block
//      scales) on each path (W8A16 tensor cores, W8A8), as TFLOP/s, against the device's
//      nominal dense FP8 tensor-core peak (SMs x clock x 8192 FLOP: H100/H200 SXM ~1979) and
//      against our bf16 grouped GEMM on the same shapes measured in the same run;
//  (b) fp8_decode: the W8A16 weight stream at decode sizes (grouped, 1..32 tokens, rotating
//      through 16 routings so weights come from DRAM; and a dense [16384, 7168] linear at 1 and
//      8 tokens) as bytes moved per second against device copy bandwidth (read + write), with
//      the bf16 grouped GEMM's time on the same routings for comparison.
// Times are cudaEvent medians after warm-up. The whole run takes a few seconds.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/gemm/bench_fill.h"
#include "kernels/cuda/gemm/fp8_gemm.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"

namespace expertmesh::cuda {
namespace {

using Proj = bench::MoeProj;
constexpr int kExperts = bench::kMoeExperts;
constexpr int kTopK = bench::kMoeTopK;
constexpr auto& kProjs = bench::kMoeProjs;
constexpr int kRoutings = 16;

using bench::DeviceAlloc;
using bench::MedianMs;
using bench::ToDevice;

std::vector<int32_t> RandomOffsets(int64_t tokens, std::mt19937& rng) {
  return bench::RandomOffsets(tokens, kExperts, kTopK, rng);
}

// One projection's experts in both formats: e4m3 with a scale grid each, and bf16.
struct Experts {
  void* fp8_pointers = nullptr;   // device const void*[E]
  void* fp8_scales = nullptr;     // device Fp8Scales[E]
  void* bf16_pointers = nullptr;  // device const void*[E]
};

void* PointerTable(void* storage, size_t per_expert_bytes) {
  std::vector<const void*> ptrs(kExperts);
  for (int i = 0; i < kExperts; ++i) ptrs[i] = static_cast<char*>(storage) + i * per_expert_bytes;
  return ToDevice(ptrs);
}

// A grid of scales near 1/448 (values of about +-1), [ceil(n/128), ceil(k/128)].
Fp8Scales MakeScales(int64_t n, int64_t k, std::mt19937& rng) {
  Fp8Scales s;
  const int64_t rows = (n + 127) / 128, cols = (k + 127) / 128;
  std::vector<float> host(static_cast<size_t>(rows * cols));
  std::uniform_real_distribution<float> dist(0.5f / 448, 2.0f / 448);
  for (float& v : host) v = dist(rng);
  s.scales = ToDevice(host);
  s.ld = static_cast<int32_t>(cols);
  return s;
}

Experts MakeExperts(const Proj& p, uint32_t seed, std::mt19937& rng, cudaStream_t stream) {
  Experts e;
  const size_t per = static_cast<size_t>(p.n * p.k);
  void* fp8 = DeviceAlloc(per * kExperts);
  BENCH_CHECK(LaunchFillRandomE4m3(fp8, per * kExperts, seed, stream));
  e.fp8_pointers = PointerTable(fp8, per);
  std::vector<Fp8Scales> scales(kExperts);
  for (Fp8Scales& s : scales) s = MakeScales(p.n, p.k, rng);
  e.fp8_scales = ToDevice(scales);
  void* bf16 = DeviceAlloc(per * kExperts * 2);
  BENCH_CHECK(LaunchFillRandomBf16(bf16, per * kExperts, seed + 1, 0.05f, stream));
  e.bf16_pointers = PointerTable(bf16, per * 2);
  return e;
}

Fp8GemmArgs GroupedArgs(const Proj& p, const Experts& e, const void* x, const int32_t* offsets,
                        int64_t m, void* out) {
  Fp8GemmArgs a = bench::MoeActivationArgs<Fp8GemmArgs>(p, x, offsets, m, out);
  a.weights = static_cast<const void* const*>(e.fp8_pointers);
  a.expert_scales = static_cast<const Fp8Scales*>(e.fp8_scales);
  return a;
}

MoeGroupedGemmArgs Bf16Args(const Proj& p, const Experts& e, const void* x, const int32_t* offsets,
                            int64_t m, void* out) {
  MoeGroupedGemmArgs a;
  a.x = x;
  a.expert_offsets = offsets;
  a.weights = static_cast<const void* const*>(e.bf16_pointers);
  a.out = out;
  a.m = m;
  a.in_features = p.k;
  a.out_features = p.n;
  a.num_experts = kExperts;
  return a;
}

double NominalFp8PeakTflops() {
  int device = 0, sms = 0, khz = 0;
  BENCH_CHECK(cudaGetDevice(&device));
  BENCH_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  BENCH_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device));
  // Hopper: 8192 dense e4m3 FLOP per SM per clock (wgmma; mma.sync reaches a fraction of it).
  const double tflops = static_cast<double>(sms) * khz * 1e3 * 8192 / 1e12;
  std::printf("fp8_peak_nominal sms=%d clock_MHz=%d dense_fp8_TFLOPs=%.0f\n", sms, khz / 1000,
              tflops);
  return tflops;
}

void Prefill(const Experts (&experts)[2], double peak, cudaStream_t stream) {
  std::mt19937 rng(23);
  void* workspace = DeviceAlloc(size_t{160} << 20);
  for (int64_t tokens : {512, 4096}) {
    const std::vector<int32_t> offsets = RandomOffsets(tokens, rng);
    const int64_t m = offsets.back();
    int32_t* d_offsets = ToDevice(offsets);
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 7, 1.0f, stream));
      const double flop = 2.0 * static_cast<double>(m) * p.n * p.k;
      const MoeGroupedGemmArgs bf16 = Bf16Args(p, experts[pi], x, d_offsets, m, out);
      const float bf16_ms =
          MedianMs(stream, 2, 7, [&](int) { BENCH_CHECK(LaunchMoeGroupedGemm(bf16, stream)); });
      for (Fp8GemmPath path : {Fp8GemmPath::kMmaW8A16, Fp8GemmPath::kW8A8}) {
        Fp8GemmArgs a = GroupedArgs(p, experts[pi], x, d_offsets, m, out);
        a.path = path;
        a.workspace = workspace;
        a.workspace_bytes = size_t{160} << 20;
        const float ms =
            MedianMs(stream, 2, 7, [&](int) { BENCH_CHECK(LaunchFp8Gemm(a, stream)); });
        const double tf = flop / (ms * 1e-3) / 1e12;
        std::printf(
            "fp8_grouped_prefill tokens=%lld proj=%s path=%s m=%lld n=%lld k=%lld experts=%d "
            "ms=%.3f TFLOPs=%.1f vs_fp8_peak=%.3f bf16_grouped_ms=%.3f bf16_grouped_TFLOPs=%.1f "
            "speedup_vs_bf16=%.2f\n",
            static_cast<long long>(tokens), p.name,
            path == Fp8GemmPath::kW8A8 ? "w8a8" : "w8a16_mma", static_cast<long long>(m),
            static_cast<long long>(p.n), static_cast<long long>(p.k), kExperts, ms, tf, tf / peak,
            bf16_ms, flop / (bf16_ms * 1e-3) / 1e12, bf16_ms / ms);
      }
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    BENCH_CHECK(cudaFree(d_offsets));
  }
  BENCH_CHECK(cudaFree(workspace));
}

void GroupedDecode(const Experts (&experts)[2], double copy_gbs, cudaStream_t stream) {
  std::mt19937 rng(29);
  for (int64_t tokens : {1, 8, 32}) {
    bench::DeviceRoutings routings = bench::MakeRoutings(tokens, kExperts, kTopK, kRoutings, rng);
    const std::vector<int32_t*>& d_offsets = routings.offsets;
    const int64_t m = tokens * kTopK;
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 9, 1.0f, stream));
      const double mean_active = routings.MeanActive();
      Fp8GemmArgs a = GroupedArgs(p, experts[pi], x, d_offsets[0], m, out);
      const Fp8GemmPath planned = PlannedFp8GemmPath(a);
      const float ms = MedianMs(stream, kRoutings, 3 * kRoutings, [&](int i) {
        a.expert_offsets = d_offsets[i % kRoutings];
        BENCH_CHECK(LaunchFp8Gemm(a, stream));
      });
      MoeGroupedGemmArgs b = Bf16Args(p, experts[pi], x, d_offsets[0], m, out);
      const float bf16_ms = MedianMs(stream, kRoutings, 3 * kRoutings, [&](int i) {
        b.expert_offsets = d_offsets[i % kRoutings];
        BENCH_CHECK(LaunchMoeGroupedGemm(b, stream));
      });
      // Bytes: the active experts' e4m3 weights and scales once, x read, out written.
      const double bytes = mean_active * p.n * p.k * (1.0 + 4.0 / (128 * 128)) +
                           static_cast<double>(m) * (p.k + p.n) * 2;
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf(
          "fp8_decode kind=grouped tokens=%lld proj=%s path=%s m=%lld n=%lld k=%lld "
          "active_experts=%.1f ms=%.4f GBps=%.1f vs_copy=%.3f bf16_grouped_ms=%.4f "
          "speedup_vs_bf16=%.2f\n",
          static_cast<long long>(tokens), p.name, planned == Fp8GemmPath::kGemv ? "gemv" : "other",
          static_cast<long long>(m), static_cast<long long>(p.n), static_cast<long long>(p.k),
          mean_active, ms, gbs, gbs / copy_gbs, bf16_ms, bf16_ms / ms);
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    routings.Free();
  }
}

void DenseDecode(double copy_gbs, cudaStream_t stream) {
  const int64_t n = 16384, k = 7168;  // 117 MB of e4m3: far past L2
  std::mt19937 rng(31);
  void* w = DeviceAlloc(static_cast<size_t>(n * k));
  BENCH_CHECK(LaunchFillRandomE4m3(w, static_cast<size_t>(n * k), 5, stream));
  const Fp8Scales scales = MakeScales(n, k, rng);
  for (int64_t tokens : {1, 8}) {
    void* x = DeviceAlloc(static_cast<size_t>(tokens * k) * 2);
    void* out = DeviceAlloc(static_cast<size_t>(tokens * n) * 2);
    BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(tokens * k), 3, 1.0f, stream));
    Fp8GemmArgs a;
    a.x = x;
    a.weight = w;
    a.weight_scales = scales;
    a.out = out;
    a.m = tokens;
    a.k = k;
    a.n = n;
    const float ms = MedianMs(stream, 3, 15, [&](int) { BENCH_CHECK(LaunchFp8Gemm(a, stream)); });
    const double bytes = static_cast<double>(n) * k * (1.0 + 4.0 / (128 * 128)) +
                         static_cast<double>(tokens) * (n + k) * 2;
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf(
        "fp8_decode kind=dense tokens=%lld path=gemv n=%lld k=%lld ms=%.4f GBps=%.1f "
        "vs_copy=%.3f\n",
        static_cast<long long>(tokens), static_cast<long long>(n), static_cast<long long>(k), ms,
        gbs, gbs / copy_gbs);
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(out));
  }
  BENCH_CHECK(cudaFree(w));
}

int Main() {
  if (!bench::HaveGpu()) return 0;
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  const double copy_gbs = bench::CopyBandwidthGBs(stream, 2, 7);
  const double peak = NominalFp8PeakTflops();
  std::mt19937 rng(17);
  const Experts experts[2] = {MakeExperts(kProjs[0], 1, rng, stream),
                              MakeExperts(kProjs[1], 2, rng, stream)};
  BENCH_CHECK(cudaStreamSynchronize(stream));
  Prefill(experts, peak, stream);
  GroupedDecode(experts, copy_gbs, stream);
  DenseDecode(copy_gbs, stream);
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace expertmesh::cuda

int main() { return expertmesh::cuda::Main(); }
