// Host helpers shared by the CUDA benchmarks (plain executables printing one line per case):
// exiting on a CUDA error, device allocation and upload, cudaEvent timing, device copy bandwidth,
// and for the grouped GEMM benchmarks (bf16, fp8, q4) the expert shapes they all run and their
// random top-k routings, one or a rotation of them on the device.
#ifndef EXPERTMESH_BENCH_CUDA_BENCH_UTIL_H_
#define EXPERTMESH_BENCH_CUDA_BENCH_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

// Prints the failing expression and exits 1 unless `expr` returns cudaSuccess.
#define BENCH_CHECK(expr)                                                      \
  do {                                                                         \
    const cudaError_t bench_err_ = (expr);                                     \
    if (bench_err_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(bench_err_)); \
      std::exit(1);                                                            \
    }                                                                          \
  } while (false)

namespace expertmesh::cuda::bench {

// Whether this machine has a CUDA device; without one, prints the line saying so (a benchmark
// then measures nothing and exits 0).
inline bool HaveGpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA GPU on this machine\n");
    return false;
  }
  return true;
}

inline void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  BENCH_CHECK(cudaMalloc(&p, bytes));
  return p;
}

// A device copy of `host` (pointer tables, scale grids, routings); the caller frees it.
template <typename T>
T* ToDevice(const std::vector<T>& host) {
  void* d = DeviceAlloc(host.size() * sizeof(T));
  BENCH_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return static_cast<T*>(d);
}

// Times in ms of run(i) for i = warmup .. warmup + reps - 1, after `warmup` unrecorded runs.
inline std::vector<float> TimeRuns(cudaStream_t stream, int warmup, int reps,
                                   const std::function<void(int)>& run) {
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) run(i);
  BENCH_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    BENCH_CHECK(cudaEventRecord(start, stream));
    run(warmup + i);
    BENCH_CHECK(cudaEventRecord(stop, stream));
    BENCH_CHECK(cudaEventSynchronize(stop));
    BENCH_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  BENCH_CHECK(cudaEventDestroy(start));
  BENCH_CHECK(cudaEventDestroy(stop));
  return ms;
}

inline float Median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median time in ms of `run` over `reps` runs after `warmup` unrecorded ones.
inline float MedianMs(cudaStream_t stream, int warmup, int reps,
                      const std::function<void(int)>& run) {
  return Median(TimeRuns(stream, warmup, reps, run));
}
inline float MedianMs(cudaStream_t stream, int warmup, int reps, const std::function<void()>& run) {
  return MedianMs(stream, warmup, reps, [&](int) { run(); });
}

// cudaMemcpy device to device of 1 GiB, as bytes read + written per second (GB/s); prints one
// copy_bandwidth line.
inline double CopyBandwidthGBs(cudaStream_t stream, int warmup, int reps) {
  const size_t bytes = size_t{1} << 30;
  void* a = DeviceAlloc(bytes);
  void* b = DeviceAlloc(bytes);
  BENCH_CHECK(cudaMemsetAsync(a, 1, bytes, stream));
  const float ms = MedianMs(stream, warmup, reps, [&](int) {
    BENCH_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  BENCH_CHECK(cudaFree(a));
  BENCH_CHECK(cudaFree(b));
  const double gbs = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
  std::printf("copy_bandwidth bytes=%zu ms=%.3f read_plus_write_GBps=%.1f\n", bytes, ms, gbs);
  return gbs;
}

// Random top-k routing of `tokens` tokens over `experts` experts: per-expert row counts as
// offsets [experts + 1].
inline std::vector<int32_t> RandomOffsets(int64_t tokens, int experts, int top_k,
                                          std::mt19937& rng) {
  std::vector<int32_t> ids(experts);
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<int32_t> counts(experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int j = 0; j < top_k; ++j) ++counts[ids[j]];
  }
  std::vector<int32_t> offsets(experts + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  return offsets;
}

// The grouped GEMM benchmarks' experts: Qwen3-30B-A3B's (128 experts, top-8, hidden 2048,
// moe_intermediate 768), one [n, k] weight per expert and projection.
inline constexpr int kMoeExperts = 128;
inline constexpr int kMoeTopK = 8;
struct MoeProj {
  const char* name;
  int64_t n;  // out_features
  int64_t k;  // in_features
};
inline constexpr MoeProj kMoeProjs[] = {{"gate_up", 2 * 768, 2048}, {"down", 2048, 768}};

// What the quantized grouped launchers' args (Fp8GemmArgs, Q4GemmArgs) name alike for
// projection p of the kMoeExperts experts: x, the routing, out and the sizes; the weights are the
// caller's to set.
template <typename Args>
Args MoeActivationArgs(const MoeProj& p, const void* x, const int32_t* offsets, int64_t m,
                       void* out) {
  Args a;
  a.x = x;
  a.expert_offsets = offsets;
  a.out = out;
  a.m = m;
  a.k = p.k;
  a.n = p.n;
  a.num_experts = kMoeExperts;
  return a;
}

// `count` random routings of `tokens` tokens (RandomOffsets) on the device, for decode runs that
// rotate through them so each run reads experts the previous ones did not (weights come from
// DRAM, not L2); active[r] counts routing r's experts with at least one row, whose weights it
// reads.
struct DeviceRoutings {
  std::vector<int32_t*> offsets;
  std::vector<int> active;

  double MeanActive() const {
    double sum = 0;
    for (int a : active) sum += a;
    return sum / static_cast<double>(active.size());
  }
  void Free() {
    for (int32_t* d : offsets) BENCH_CHECK(cudaFree(d));
  }
};

inline DeviceRoutings MakeRoutings(int64_t tokens, int experts, int top_k, int count,
                                   std::mt19937& rng) {
  DeviceRoutings r;
  for (int i = 0; i < count; ++i) {
    const std::vector<int32_t> offsets = RandomOffsets(tokens, experts, top_k, rng);
    int active = 0;
    for (int e = 0; e < experts; ++e) active += offsets[e + 1] > offsets[e] ? 1 : 0;
    r.active.push_back(active);
    r.offsets.push_back(ToDevice(offsets));
  }
  return r;
}

}  // namespace expertmesh::cuda::bench

#endif  // EXPERTMESH_BENCH_CUDA_BENCH_UTIL_H_
