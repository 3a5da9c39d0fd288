// Dense linear through cuBLASLt: out = x @ W^T (+ bias), kernels::Backend::Linear semantics,
// fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32 for f32 inputs, so f32 results match the CPU
// reference to fp32 summation order).
//
// What runs where:
//   x     W     out        bias            path
//   bf16  bf16  bf16|f32   none or = out   cuBLASLt (tensor cores), bias fused in the epilogue
//   f32   f32   f32        none or f32     cuBLASLt SGEMM (pure fp32)
//   any other f32/bf16 mix (f32 x with bf16 W in exact mode, a bias dtype other than out's,
//   in_features == 0, or a shape cuBLASLt finds no algorithm for): the fp32 SIMT kernel of
//   linear_simt.h, same numerics (fp32 sum, + bias, rounded once).
//
// The object owns the cuBLASLt handle and a workspace fixed at construction, and caches one
// plan (descriptors + heuristic algorithm) per shape/dtype/alignment; Run never allocates device
// memory or synchronises, so it can be captured into a CUDA graph once the plan for the shape
// exists (the first call of a shape asks cuBLASLt's heuristic, a host-only call). Runs share the
// workspace, so they must be ordered on one stream (the backend has one). Not thread-safe.
#ifndef EXPERTMESH_KERNELS_CUDA_GEMM_CUBLASLT_LINEAR_H_
#define EXPERTMESH_KERNELS_CUDA_GEMM_CUBLASLT_LINEAR_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/gemm/linear_simt.h"

namespace expertmesh::cuda {

struct CublasLtLinearOptions {
  // Device memory cuBLASLt may use as scratch (split-K and the like). When null, the object
  // allocates workspace_bytes itself at construction.
  void* workspace = nullptr;
  size_t workspace_bytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper
  // Plans kept (least recently created dropped first); a model uses a dozen shapes.
  int max_plans = 64;
};

class CublasLtLinear {
 public:
  enum class Path { kCublasLt, kSimt, kUnsupported };

  // Errors: Internal when cuBLASLt cannot start; ResourceExhausted for the workspace.
  static absl::StatusOr<std::unique_ptr<CublasLtLinear>> Create(
      const CublasLtLinearOptions& options = {});
  ~CublasLtLinear();
  CublasLtLinear(const CublasLtLinear&) = delete;
  CublasLtLinear& operator=(const CublasLtLinear&) = delete;

  // Enqueues the product on `stream`. Shapes are the caller's to validate (kernels::Backend
  // does). Errors: Unimplemented for a dtype other than f32/bf16 or a size over INT32_MAX;
  // Internal for a cuBLASLt or launch failure.
  absl::Status Run(const LinearArgs& args, cudaStream_t stream);

  // The path Run would take for these dtypes (before asking cuBLASLt for an algorithm: a shape
  // it has none for still falls back to kSimt). For tests and benchmarks.
  static Path PlannedPath(const LinearArgs& args);

  // The number of cached plans (for tests).
  size_t num_plans() const { return plans_.size(); }

 private:
  struct Plan;
  struct PlanKey;

  CublasLtLinear(cublasLtHandle_t handle, DeviceBuffer owned, void* workspace,
                 size_t workspace_bytes, int max_plans);
  absl::StatusOr<Plan*> GetPlan(const LinearArgs& args);

  cublasLtHandle_t handle_;
  DeviceBuffer owned_workspace_;
  void* workspace_;
  size_t workspace_bytes_;
  int max_plans_;
  std::vector<std::unique_ptr<Plan>> plans_;
};

}  // namespace expertmesh::cuda

#endif  // EXPERTMESH_KERNELS_CUDA_GEMM_CUBLASLT_LINEAR_H_
