// Pieces the model-level GPU benchmarks share: the device-to-device copy bandwidth they report
// their ratios against, order statistics of timings, and deterministic prompt token ids.
#ifndef EXPERTMESH_BENCH_CUDA_MODEL_MODEL_BENCH_UTIL_H_
#define EXPERTMESH_BENCH_CUDA_MODEL_MODEL_BENCH_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_util.h"

namespace expertmesh::bench {

// The q-quantile (0..1) of `v` by nearest rank; 0 for an empty vector.
inline double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}
inline double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }
inline double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// cudaMemcpy device-to-device of 1 GiB, bytes read + written per second (the ceiling for a
// memory-bound kernel, measured on this device in this run), median of 10 after 3 warm-ups.
inline absl::StatusOr<double> CopyBandwidthBytesPerSecond() {
  const size_t bytes = size_t{1} << 30;
  auto a = cuda::DeviceBuffer::Allocate(bytes);
  if (!a.ok()) return a.status();
  auto b = cuda::DeviceBuffer::Allocate(bytes);
  if (!b.ok()) return b.status();
  cudaEvent_t start = nullptr, stop = nullptr;
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaMemset(a->get(), 1, bytes));
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(start));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(b->get(), a->get(), bytes, cudaMemcpyDeviceToDevice));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop));
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float t = 0;
    EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&t, start, stop));
    if (i >= 3) ms.push_back(t);
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventDestroy(start));
  EXPERTMESH_CUDA_RETURN_IF_ERROR(cudaEventDestroy(stop));
  return 2.0 * static_cast<double>(bytes) / (Median(ms) * 1e-3);
}

// Prompt token `i` of request `r`: spread over the vocabulary, never 0 or 1 (bos/eos of the
// make-model checkpoints). tools/gpu/hf_bench.py uses the same formula, so both engines see the
// same prompts.
inline int32_t PromptToken(int64_t r, int64_t i, int64_t vocab) {
  return static_cast<int32_t>(2 + (i * 7919 + r * 104729) % (vocab - 2));
}

}  // namespace expertmesh::bench

#endif  // EXPERTMESH_BENCH_CUDA_MODEL_MODEL_BENCH_UTIL_H_
