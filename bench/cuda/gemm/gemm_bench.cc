// GPU benchmark of kernels/cuda/gemm, one line per case (never asserts on timings):
//  (a) the grouped expert GEMM at prefill sizes (Qwen3-30B-A3B: hidden 2048, moe_intermediate
//      768, 128 experts, top-8) against one cuBLASLt dense bf16 GEMM of the same FLOPs and the
//      same weight bytes measured in the same run (DenseBaseline below says how):
//      ratio = dense time / grouped time (target >= 0.8), plus TFLOP/s;
//  (b) device copy bandwidth (cudaMemcpy D2D, read + write bytes) and the grouped GEMM at
//      decode sizes (a few tokens per expert) as bytes of weights read / time against it.
// Times are cudaEvent medians after warm-up. Decode runs rotate through 16 routings so each run
// reads experts the previous ones did not (weights come from DRAM, not from L2).
//
//   gemm_bench              the measurements above
//   gemm_bench --versions   one line: the CUDA runtime and cuBLAS versions this binary was
//                           compiled against (headers) and the ones it loaded, and the driver's
//                           CUDA version; needs no GPU (tools/gpu-check.sh's versions step)
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "bench/cuda/gemm/bench_fill.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/gemm/cublaslt_linear.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"

namespace expertmesh::cuda {
namespace {

using Proj = bench::MoeProj;
constexpr int kExperts = bench::kMoeExperts;
constexpr int kTopK = bench::kMoeTopK;
constexpr auto& kProjs = bench::kMoeProjs;

using bench::DeviceAlloc;
using bench::Median;
using bench::TimeRuns;
using bench::ToDevice;

// Random top-k routing of `tokens` tokens: per-expert row counts as offsets [E + 1].
std::vector<int32_t> RandomOffsets(int64_t tokens, std::mt19937& rng) {
  return bench::RandomOffsets(tokens, kExperts, kTopK, rng);
}

// One projection's expert weights: a contiguous [E, n, k] bf16 buffer and its pointer array.
struct Experts {
  void* storage = nullptr;
  void* pointers = nullptr;  // device const void*[E]
};

Experts MakeExperts(const Proj& p, uint32_t seed, cudaStream_t stream) {
  Experts e;
  const size_t per = static_cast<size_t>(p.n * p.k);
  e.storage = DeviceAlloc(per * kExperts * 2);
  BENCH_CHECK(LaunchFillRandomBf16(e.storage, per * kExperts, seed, 0.05f, stream));
  std::vector<const void*> ptrs(kExperts);
  for (int i = 0; i < kExperts; ++i) ptrs[i] = static_cast<const char*>(e.storage) + i * per * 2;
  e.pointers = ToDevice(ptrs);
  return e;
}

const char* PathName(MoeGemmPath p) {
  switch (p) {
    case MoeGemmPath::kAuto:
      return "auto";
    case MoeGemmPath::kTensorCoreLarge:
      return "tc128";
    case MoeGemmPath::kTensorCoreSmall:
      return "tc32";
    case MoeGemmPath::kSimt:
      return "simt";
  }
  return "?";
}

// The dense baseline of one grouped prefill GEMM (m rows, each multiplied by the [n, k] weight of
// the expert it was routed to): one cuBLASLt GEMM that does the same FLOPs *and* reads the same
// weight bytes from HBM. The grouped run reads every expert's weight (gate_up: 128 x 6.3 MB =
// 805 MB, down: 403 MB), far more than L2 (50 MB on H100, 60 MB on H200). Multiplying all m rows
// by expert 0's 6.3 MB weight, as this baseline once did, keeps that weight in L2 after the first
// tiles: a compute-bound GEMM against one that streams 128 times the bytes, so the ratio compared
// unlike things.
//
// Here the weight is all experts stacked, W' = [E * n, k] (the experts' storage as it is, one
// contiguous buffer), and the input is the first m / E rows of x: out' = x[:m/E] W'^T is
// [m / E, E * n]. FLOPs 2 * (m / E) * (E * n) * k = 2 * m * n * k, every weight byte read once per
// call (805 MB do not stay in L2 between the timed calls either), and the same output bytes
// (m * n). It is the grouped GEMM under a perfectly even routing with all experts sharing their
// rows, so it reads E times fewer input bytes (1 MB instead of 134 MB for gate_up at 4096
// tokens, small beside the weights) and has no per-expert tails: the best a grouped GEMM of
// these bytes and FLOPs could hope for. Two alternatives were rejected: cycling the dense
// GEMM through a weight set larger than L2 still reads only one expert's 6.3 MB per call (1/128
// of the grouped bytes, then reused from L2 by every tile), and 128 per-expert cuBLASLt calls
// would time 128 launches of small GEMMs rather than the memory system.
LinearArgs DenseBaseline(const Proj& p, int64_t m, void* x, const Experts& experts, void* out) {
  if (m % kExperts != 0) {
    std::fprintf(stderr, "dense baseline: m=%lld is not a multiple of %d experts\n",
                 static_cast<long long>(m), kExperts);
    std::exit(1);
  }
  LinearArgs dense;
  dense.x = x;                     // the first m / E rows
  dense.weight = experts.storage;  // [E * n, k]: every expert's weight
  dense.out = out;                 // [m / E, E * n]: m * n elements, as the grouped output
  dense.n = m / kExperts;
  dense.in_features = p.k;
  dense.out_features = p.n * kExperts;
  return dense;
}

void Prefill(CublasLtLinear& linear, const Experts (&experts)[2], cudaStream_t stream,
             uint32_t* flags) {
  std::mt19937 rng(1);
  for (int64_t tokens : {4096, 16384}) {
    const int64_t m = tokens * kTopK;
    const std::vector<int32_t> offsets = RandomOffsets(tokens, rng);
    int32_t* d_offsets = ToDevice(offsets);
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 7, 1.0f, stream));
      const double flop = 2.0 * static_cast<double>(m) * p.n * p.k;

      const LinearArgs dense = DenseBaseline(p, m, x, experts[pi], out);
      const float dense_ms = Median(TimeRuns(stream, 3, 10, [&](int) {
        const absl::Status s = linear.Run(dense, stream);
        if (!s.ok()) {
          std::fprintf(stderr, "dense: %s\n", std::string(s.message()).c_str());
          std::exit(1);
        }
      }));
      // cuBLASLt runs this shape near the tensor-core peak; a few TFLOP/s means it found no
      // algorithm and CublasLtLinear fell back to its SIMT kernel, which is no baseline.
      if (flop / (dense_ms * 1e-3) / 1e12 < 50.0) {
        std::printf("warning: dense baseline at %.1f TFLOP/s: not cuBLASLt's tensor cores?\n",
                    flop / (dense_ms * 1e-3) / 1e12);
      }

      for (MoeGemmPath path : {MoeGemmPath::kAuto, MoeGemmPath::kTensorCoreLarge}) {
        MoeGroupedGemmArgs a;
        a.x = x;
        a.expert_offsets = d_offsets;
        a.weights = static_cast<const void* const*>(experts[pi].pointers);
        a.out = out;
        a.m = m;
        a.in_features = p.k;
        a.out_features = p.n;
        a.num_experts = kExperts;
        a.error_flags = flags;
        a.path = path;
        const float ms = Median(
            TimeRuns(stream, 3, 10, [&](int) { BENCH_CHECK(LaunchMoeGroupedGemm(a, stream)); }));
        std::printf(
            "grouped_prefill tokens=%lld proj=%s path=%s m=%lld n=%lld k=%lld experts=%d "
            "weight_MB=%.0f grouped_ms=%.3f grouped_TFLOPs=%.1f dense_shape=%lldx%lldx%lld "
            "dense_weight_MB=%.0f dense_cublaslt_ms=%.3f dense_TFLOPs=%.1f ratio_vs_dense=%.3f "
            "target=0.80\n",
            static_cast<long long>(tokens), p.name, PathName(path), static_cast<long long>(m),
            static_cast<long long>(p.n), static_cast<long long>(p.k), kExperts,
            static_cast<double>(kExperts * p.n * p.k) * 2 / 1e6, ms, flop / (ms * 1e-3) / 1e12,
            static_cast<long long>(dense.n), static_cast<long long>(dense.out_features),
            static_cast<long long>(dense.in_features),
            static_cast<double>(dense.out_features * dense.in_features) * 2 / 1e6, dense_ms,
            flop / (dense_ms * 1e-3) / 1e12, dense_ms / ms);
      }
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    BENCH_CHECK(cudaFree(d_offsets));
  }
}

void Decode(const Experts (&experts)[2], double copy_gbs, cudaStream_t stream, uint32_t* flags) {
  constexpr int kRoutings = 16;
  std::mt19937 rng(2);
  for (int64_t tokens : {1, 4, 16, 64, 256}) {
    const int64_t m = tokens * kTopK;
    // Distinct routings, each with its bytes of weights (experts with at least one row).
    bench::DeviceRoutings routings = bench::MakeRoutings(tokens, kExperts, kTopK, kRoutings, rng);
    const std::vector<int32_t*>& d_offsets = routings.offsets;
    const std::vector<int>& active = routings.active;
    for (int pi = 0; pi < 2; ++pi) {
      const Proj& p = kProjs[pi];
      void* x = DeviceAlloc(static_cast<size_t>(m * p.k) * 2);
      void* out = DeviceAlloc(static_cast<size_t>(m * p.n) * 2);
      BENCH_CHECK(LaunchFillRandomBf16(x, static_cast<size_t>(m * p.k), 9, 1.0f, stream));
      for (MoeGemmPath path :
           {MoeGemmPath::kAuto, MoeGemmPath::kTensorCoreSmall, MoeGemmPath::kTensorCoreLarge}) {
        MoeGroupedGemmArgs a;
        a.x = x;
        a.weights = static_cast<const void* const*>(experts[pi].pointers);
        a.out = out;
        a.m = m;
        a.in_features = p.k;
        a.out_features = p.n;
        a.num_experts = kExperts;
        a.error_flags = flags;
        a.path = path;
        constexpr int kWarmup = kRoutings;
        std::vector<float> ms = TimeRuns(stream, kWarmup, 3 * kRoutings, [&](int i) {
          a.expert_offsets = d_offsets[i % kRoutings];
          BENCH_CHECK(LaunchMoeGroupedGemm(a, stream));
        });
        std::vector<float> gbs(ms.size());
        double mean_active = 0;
        for (size_t i = 0; i < ms.size(); ++i) {
          const int r = static_cast<int>((kWarmup + i) % kRoutings);
          const double bytes = static_cast<double>(active[r]) * p.n * p.k * 2 +
                               static_cast<double>(m) * (p.k + p.n) * 2;
          gbs[i] = static_cast<float>(bytes / (ms[i] * 1e-3) / 1e9);
          mean_active += active[r];
        }
        mean_active /= static_cast<double>(ms.size());
        const float median_gbs = Median(gbs);
        std::printf(
            "grouped_decode tokens=%lld proj=%s path=%s m=%lld active_experts=%.1f "
            "median_ms=%.4f weights_GBps=%.1f ratio_vs_copy=%.3f\n",
            static_cast<long long>(tokens), p.name, PathName(path), static_cast<long long>(m),
            mean_active, Median(ms), median_gbs, median_gbs / copy_gbs);
      }
      BENCH_CHECK(cudaFree(x));
      BENCH_CHECK(cudaFree(out));
    }
    routings.Free();
  }
}

// "13.1.0" from cuBLAS's major * 10000 + minor * 100 + patch.
std::string CublasVersionString(size_t v) {
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}
// "13.0" from CUDA's major * 1000 + minor * 10.
std::string CudaVersionString(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// Compiled-against (header macros) beside loaded (what the libraries themselves report) versions.
// driver_cuda=none where no driver is installed (cudaDriverGetVersion reports 0).
void PrintVersions() {
  int runtime = 0, driver = 0;
  const cudaError_t runtime_err = cudaRuntimeGetVersion(&runtime);
  const cudaError_t driver_err = cudaDriverGetVersion(&driver);
  std::printf(
      "versions compiled_cudart=%s loaded_cudart=%s driver_cuda=%s compiled_cublas=%s "
      "loaded_cublasLt=%s loaded_cublasLt_cudart=%s\n",
      CudaVersionString(CUDART_VERSION).c_str(),
      runtime_err == cudaSuccess ? CudaVersionString(runtime).c_str() : "unknown",
      driver_err == cudaSuccess && driver > 0 ? CudaVersionString(driver).c_str() : "none",
      CublasVersionString(CUBLAS_VERSION).c_str(),
      CublasVersionString(cublasLtGetVersion()).c_str(),
      CudaVersionString(static_cast<int>(cublasLtGetCudartVersion())).c_str());
}

int Main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--versions") == 0) {
    PrintVersions();
    return 0;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: gemm_bench [--versions]\n");
    return 2;
  }
  PrintVersions();
  if (!CudaDeviceAvailable()) {
    std::printf("gemm_bench: no CUDA GPU on this machine; nothing measured\n");
    return 0;
  }
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device name=\"%s\" sms=%d\n", prop.name, prop.multiProcessorCount);
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto linear = CublasLtLinear::Create();
  if (!linear.ok()) {
    std::fprintf(stderr, "cublasLt: %s\n", std::string(linear.status().message()).c_str());
    return 1;
  }
  uint32_t* flags = static_cast<uint32_t*>(DeviceAlloc(4));
  BENCH_CHECK(cudaMemsetAsync(flags, 0, 4, stream));

  const double copy_gbs = bench::CopyBandwidthGBs(stream, 3, 10);
  const Experts experts[2] = {MakeExperts(kProjs[0], 3, stream), MakeExperts(kProjs[1], 5, stream)};
  BENCH_CHECK(cudaStreamSynchronize(stream));
  Decode(experts, copy_gbs, stream, flags);
  Prefill(**linear, experts, stream, flags);

  uint32_t host_flags = 0;
  BENCH_CHECK(cudaMemcpy(&host_flags, flags, 4, cudaMemcpyDeviceToHost));
  if (host_flags != 0) std::printf("warning: error flags 0x%x set\n", host_flags);
  for (const Experts& e : experts) {
    BENCH_CHECK(cudaFree(e.storage));
    BENCH_CHECK(cudaFree(e.pointers));
  }
  BENCH_CHECK(cudaFree(flags));
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace expertmesh::cuda

int main(int argc, char** argv) { return expertmesh::cuda::Main(argc, argv); }
