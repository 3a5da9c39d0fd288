// The grouped expert GEMM on the GPU against the CPU backend's MoeGroupedLinear on the same
// inputs: every kernel path (tensor cores with both tile shapes, the SIMT fallback, the
// automatic choice), routings with idle experts, all rows on one expert, experts whose weight
// is absent, 1..4096 tokens over 128 and 256 experts with top-8; tolerances in gemm_test_util.h.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/gemm/moe_grouped_gemm.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gemm/gemm_test_util.h"

namespace expertmesh::testing {
namespace {

using cuda::MoeGemmPath;
using cuda::MoeGroupedGemmArgs;

enum class Routing {
  kRandom,    // top_k distinct random experts per token
  kAllToOne,  // every row to expert 0 (top_k must be 1)
  kHalfIdle,  // only even experts get rows; odd ones have no weight (other ranks)
};

struct MoeCase {
  std::string name;
  int64_t tokens;
  int experts, top_k;
  int64_t in, out;
  Routing routing;
  DType x, w, o;
};

std::vector<MoeCase> Cases() {
  const DType b = DType::kBF16, f = DType::kF32;
  std::vector<MoeCase> cases = {
      {"one_row", 1, 8, 1, 136, 72, Routing::kRandom, b, b, b},
      {"odd_sizes", 37, 16, 4, 136, 72, Routing::kRandom, b, b, b},
      {"odd_sizes_f32_out", 37, 16, 4, 136, 72, Routing::kRandom, b, b, f},
      {"in_not_multiple_of_8", 21, 8, 2, 75, 37, Routing::kRandom, b, b, b},
      {"all_rows_to_one_expert", 300, 16, 1, 264, 200, Routing::kAllToOne, b, b, b},
      {"idle_experts_without_weights", 64, 32, 4, 256, 136, Routing::kHalfIdle, b, b, b},
      {"exact_mode_f32_x", 40, 16, 4, 264, 136, Routing::kRandom, f, b, f},
      {"f32_weights", 40, 16, 4, 136, 72, Routing::kRandom, b, f, b},
      {"all_f32", 40, 16, 4, 136, 72, Routing::kHalfIdle, f, f, f},
      {"many_rows_per_expert", 2048, 8, 2, 512, 384, Routing::kRandom, b, b, b},
      {"qwen3_gate_up_decode", 64, 128, 8, 2048, 1536, Routing::kRandom, b, b, b},
      {"qwen3_down_decode", 64, 128, 8, 768, 2048, Routing::kRandom, b, b, b},
  };
  for (int experts : {128, 256}) {
    for (int64_t tokens : {1, 7, 64, 513, 4096}) {
      cases.push_back({"e" + std::to_string(experts) + "_top8_t" + std::to_string(tokens), tokens,
                       experts, 8, 256, 136, Routing::kRandom, b, b, b});
    }
  }
  return cases;
}

// Expert ids [tokens * top_k], then the rows grouped by expert as MoePermute would lay them out
// (only the counts matter to the GEMM).
std::vector<int32_t> RowCounts(const MoeCase& c, std::mt19937& rng) {
  std::vector<int32_t> candidates;
  for (int e = 0; e < c.experts; ++e) {
    if (c.routing != Routing::kHalfIdle || e % 2 == 0) candidates.push_back(e);
  }
  std::vector<int32_t> counts(c.experts, 0);
  for (int64_t t = 0; t < c.tokens; ++t) {
    if (c.routing == Routing::kAllToOne) {
      counts[0] += c.top_k;
      continue;
    }
    std::shuffle(candidates.begin(), candidates.end(), rng);
    for (int j = 0; j < c.top_k; ++j) ++counts[candidates[j]];
  }
  return counts;
}

// The weights of one layer on the device: one buffer, one pointer per expert (null where the
// host tensor is undefined).
struct DeviceExperts {
  cuda::DeviceBuffer storage;
  cuda::DeviceBuffer pointers;
};

DeviceExperts UploadExperts(const std::vector<Tensor>& weights) {
  DeviceExperts d;
  size_t bytes = 0;
  for (const Tensor& w : weights) bytes += w.defined() ? (w.nbytes() + 255) / 256 * 256 : 0;
  d.storage = std::move(*cuda::DeviceBuffer::Allocate(std::max<size_t>(bytes, 256)));
  std::vector<const void*> ptrs(weights.size(), nullptr);
  size_t offset = 0;
  for (size_t e = 0; e < weights.size(); ++e) {
    if (!weights[e].defined()) continue;
    char* dst = d.storage.as<char>() + offset;
    EXPECT_EQ(cudaMemcpy(dst, weights[e].raw_data(), weights[e].nbytes(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ptrs[e] = dst;
    offset += (weights[e].nbytes() + 255) / 256 * 256;
  }
  d.pointers = std::move(*cuda::DeviceBuffer::Allocate(ptrs.size() * sizeof(void*)));
  EXPECT_EQ(cudaMemcpy(d.pointers.get(), ptrs.data(), ptrs.size() * sizeof(void*),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  return d;
}

uint32_t ReadFlags(const cuda::DeviceBuffer& flags) {
  uint32_t v = 0;
  EXPECT_EQ(cudaMemcpy(&v, flags.get(), sizeof(v), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

class CudaMoeGroupedGemmTest : public CudaTestWithParam<MoeCase> {
 protected:
  void SetUp() override {
    CudaTestWithParam<MoeCase>::SetUp();
    if (IsSkipped()) return;
    auto cpu = kernels::cpu::CpuBackend::Create({});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
  }
  std::unique_ptr<kernels::cpu::CpuBackend> cpu_;
};

TEST_P(CudaMoeGroupedGemmTest, MatchesCpuBackend) {
  const MoeCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.tokens * 17 + c.experts * 3 + c.in));
  const std::vector<int32_t> counts = RowCounts(c, rng);
  std::vector<int32_t> offsets(c.experts + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  const int64_t m = offsets.back();
  ASSERT_EQ(m, c.tokens * c.top_k);

  Tensor x = RandomTensor(c.x, {m, c.in}, rng);
  Tensor off = *Tensor::Empty(DType::kI32, {c.experts + 1});
  std::copy(offsets.begin(), offsets.end(), off.data<int32_t>());
  std::vector<Tensor> weights(c.experts), abs_weights(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (c.routing == Routing::kHalfIdle && counts[e] == 0) continue;  // absent, as on other ranks
    weights[e] = RandomTensor(c.w, {c.out, c.in}, rng);
    abs_weights[e] = AbsTensor(weights[e]);
  }
  Tensor ref = *Tensor::Empty(DType::kF32, {m, c.out});
  Tensor scale = *Tensor::Empty(DType::kF32, {m, c.out});
  ASSERT_TRUE(cpu_->MoeGroupedLinear(x, off, weights, ref).ok());
  ASSERT_TRUE(cpu_->MoeGroupedLinear(AbsTensor(x), off, abs_weights, scale).ok());

  DeviceTensor dx = ToDevice(x), doff = ToDevice(off);
  DeviceExperts dw = UploadExperts(weights);
  DeviceTensor dout = DeviceEmpty(c.o, {m, c.out});
  auto flags = cuda::DeviceBuffer::Allocate(sizeof(uint32_t));
  ASSERT_TRUE(flags.ok());

  MoeGroupedGemmArgs args;
  args.x = dx.tensor.raw_data();
  args.x_dtype = c.x;
  args.expert_offsets = doff.tensor.data<int32_t>();
  args.weights = dw.pointers.as<const void*>();
  args.weight_dtype = c.w;
  args.out = dout.tensor.raw_data();
  args.out_dtype = c.o;
  args.m = m;
  args.in_features = c.in;
  args.out_features = c.out;
  args.num_experts = c.experts;
  args.error_flags = flags->as<uint32_t>();

  const bool tensor_cores = c.x == DType::kBF16 && c.w == DType::kBF16 && c.in % 8 == 0;
  for (MoeGemmPath path : {MoeGemmPath::kAuto, MoeGemmPath::kTensorCoreLarge,
                           MoeGemmPath::kTensorCoreSmall, MoeGemmPath::kSimt}) {
    SCOPED_TRACE("path " + std::to_string(static_cast<int>(path)));
    args.path = path;
    const bool forced_tc =
        path == MoeGemmPath::kTensorCoreLarge || path == MoeGemmPath::kTensorCoreSmall;
    if (forced_tc && !tensor_cores) {
      EXPECT_EQ(cuda::LaunchMoeGroupedGemm(args, nullptr), cudaErrorInvalidValue);
      continue;
    }
    ASSERT_EQ(cudaMemset(args.out, 0xff, dout.tensor.nbytes()), cudaSuccess);  // NaN poison
    ASSERT_EQ(cudaMemset(flags->get(), 0, sizeof(uint32_t)), cudaSuccess);
    ASSERT_EQ(cuda::LaunchMoeGroupedGemm(args, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(ReadFlags(*flags), 0u);
    EXPECT_TRUE(GemmClose(ToHost(dout.tensor), ref, scale));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaMoeGroupedGemmTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

// A small layer set up by hand for the error and graph tests: 4 experts, rows 3/0/5/2.
class CudaMoeGroupedGemmMiscTest : public CudaTest {
 protected:
  static constexpr int kExperts = 4;
  static constexpr int64_t kIn = 64, kOut = 48;

  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    cpu_ = std::move(*kernels::cpu::CpuBackend::Create({}));
    std::mt19937 rng(11);
    offsets_ = {0, 3, 3, 8, 10};
    m_ = offsets_.back();
    x_ = RandomTensor(DType::kBF16, {m_, kIn}, rng);
    weights_.resize(kExperts);
    for (int e = 0; e < kExperts; ++e) weights_[e] = RandomTensor(DType::kBF16, {kOut, kIn}, rng);
    dx_ = ToDevice(x_);
    off_ = *Tensor::Empty(DType::kI32, {kExperts + 1});
    std::copy(offsets_.begin(), offsets_.end(), off_.data<int32_t>());
    doff_ = ToDevice(off_);
    dout_ = DeviceEmpty(DType::kF32, {m_, kOut});
    flags_ = std::move(*cuda::DeviceBuffer::Allocate(sizeof(uint32_t)));
    ASSERT_EQ(cudaMemset(flags_.get(), 0, sizeof(uint32_t)), cudaSuccess);
  }

  MoeGroupedGemmArgs Args(const DeviceExperts& w) {
    MoeGroupedGemmArgs a;
    a.x = dx_.tensor.raw_data();
    a.x_dtype = DType::kBF16;
    a.expert_offsets = doff_.tensor.data<int32_t>();
    a.weights = w.pointers.as<const void*>();
    a.weight_dtype = DType::kBF16;
    a.out = dout_.tensor.raw_data();
    a.out_dtype = DType::kF32;
    a.m = m_;
    a.in_features = kIn;
    a.out_features = kOut;
    a.num_experts = kExperts;
    a.error_flags = flags_.as<uint32_t>();
    return a;
  }

  void Reference(const std::vector<Tensor>& weights, Tensor& ref, Tensor& scale) {
    std::vector<Tensor> abs_w;
    for (const Tensor& w : weights) abs_w.push_back(AbsTensor(w));
    ref = *Tensor::Empty(DType::kF32, {m_, kOut});
    scale = *Tensor::Empty(DType::kF32, {m_, kOut});
    ASSERT_TRUE(cpu_->MoeGroupedLinear(x_, off_, weights, ref).ok());
    ASSERT_TRUE(cpu_->MoeGroupedLinear(AbsTensor(x_), off_, abs_w, scale).ok());
  }

  std::unique_ptr<kernels::cpu::CpuBackend> cpu_;
  std::vector<int32_t> offsets_;
  int64_t m_ = 0;
  Tensor x_, off_;
  std::vector<Tensor> weights_;
  DeviceTensor dx_, doff_, dout_;
  cuda::DeviceBuffer flags_;
};

TEST_F(CudaMoeGroupedGemmMiscTest, RowsOfAnExpertWithoutWeightSetTheFlag) {
  std::vector<Tensor> weights = weights_;
  weights[2] = Tensor();  // expert 2 has 5 rows but no weight
  DeviceExperts dw = UploadExperts(weights);
  for (MoeGemmPath path : {MoeGemmPath::kTensorCoreLarge, MoeGemmPath::kSimt}) {
    ASSERT_EQ(cudaMemset(flags_.get(), 0, sizeof(uint32_t)), cudaSuccess);
    MoeGroupedGemmArgs a = Args(dw);
    a.path = path;
    ASSERT_EQ(cuda::LaunchMoeGroupedGemm(a, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(ReadFlags(flags_), uint32_t{cuda::kErrorMissingExpertWeight});
    // The other experts' rows are still right.
    std::vector<Tensor> present = weights_;
    Tensor ref, scale;
    Reference(present, ref, scale);
    std::vector<bool> rows(m_, true);
    for (int r = offsets_[2]; r < offsets_[3]; ++r) rows[r] = false;
    EXPECT_TRUE(GemmClose(ToHost(dout_.tensor), ref, scale, rows));
  }
}

TEST_F(CudaMoeGroupedGemmMiscTest, BadOffsetsSetTheFlag) {
  DeviceExperts dw = UploadExperts(weights_);
  for (std::vector<int32_t> bad : {std::vector<int32_t>{0, 5, 3, 8, 10},  // decreasing
                                   std::vector<int32_t>{1, 3, 3, 8, 10},  // not from 0
                                   std::vector<int32_t>{0, 3, 3, 8, 9},   // not to m
                                   std::vector<int32_t>{0, 3, 3, 8, 1000}}) {
    ASSERT_EQ(
        cudaMemcpy(doff_.tensor.raw_data(), bad.data(), bad.size() * 4, cudaMemcpyHostToDevice),
        cudaSuccess);
    ASSERT_EQ(cudaMemset(flags_.get(), 0, sizeof(uint32_t)), cudaSuccess);
    ASSERT_EQ(cuda::LaunchMoeGroupedGemm(Args(dw), nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // and no fault: rows are clamped
    EXPECT_EQ(ReadFlags(flags_) & cuda::kErrorExpertOffsets, uint32_t{cuda::kErrorExpertOffsets});
  }
}

TEST_F(CudaMoeGroupedGemmMiscTest, UnsupportedArgumentsAreInvalidValue) {
  DeviceExperts dw = UploadExperts(weights_);
  MoeGroupedGemmArgs a = Args(dw);
  a.x_dtype = DType::kF16;
  EXPECT_EQ(cuda::LaunchMoeGroupedGemm(a, nullptr), cudaErrorInvalidValue);
  a = Args(dw);
  a.num_experts = cuda::kMoeGroupedGemmMaxExperts + 1;
  EXPECT_EQ(cuda::LaunchMoeGroupedGemm(a, nullptr), cudaErrorInvalidValue);
  a = Args(dw);
  a.weight_dtype = DType::kF32;
  a.path = MoeGemmPath::kTensorCoreSmall;
  EXPECT_EQ(cuda::LaunchMoeGroupedGemm(a, nullptr), cudaErrorInvalidValue);
}

TEST_F(CudaMoeGroupedGemmMiscTest, GraphReplaySeesNewOffsets) {
  // The host never reads the offsets, so a captured launch serves any routing of the same m.
  DeviceExperts dw = UploadExperts(weights_);
  auto stream = cuda::CudaStream::Create();
  ASSERT_TRUE(stream.ok());
  MoeGroupedGemmArgs a = Args(dw);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream->get(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const cudaError_t launched = cuda::LaunchMoeGroupedGemm(a, stream->get());
  ASSERT_EQ(cudaStreamEndCapture(stream->get(), &graph), cudaSuccess);
  ASSERT_EQ(launched, cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  offsets_ = {0, 0, 10, 10, 10};  // everything to expert 1 now
  std::copy(offsets_.begin(), offsets_.end(), off_.data<int32_t>());
  ASSERT_EQ(cudaMemcpy(doff_.tensor.raw_data(), offsets_.data(), offsets_.size() * 4,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemset(a.out, 0xff, dout_.tensor.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream->get()), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream->get()), cudaSuccess);
  EXPECT_EQ(ReadFlags(flags_), 0u);
  Tensor ref, scale;
  Reference(weights_, ref, scale);
  EXPECT_TRUE(GemmClose(ToHost(dout_.tensor), ref, scale));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
}  // namespace expertmesh::testing
