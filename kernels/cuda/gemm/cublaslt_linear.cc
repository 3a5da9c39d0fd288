#include "kernels/cuda/gemm/cublaslt_linear.h"

#include <climits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace expertmesh::cuda {
namespace {

absl::Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasLtGetStatusString(status)));
}

#define EXPERTMESH_CUBLAS_RETURN_IF_ERROR(expr)                                  \
  do {                                                                           \
    const cublasStatus_t expertmesh_cublas_status_ = (expr);                     \
    if (expertmesh_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                    \
      return ::expertmesh::cuda::CublasStatus(expertmesh_cublas_status_, #expr); \
    }                                                                            \
  } while (false)

bool IsF32OrBf16(DType d) { return d == DType::kF32 || d == DType::kBF16; }

cudaDataType_t CudaType(DType d) { return d == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// The largest power of two (up to 256, cuBLASLt's default assumption) dividing the address.
uint32_t Alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

}  // namespace

struct CublasLtLinear::PlanKey {
  int64_t n = 0, in = 0, out = 0;
  DType x = DType::kBF16, w = DType::kBF16, o = DType::kBF16;
  bool bias = false;
  uint32_t align_x = 0, align_w = 0, align_o = 0;

  bool operator==(const PlanKey&) const = default;
};

struct CublasLtLinear::Plan {
  PlanKey key;
  bool use_simt = false;  // cuBLASLt has no algorithm for it
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // the weight
  cublasLtMatrixLayout_t b = nullptr;  // x
  cublasLtMatrixLayout_t d = nullptr;  // out (also C, with beta = 0)
  cublasLtMatmulAlgo_t algo{};

  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

CublasLtLinear::Path CublasLtLinear::PlannedPath(const LinearArgs& a) {
  const bool has_bias = a.bias != nullptr;
  if (!IsF32OrBf16(a.x_dtype) || !IsF32OrBf16(a.weight_dtype) || !IsF32OrBf16(a.out_dtype) ||
      (has_bias && !IsF32OrBf16(a.bias_dtype))) {
    return Path::kUnsupported;
  }
  if (a.n > INT_MAX || a.in_features > INT_MAX || a.out_features > INT_MAX) {
    return Path::kUnsupported;
  }
  if (a.in_features == 0) return Path::kSimt;
  // cuBLASLt's bias vector has the output's type; bias pointers are asked to be 16-byte aligned.
  if (has_bias && (a.bias_dtype != a.out_dtype || Alignment(a.bias) < 16)) return Path::kSimt;
  if (a.x_dtype == DType::kBF16 && a.weight_dtype == DType::kBF16) return Path::kCublasLt;
  if (a.x_dtype == DType::kF32 && a.weight_dtype == DType::kF32 && a.out_dtype == DType::kF32) {
    return Path::kCublasLt;
  }
  return Path::kSimt;
}

absl::StatusOr<std::unique_ptr<CublasLtLinear>> CublasLtLinear::Create(
    const CublasLtLinearOptions& options) {
  DeviceBuffer owned;
  void* workspace = options.workspace;
  if (workspace == nullptr && options.workspace_bytes > 0) {
    absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Allocate(options.workspace_bytes);
    if (!buffer.ok()) return buffer.status();
    owned = std::move(*buffer);
    workspace = owned.get();
  }
  cublasLtHandle_t handle = nullptr;
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  return std::unique_ptr<CublasLtLinear>(new CublasLtLinear(
      handle, std::move(owned), workspace, workspace == nullptr ? 0 : options.workspace_bytes,
      options.max_plans > 0 ? options.max_plans : 1));
}

CublasLtLinear::CublasLtLinear(cublasLtHandle_t handle, DeviceBuffer owned, void* workspace,
                               size_t workspace_bytes, int max_plans)
    : handle_(handle),
      owned_workspace_(std::move(owned)),
      workspace_(workspace),
      workspace_bytes_(workspace_bytes),
      max_plans_(max_plans) {}

CublasLtLinear::~CublasLtLinear() {
  plans_.clear();  // descriptors before the handle
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

absl::StatusOr<CublasLtLinear::Plan*> CublasLtLinear::GetPlan(const LinearArgs& args) {
  PlanKey key;
  key.n = args.n;
  key.in = args.in_features;
  key.out = args.out_features;
  key.x = args.x_dtype;
  key.w = args.weight_dtype;
  key.o = args.out_dtype;
  key.bias = args.bias != nullptr;
  key.align_x = Alignment(args.x);
  key.align_w = Alignment(args.weight);
  key.align_o = Alignment(args.out);
  for (const std::unique_ptr<Plan>& plan : plans_) {
    if (plan->key == key) return plan.get();
  }

  auto plan = std::make_unique<Plan>();
  plan->key = key;
  // Row-major out[n, out] = x[n, in] @ W[out, in]^T is, column-major, out^T (out x n) =
  // W (W^T stored as in x out, transposed) times x^T (stored as in x n).
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t trans_a = CUBLAS_OP_T;
  const int32_t trans_b = CUBLAS_OP_N;
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  if (key.bias) {
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    // A placeholder until Run sets the real pointer; the heuristic only needs the epilogue.
    const void* bias = args.bias;
    EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->a, CudaType(key.w), static_cast<uint64_t>(key.in),
                                 static_cast<uint64_t>(key.out), key.in));
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->b, CudaType(key.x), static_cast<uint64_t>(key.in),
                                 static_cast<uint64_t>(key.n), key.in));
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->d, CudaType(key.o), static_cast<uint64_t>(key.out),
                                 static_cast<uint64_t>(key.n), key.out));

  cublasLtMatmulPreference_t pref = nullptr;
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace_bytes = workspace_bytes_;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
  // Algorithms that need more alignment than these pointers have are excluded.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_o},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_o}};
  for (const auto& [attr, value] : aligns) {
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
    }
  }
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
        handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1, &result, &returned);
    // No algorithm (NOT_SUPPORTED, or none returned) is not an error: the SIMT kernel runs it.
    plan->use_simt = heuristic != CUBLAS_STATUS_SUCCESS || returned == 0 ||
                     result.state != CUBLAS_STATUS_SUCCESS;
    plan->algo = result.algo;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  EXPERTMESH_CUBLAS_RETURN_IF_ERROR(status);

  if (static_cast<int>(plans_.size()) >= max_plans_) plans_.erase(plans_.begin());
  plans_.push_back(std::move(plan));
  return plans_.back().get();
}

absl::Status CublasLtLinear::Run(const LinearArgs& args, cudaStream_t stream) {
  const Path path = PlannedPath(args);
  if (path == Path::kUnsupported) {
    return absl::UnimplementedError(absl::StrCat(
        "cuda linear: x ", std::string(DTypeName(args.x_dtype)), ", weight ",
        std::string(DTypeName(args.weight_dtype)), ", out ", std::string(DTypeName(args.out_dtype)),
        " (sizes ", args.n, "x", args.in_features, "x", args.out_features, ")"));
  }
  if (args.n == 0 || args.out_features == 0) return absl::OkStatus();
  if (path == Path::kCublasLt) {
    absl::StatusOr<Plan*> plan = GetPlan(args);
    if (!plan.ok()) return plan.status();
    Plan& p = **plan;
    if (!p.use_simt) {
      if (p.key.bias) {
        const void* bias = args.bias;
        EXPERTMESH_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
            p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
      }
      const float alpha = 1.0f;
      const float beta = 0.0f;
      EXPERTMESH_CUBLAS_RETURN_IF_ERROR(
          cublasLtMatmul(handle_, p.desc, &alpha, args.weight, p.a, args.x, p.b, &beta, args.out,
                         p.d, args.out, p.d, &p.algo, workspace_, workspace_bytes_, stream));
      return absl::OkStatus();
    }
  }
  EXPERTMESH_CUDA_RETURN_IF_ERROR(LaunchLinearSimt(args, stream));
  return absl::OkStatus();
}

}  // namespace expertmesh::cuda
