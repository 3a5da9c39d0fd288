// The dense linear on the GPU (CublasLtLinear and the SIMT fallback) against the CPU backend's
// Linear on the same inputs, for every dtype combination and awkward shapes; tolerances in
// gemm_test_util.h.
#include <cuda_runtime_api.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/gemm/cublaslt_linear.h"
#include "kernels/cuda/gemm/linear_simt.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gemm/gemm_test_util.h"

namespace expertmesh::testing {
namespace {

using cuda::CublasLtLinear;
using cuda::LinearArgs;

struct LinearCase {
  std::string name;
  int64_t n, in, out;
  DType x, w;
  bool bias;
  DType bias_dtype;
  DType out_dtype;
};

std::vector<LinearCase> Cases() {
  std::vector<LinearCase> cases;
  const DType kDtypes[] = {DType::kBF16, DType::kF32};
  // Every dtype combination, with and without each bias dtype, at an odd shape.
  for (DType x : kDtypes) {
    for (DType w : kDtypes) {
      for (DType o : kDtypes) {
        for (int b = 0; b < 3; ++b) {
          const DType bd = b == 2 ? DType::kF32 : DType::kBF16;
          cases.push_back({"x" + DTypeShort(x) + "_w" + DTypeShort(w) + "_o" + DTypeShort(o) +
                               (b == 0 ? "" : "_bias" + DTypeShort(bd)),
                           33, 136, 72, x, w, b != 0, bd, o});
        }
      }
    }
  }
  // Shapes: one row (decode), in not a multiple of 8, prefill sizes, an lm_head-like f32 output.
  cases.push_back({"one_row_bf16", 1, 2048, 2048, DType::kBF16, DType::kBF16, false, DType::kBF16,
                   DType::kBF16});
  cases.push_back({"one_row_f32x_bf16w", 1, 2048, 768, DType::kF32, DType::kBF16, false,
                   DType::kBF16, DType::kF32});
  cases.push_back(
      {"odd_75x37_bf16", 5, 75, 37, DType::kBF16, DType::kBF16, true, DType::kBF16, DType::kBF16});
  cases.push_back(
      {"odd_75x37_f32", 5, 75, 37, DType::kF32, DType::kF32, true, DType::kF32, DType::kF32});
  cases.push_back({"prefill_bf16", 512, 2048, 1536, DType::kBF16, DType::kBF16, false, DType::kBF16,
                   DType::kBF16});
  cases.push_back(
      {"prefill_f32", 256, 1024, 640, DType::kF32, DType::kF32, true, DType::kF32, DType::kF32});
  cases.push_back({"router_logits", 77, 2048, 128, DType::kBF16, DType::kBF16, false, DType::kBF16,
                   DType::kF32});
  cases.push_back(
      {"exact_mode", 64, 2048, 1536, DType::kF32, DType::kBF16, false, DType::kBF16, DType::kF32});
  return cases;
}

class CudaLinearTest : public CudaTestWithParam<LinearCase> {
 protected:
  void SetUp() override {
    CudaTestWithParam<LinearCase>::SetUp();
    if (IsSkipped()) return;
    auto cpu = kernels::cpu::CpuBackend::Create({});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
    auto linear = CublasLtLinear::Create();
    ASSERT_TRUE(linear.ok()) << linear.status();
    linear_ = std::move(*linear);
  }
  std::unique_ptr<kernels::cpu::CpuBackend> cpu_;
  std::unique_ptr<CublasLtLinear> linear_;
};

TEST_P(CudaLinearTest, MatchesCpuBackend) {
  const LinearCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.n * 131 + c.in * 7 + c.out));
  Tensor x = RandomTensor(c.x, {c.n, c.in}, rng);
  Tensor w = RandomTensor(c.w, {c.out, c.in}, rng);
  Tensor bias = c.bias ? RandomTensor(c.bias_dtype, {c.out}, rng) : Tensor();
  Tensor ref = *Tensor::Empty(DType::kF32, {c.n, c.out});
  Tensor scale = *Tensor::Empty(DType::kF32, {c.n, c.out});
  ASSERT_TRUE(cpu_->Linear(x, w, bias, ref).ok());
  ASSERT_TRUE(cpu_->Linear(AbsTensor(x), AbsTensor(w), AbsTensor(bias), scale).ok());

  DeviceTensor dx = ToDevice(x), dw = ToDevice(w);
  DeviceTensor db = c.bias ? ToDevice(bias) : DeviceTensor{};
  DeviceTensor dout = DeviceEmpty(c.out_dtype, {c.n, c.out});
  LinearArgs args;
  args.x = dx.tensor.raw_data();
  args.x_dtype = c.x;
  args.weight = dw.tensor.raw_data();
  args.weight_dtype = c.w;
  args.bias = c.bias ? db.tensor.raw_data() : nullptr;
  args.bias_dtype = c.bias_dtype;
  args.out = dout.tensor.raw_data();
  args.out_dtype = c.out_dtype;
  args.n = c.n;
  args.in_features = c.in;
  args.out_features = c.out;

  // Twice through CublasLtLinear (the second run reuses the cached plan), then the SIMT kernel.
  for (int run = 0; run < 3; ++run) {
    SCOPED_TRACE(run < 2 ? "CublasLtLinear run " + std::to_string(run) : "LaunchLinearSimt");
    ASSERT_EQ(cudaMemset(args.out, 0xff, dout.tensor.nbytes()), cudaSuccess);  // NaN poison
    if (run < 2) {
      ASSERT_TRUE(linear_->Run(args, nullptr).ok());
    } else {
      ASSERT_EQ(cuda::LaunchLinearSimt(args, nullptr), cudaSuccess);
    }
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    Tensor got = ToHost(dout.tensor);
    EXPECT_TRUE(GemmClose(got, ref, scale));
  }
  EXPECT_LE(linear_->num_plans(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaLinearTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

class CudaLinearMiscTest : public CudaTest {};

TEST(CudaLinearPlanTest, PathsByDtype) {
  // Needs no GPU: the routing table of the header.
  LinearArgs a;
  a.x_dtype = a.weight_dtype = a.out_dtype = DType::kBF16;
  a.in_features = 64;
  EXPECT_EQ(CublasLtLinear::PlannedPath(a), CublasLtLinear::Path::kCublasLt);
  a.out_dtype = DType::kF32;
  EXPECT_EQ(CublasLtLinear::PlannedPath(a), CublasLtLinear::Path::kCublasLt);
  a.x_dtype = DType::kF32;
  EXPECT_EQ(CublasLtLinear::PlannedPath(a), CublasLtLinear::Path::kSimt);
  a.weight_dtype = DType::kF32;
  EXPECT_EQ(CublasLtLinear::PlannedPath(a), CublasLtLinear::Path::kCublasLt);
  a.x_dtype = DType::kF16;
  EXPECT_EQ(CublasLtLinear::PlannedPath(a), CublasLtLinear::Path::kUnsupported);
}

TEST_F(CudaLinearMiscTest, UnsupportedDtypeIsUnimplemented) {
  auto linear = CublasLtLinear::Create();
  ASSERT_TRUE(linear.ok()) << linear.status();
  LinearArgs a;
  a.x_dtype = DType::kF16;
  a.n = a.in_features = a.out_features = 8;
  EXPECT_EQ((*linear)->Run(a, nullptr).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(cuda::LaunchLinearSimt(a, nullptr), cudaErrorInvalidValue);
}

TEST_F(CudaLinearMiscTest, CapturedIntoGraph) {
  // A decode step is captured once and replayed: Run must enqueue only (the plan exists from
  // the warm-up call), and the replay must see new input values.
  auto cpu = kernels::cpu::CpuBackend::Create({});
  ASSERT_TRUE(cpu.ok());
  auto linear = CublasLtLinear::Create();
  ASSERT_TRUE(linear.ok()) << linear.status();
  std::mt19937 rng(7);
  const int64_t n = 4, in = 512, out = 384;
  Tensor x = RandomTensor(DType::kBF16, {n, in}, rng);
  Tensor w = RandomTensor(DType::kBF16, {out, in}, rng);
  Tensor bias = RandomTensor(DType::kBF16, {out}, rng);
  DeviceTensor dx = ToDevice(x), dw = ToDevice(w), db = ToDevice(bias);
  DeviceTensor dout = DeviceEmpty(DType::kBF16, {n, out});
  LinearArgs a{dx.tensor.raw_data(),
               DType::kBF16,
               dw.tensor.raw_data(),
               DType::kBF16,
               db.tensor.raw_data(),
               DType::kBF16,
               dout.tensor.raw_data(),
               DType::kBF16,
               n,
               in,
               out};
  auto stream = cuda::CudaStream::Create();
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE((*linear)->Run(a, stream->get()).ok());  // warm-up: builds the plan
  ASSERT_EQ(cudaStreamSynchronize(stream->get()), cudaSuccess);

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream->get(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const absl::Status captured = (*linear)->Run(a, stream->get());
  ASSERT_EQ(cudaStreamEndCapture(stream->get(), &graph), cudaSuccess);
  ASSERT_TRUE(captured.ok()) << captured;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  Tensor x2 = RandomTensor(DType::kBF16, {n, in}, rng);
  ASSERT_EQ(cudaMemcpy(dx.tensor.raw_data(), x2.raw_data(), x2.nbytes(), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemset(a.out, 0xff, dout.tensor.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream->get()), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream->get()), cudaSuccess);
  Tensor ref = *Tensor::Empty(DType::kF32, {n, out});
  Tensor scale = *Tensor::Empty(DType::kF32, {n, out});
  ASSERT_TRUE((*cpu)->Linear(x2, w, bias, ref).ok());
  ASSERT_TRUE((*cpu)->Linear(AbsTensor(x2), AbsTensor(w), AbsTensor(bias), scale).ok());
  EXPECT_TRUE(GemmClose(ToHost(dout.tensor), ref, scale));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace expertmesh::testing
