// fp8 e4m3 block-quantized weights on the GPU (kernels/cuda/gemm/fp8_gemm.h) against the CPU
// backend's fp8 kernels on the same inputs: every path of LaunchFp8Gemm (forced and automatic)
// for the dense linear and the grouped expert GEMM, with weights uploaded by CudaBackend::
// PrepareWeight (bytes as they are, scale grid trimmed) from slices whose row and column
// offsets cut scale blocks, partial edge blocks (576 rows), blocks of other shapes, a bias,
// f32 activations, and experts with uneven, zero and absent rows. Then the backend's own
// Linear / MoeGroupedLinear, in and out of a CUDA graph, and its weight memory.
//
// The CPU reference runs on the activations widened to f32 (WidenToF32 in gemm_test_util.h says
// why). Tolerances (s = sum_k |x_k w_k|, the CPU result on |x| and |W|; see gemm_test_util.h):
//  - kGemv, kSimt: each product is x * (q * s) with q * s rounded once, as the CPU's
//    dequantized reference, so only the summation order differs: GemmClose's bound
//    1e-4 |r| + 2e-5 s (+ 1 bf16 ulp for a bf16 output).
//  - kMmaW8A16: the weight tile is dequantized to bf16 (|error| <= 2^-9 |w|), so 2^-9 s more.
//  - kW8A8 (against the same W8A16 reference): each activation is rounded to e4m3 within its
//    128-wide block, |error| <= 2^-4 |x| (3 mantissa bits) plus 2^-10 amax / 448 below e4m3's
//    normal range, so elementwise |got - r| <= 2^-4 s + 2^-10 (amax / 448) sum_k |w_k| +
//    GemmClose's bound (we use 0.07 s: amax <= 1 here); and overall ||got - r|| / ||r|| <= 0.05
//    (rounding to 3 mantissa bits has a relative rms error near 0.024 on these inputs).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/backend/fp8_weight_prep.h"
#include "kernels/cuda/gemm/fp8_gemm.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gemm/gemm_test_util.h"

namespace expertmesh::testing {
namespace {

using cuda::Fp8GemmArgs;
using cuda::Fp8GemmPath;

constexpr double kBf16WeightRounding = 1.0 / 512;  // 2^-9
constexpr double kW8A8ElementBound = 0.07;
constexpr double kW8A8RelativeNorm = 0.05;

struct Fp8Layout {
  int64_t block_rows = 128, block_cols = 128;
  int64_t row_offset = 0, col_offset = 0;  // where the weight starts in its checkpoint's grid
};

// Random e4m3 bytes (never NaN: 0x7f / 0xff), every exponent, subnormals included.
uint8_t RandomE4m3(std::mt19937& rng) {
  for (;;) {
    const uint8_t b = static_cast<uint8_t>(rng() & 0xffu);
    if ((b & 0x7fu) != 0x7fu) return b;
  }
}

// An fp8 weight [rows, cols] cut from a larger checkpoint tensor at (row_offset, col_offset),
// with the whole tensor's scale grid attached, as the weight loader hands out slices (columns
// copied, rows a view). Scales in [0.5, 2) / 448, so weights stay within about [-2, 2].
Tensor RandomFp8Weight(int64_t rows, int64_t cols, const Fp8Layout& l, std::mt19937& rng) {
  const int64_t full_rows = l.row_offset + rows, full_cols = l.col_offset + cols;
  Tensor full = *Tensor::Empty(DType::kF8E4M3, {full_rows, full_cols});
  for (int64_t i = 0; i < full.numel(); ++i) full.data<uint8_t>()[i] = RandomE4m3(rng);
  const int64_t grid_rows = (full_rows + l.block_rows - 1) / l.block_rows;
  const int64_t grid_cols = (full_cols + l.block_cols - 1) / l.block_cols;
  auto grid = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {grid_rows, grid_cols}));
  std::uniform_real_distribution<float> dist(0.5f / 448, 2.0f / 448);
  for (int64_t i = 0; i < grid->numel(); ++i) grid->data<float>()[i] = dist(rng);
  Tensor cut = *Tensor::Empty(DType::kF8E4M3, {full_rows, cols});
  for (int64_t r = 0; r < full_rows; ++r) {
    std::copy_n(full.data<uint8_t>() + r * full_cols + l.col_offset, cols,
                cut.data<uint8_t>() + r * cols);
  }
  Tensor scaled = *cut.WithBlockScales({.scales = grid,
                                        .block_rows = l.block_rows,
                                        .block_cols = l.block_cols,
                                        .row_offset = 0,
                                        .col_offset = l.col_offset});
  return *scaled.Slice(l.row_offset, full_rows);
}

// |W| with the same scales (e4m3's sign is its top bit; scales are positive).
Tensor AbsFp8(const Tensor& w) {
  if (!w.defined()) return w;
  Tensor a = *Tensor::Empty(DType::kF8E4M3, w.shape());
  for (int64_t i = 0; i < w.numel(); ++i) a.data<uint8_t>()[i] = w.data<uint8_t>()[i] & 0x7fu;
  return *a.WithBlockScales(*w.block_scales());
}

double RelativeNorm(const Tensor& got, const Tensor& ref) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = ValueAt(got, i) - ref.data<float>()[i];
    num += d * d;
    den += static_cast<double>(ref.data<float>()[i]) * ref.data<float>()[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

const char* PathName(Fp8GemmPath p) {
  switch (p) {
    case Fp8GemmPath::kAuto:
      return "auto";
    case Fp8GemmPath::kGemv:
      return "gemv";
    case Fp8GemmPath::kMmaW8A16:
      return "mma_w8a16";
    case Fp8GemmPath::kW8A8:
      return "w8a8";
    case Fp8GemmPath::kSimt:
      return "simt";
  }
  return "?";
}

// What RunEveryPath (gemm_test_util.h) runs: LaunchFp8Gemm and its paths.
struct Fp8Launcher {
  using Args = Fp8GemmArgs;
  using Path = Fp8GemmPath;
  static constexpr Path kPaths[] = {Path::kAuto, Path::kGemv, Path::kMmaW8A16, Path::kW8A8,
                                    Path::kSimt};
  static const char* Name(Path p) { return PathName(p); }
  static Path Planned(const Args& a) { return cuda::PlannedFp8GemmPath(a); }
  static cudaError_t Launch(const Args& a) { return cuda::LaunchFp8Gemm(a, nullptr); }
};

// Checks one run of `path` (resolved: what actually ran) against the reference.
::testing::AssertionResult Fp8Close(Fp8GemmPath path, const Tensor& got, const Tensor& ref,
                                    const Tensor& scale) {
  switch (path) {
    case Fp8GemmPath::kMmaW8A16:
      return GemmClose(got, ref, scale, {}, kBf16WeightRounding);
    case Fp8GemmPath::kW8A8: {
      ::testing::AssertionResult r = GemmClose(got, ref, scale, {}, kW8A8ElementBound);
      if (!r) return r;
      const double rel = RelativeNorm(got, ref);
      if (rel > kW8A8RelativeNorm) {
        return ::testing::AssertionFailure()
               << "relative norm error " << rel << " > " << kW8A8RelativeNorm;
      }
      return ::testing::AssertionSuccess() << "relative norm error " << rel;
    }
    default:
      return GemmClose(got, ref, scale);
  }
}

// The backends and the W8A8 path's workspace.
class Fp8Fixture : public QuantGemmFixture {
 protected:
  void Init() {
    QuantGemmFixture::Init();
    if (::testing::Test::HasFatalFailure()) return;
    workspace_ = std::move(*cuda::DeviceBuffer::Allocate(size_t{64} << 20));
  }
  // Runs every path on `args` (x, out, weights set), comparing with ref/scale.
  void RunAllPaths(Fp8GemmArgs args, const Tensor& out_device, const Tensor& ref,
                   const Tensor& scale, uint32_t* flags) {
    RunEveryPath<Fp8Launcher>(
        args, out_device, flags,
        [&](Fp8GemmArgs& a, Fp8GemmPath path) {
          a.workspace = workspace_.get();
          a.workspace_bytes = workspace_.bytes();
          // kAuto with W8A8 allowed too, so the automatic choice of it is exercised.
          a.w8a8_min_rows = path == Fp8GemmPath::kAuto ? 64 : 0;
          ASSERT_LE(cuda::Fp8GemmWorkspaceBytes(a), workspace_.bytes());
        },
        [&](Fp8GemmPath ran, const Tensor& got) { return Fp8Close(ran, got, ref, scale); });
  }

  cuda::DeviceBuffer workspace_;
};

// ---- dense ----

struct LinearCase {
  std::string name;
  int64_t tokens, out, in;
  Fp8Layout layout;
  DType x = DType::kBF16, o = DType::kBF16;
  bool bias = false;
};

std::vector<LinearCase> LinearCases() {
  const DType f = DType::kF32;
  return {
      {"decode1", 1, 256, 512, {}},
      {"decode8_partial_rows_576", 8, 576, 512, {}},
      {"decode3_row_col_offsets", 3, 300, 384, {128, 128, 96, 64}},
      {"decode5_odd_col_offset", 5, 200, 320, {128, 128, 40, 77}},
      {"decode4_bias_f32_out", 4, 136, 256, {}, DType::kBF16, f, true},
      {"decode2_exact_mode", 2, 192, 256, {128, 128, 5, 64}, f, f},
      {"small_blocks_16x32", 6, 100, 160, {16, 32, 3, 9}},
      {"blocks_16x8_simt_only", 6, 64, 96, {16, 8, 0, 0}},
      {"in_not_multiple_of_16", 4, 72, 200, {}},
      {"prefill64", 64, 576, 512, {128, 128, 64, 128}},
      {"prefill300_offsets", 300, 320, 640, {128, 128, 96, 64}},
      {"prefill257_f32_out", 257, 256, 1024, {}, DType::kBF16, f},
      {"prefill128_exact_mode", 128, 128, 256, {}, f, f},
      {"prefill96_bias", 96, 136, 256, {}, DType::kBF16, DType::kBF16, true},
  };
}

using CudaFp8LinearTest = CudaFixtureTest<CudaTestWithParam<LinearCase>, Fp8Fixture>;

TEST_P(CudaFp8LinearTest, MatchesCpuBackend) {
  const LinearCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.tokens * 131 + c.out * 7 + c.in));
  Tensor x = RandomTensor(c.x, {c.tokens, c.in}, rng);
  Tensor w = RandomFp8Weight(c.out, c.in, c.layout, rng);
  Tensor bias = c.bias ? RandomTensor(DType::kBF16, {c.out}, rng) : Tensor();
  Tensor ref = *Tensor::Empty(DType::kF32, {c.tokens, c.out});
  Tensor scale = *Tensor::Empty(DType::kF32, {c.tokens, c.out});
  ASSERT_TRUE(cpu_->Linear(WidenToF32(x), w, bias, ref).ok());
  ASSERT_TRUE(cpu_->Linear(AbsTensor(x), AbsFp8(w), AbsTensor(bias), scale).ok());

  auto dw = gpu_->PrepareWeight(w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  DeviceTensor dx = ToDevice(x);
  DeviceTensor dbias = c.bias ? ToDevice(bias) : DeviceTensor{};
  DeviceTensor dout = DeviceEmpty(c.o, {c.tokens, c.out});

  Fp8GemmArgs a =
      ActivationArgs<Fp8GemmArgs>(dx.tensor, c.x, dout.tensor, c.o, c.tokens, c.in, c.out);
  a.weight = dw->raw_data();
  a.weight_scales = cuda::Fp8ScalesOf(*dw);
  cuda::SummarizeFp8Scales({&*dw, 1}, a);
  if (c.bias) {
    a.bias = dbias.tensor.raw_data();
    a.bias_dtype = DType::kBF16;
  }
  RunAllPaths(a, dout.tensor, ref, scale, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaFp8LinearTest, ::testing::ValuesIn(LinearCases()),
                         [](const auto& info) { return info.param.name; });

// ---- grouped ----

struct GroupedCase {
  std::string name;
  int64_t tokens;
  int experts, top_k;
  int64_t out, in;
  bool half_idle = false;  // odd experts get no rows and no weight (other ranks)
  DType x = DType::kBF16, o = DType::kBF16;
  int64_t col_step = 0;  // expert e's column offset: (e * col_step) % 128 (0: W8A8 can run)
};

std::vector<GroupedCase> GroupedCases() {
  const DType f = DType::kF32;
  return {
      {"decode1_top8", 1, 64, 8, 256, 512},
      {"decode7_uneven_col_offsets", 7, 16, 4, 576, 256, false, DType::kBF16, DType::kBF16, 48},
      {"decode16_idle_experts", 16, 32, 4, 320, 384, true},
      {"decode8_exact_mode", 8, 16, 2, 192, 256, false, f, f},
      {"prefill128_top8", 128, 16, 8, 576, 512},
      {"prefill300_idle_f32_out", 300, 32, 4, 256, 384, true, DType::kBF16, f},
      {"prefill200_col_offsets", 200, 8, 2, 320, 256, false, DType::kBF16, DType::kBF16, 80},
      {"prefill64_exact_mode", 64, 8, 2, 136, 256, false, f, f},
  };
}

using CudaFp8GroupedTest = CudaFixtureTest<CudaTestWithParam<GroupedCase>, Fp8Fixture>;

TEST_P(CudaFp8GroupedTest, MatchesCpuBackend) {
  const GroupedCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.tokens * 17 + c.experts * 3 + c.in));
  const std::vector<int32_t> offsets =
      UnevenExpertOffsets(c.tokens, c.experts, c.top_k, c.half_idle, rng);
  const int64_t m = offsets.back();

  Tensor x = RandomTensor(c.x, {m, c.in}, rng);
  Tensor off = OffsetsTensor(offsets);
  std::vector<Tensor> weights(c.experts), abs_weights(c.experts), device_weights(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (c.half_idle && e % 2 == 1) continue;
    // Each expert a slice at its own offsets, as expert-parallel ranks cut fused tensors.
    const Fp8Layout layout{128, 128, (e * 40) % 128, (e * c.col_step) % 128};
    weights[e] = RandomFp8Weight(c.out, c.in, layout, rng);
    abs_weights[e] = AbsFp8(weights[e]);
    auto dw = gpu_->PrepareWeight(weights[e]);
    ASSERT_TRUE(dw.ok()) << dw.status();
    device_weights[e] = *dw;
  }
  Tensor ref = *Tensor::Empty(DType::kF32, {m, c.out});
  Tensor scale = *Tensor::Empty(DType::kF32, {m, c.out});
  ASSERT_TRUE(cpu_->MoeGroupedLinear(WidenToF32(x), off, weights, ref).ok());
  ASSERT_TRUE(cpu_->MoeGroupedLinear(AbsTensor(x), off, abs_weights, scale).ok());

  std::vector<const void*> ptrs(c.experts, nullptr);
  std::vector<cuda::Fp8Scales> scales(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (!device_weights[e].defined()) continue;
    ptrs[e] = device_weights[e].raw_data();
    scales[e] = cuda::Fp8ScalesOf(device_weights[e]);
  }
  cuda::DeviceBuffer dptrs, dscales;
  ASSERT_NO_FATAL_FAILURE(UploadArray(ptrs, &dptrs));
  ASSERT_NO_FATAL_FAILURE(UploadArray(scales, &dscales));
  DeviceTensor dx = ToDevice(x), doff = ToDevice(off);
  DeviceTensor dout = DeviceEmpty(c.o, {m, c.out});
  auto flags = *cuda::DeviceBuffer::Allocate(sizeof(uint32_t));

  Fp8GemmArgs a = ActivationArgs<Fp8GemmArgs>(dx.tensor, c.x, dout.tensor, c.o, m, c.in, c.out);
  a.expert_offsets = doff.tensor.data<int32_t>();
  a.weights = dptrs.as<const void*>();
  a.expert_scales = dscales.as<const cuda::Fp8Scales>();
  cuda::SummarizeFp8Scales(device_weights, a);
  a.num_experts = c.experts;
  a.error_flags = flags.as<uint32_t>();
  RunAllPaths(a, dout.tensor, ref, scale, flags.as<uint32_t>());
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaFp8GroupedTest, ::testing::ValuesIn(GroupedCases()),
                         [](const auto& info) { return info.param.name; });

// ---- host-side planning and upload layout (no GPU needed) ----

// The trimmed grid holds exactly the scales the weight uses, at the same (row, col) -> scale map.
TEST(Fp8WeightPrepTest, TrimmedGridMapsEveryElementToItsScale) {
  std::mt19937 rng(9);
  for (const Fp8Layout& l : {Fp8Layout{128, 128, 200, 77}, Fp8Layout{16, 32, 3, 9},
                             Fp8Layout{128, 128, 0, 0}, Fp8Layout{128, 128, 128, 256}}) {
    const Tensor w = RandomFp8Weight(300, 200, l, rng);
    auto t = cuda::TrimBlockScales(w);
    ASSERT_TRUE(t.ok()) << t.status();
    const kernels::BlockScales& full = *w.block_scales();
    EXPECT_LT(t->layout.row_offset, l.block_rows);
    EXPECT_LT(t->layout.col_offset, l.block_cols);
    const int64_t ld = full.scales->dim(1), tld = t->grid.dim(1);
    for (int64_t r = 0; r < w.dim(0); r += 7) {
      for (int64_t c = 0; c < w.dim(1); c += 5) {
        const float want = full.scales->data<float>()[((r + full.row_offset) / l.block_rows) * ld +
                                                      (c + full.col_offset) / l.block_cols];
        const float got = t->grid.data<float>()[((r + t->layout.row_offset) / l.block_rows) * tld +
                                                (c + t->layout.col_offset) / l.block_cols];
        ASSERT_EQ(got, want) << r << "," << c;
      }
    }
  }
  EXPECT_FALSE(cuda::TrimBlockScales(RandomTensor(DType::kBF16, {4, 4}, rng)).ok());
}

TEST(Fp8PlanTest, PathsFollowShapesAndOptions) {
  alignas(16) static char buf[16];
  Fp8GemmArgs a;
  a.x = buf;
  a.out = buf;
  a.weight = buf;
  a.k = 512;
  a.n = 256;
  a.m = 8;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kGemv);
  a.m = 9;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kMmaW8A16);
  a.w8a8_min_rows = 64;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kMmaW8A16);
  a.m = 64;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kW8A8);
  EXPECT_EQ(cuda::Fp8GemmWorkspaceBytes(a), size_t{64 * 512} + 64 * 4 * sizeof(float));
  a.blocks_128_aligned = false;  // a column offset inside a block: W8A16 instead
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kMmaW8A16);
  EXPECT_EQ(cuda::Fp8GemmWorkspaceBytes(a), 0u);
  a.x_dtype = DType::kF32;  // exact mode, many rows
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kSimt);
  a.m = 4;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kGemv);
  a.min_block_cols = 8;  // blocks narrower than a 16-byte chunk
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kSimt);
  a.path = Fp8GemmPath::kGemv;
  EXPECT_EQ(cuda::PlannedFp8GemmPath(a), Fp8GemmPath::kAuto);  // forced, cannot run
  EXPECT_EQ(cuda::LaunchFp8Gemm(a, nullptr), cudaErrorInvalidValue);
}

// ---- through the backend ----

using CudaFp8BackendTest = CudaFixtureTest<CudaTest, Fp8Fixture>;

// The weight arena holds one byte per weight plus the trimmed grid: a row slice of a tensor
// keeps only its own scale rows, nothing is widened.
TEST_F(CudaFp8BackendTest, WeightsStayOneBytePerElement) {
  std::mt19937 rng(3);
  const Tensor w = RandomFp8Weight(576, 1024, {128, 128, 200, 0}, rng);
  const size_t before = gpu_->memory_stats().weight_bytes;
  auto dw = gpu_->PrepareWeight(w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  EXPECT_EQ(dw->dtype(), DType::kF8E4M3);
  ASSERT_NE(dw->block_scales(), nullptr);
  // Rows 200..775 of the checkpoint touch scale rows 1..6; all 8 column blocks.
  EXPECT_EQ(dw->block_scales()->scales->dim(0), 6);
  EXPECT_EQ(dw->block_scales()->scales->dim(1), 8);
  EXPECT_EQ(dw->block_scales()->row_offset, 200 - 128);
  const size_t grid_bytes = 6 * 8 * sizeof(float);
  EXPECT_EQ(gpu_->memory_stats().weight_bytes - before,
            size_t{576 * 1024} + (grid_bytes + 255) / 256 * 256);
}

// Backend::Linear and MoeGroupedLinear with fp8 weights, eagerly and replayed from a graph.
TEST_F(CudaFp8BackendTest, OpsMatchCpuInAndOutOfGraphs) {
  std::mt19937 rng(5);
  const int64_t tokens = 4, in = 384, out = 576;
  const int experts = 8, top_k = 2;
  Tensor x = RandomTensor(DType::kBF16, {tokens, in}, rng);
  Tensor w = RandomFp8Weight(out, in, {128, 128, 64, 128}, rng);
  Tensor off = OffsetsTensor({0, 1, 1, 3, 3, 3, 6, 7, 8});
  Tensor xg = RandomTensor(DType::kBF16, {tokens * top_k, in}, rng);
  std::vector<Tensor> ew(experts), dew(experts), abs_ew(experts);
  for (int e = 0; e < experts; ++e) {
    ew[e] = RandomFp8Weight(out, in, {128, 128, 32 * e, 0}, rng);
    abs_ew[e] = AbsFp8(ew[e]);
    dew[e] = *gpu_->PrepareWeight(ew[e]);
  }
  Tensor ref = *Tensor::Empty(DType::kF32, {tokens, out});
  Tensor scale = *Tensor::Empty(DType::kF32, {tokens, out});
  ASSERT_TRUE(cpu_->Linear(WidenToF32(x), w, Tensor(), ref).ok());
  ASSERT_TRUE(cpu_->Linear(AbsTensor(x), AbsFp8(w), Tensor(), scale).ok());
  Tensor gref = *Tensor::Empty(DType::kF32, {tokens * top_k, out});
  Tensor gscale = *Tensor::Empty(DType::kF32, {tokens * top_k, out});
  ASSERT_TRUE(cpu_->MoeGroupedLinear(WidenToF32(xg), off, ew, gref).ok());
  ASSERT_TRUE(cpu_->MoeGroupedLinear(AbsTensor(xg), off, abs_ew, gscale).ok());

  ExpectOpsMatchInAndOutOfGraphs(*gpu_, x, w, xg, off, dew, ref, scale, gref, gscale);
}

}  // namespace
}  // namespace expertmesh::testing
