// 4-bit (kQ4) weights on the GPU (kernels/cuda/gemm/q4_gemm.h) against the CPU backend's q4
// kernels on the same inputs: every path of LaunchQ4Gemm (forced and automatic) for the dense
// linear and the grouped expert GEMM, with weights uploaded by CudaBackend::PrepareWeight
// (packed bytes as they are, scale and zero grids trimmed, the column order copied) over group
// sizes 32, 64 and 128, weight rows that are no multiple of any tile, k an odd multiple of 32
// (a last 32-wide unit), row and column offsets into the group grid (tp / ep slices),
// symmetric and asymmetric (zero points) weights, act-order column orders, a bias, f32
// activations, and experts with uneven, zero and absent rows. Then the backend's own Linear /
// MoeGroupedLinear, in and out of a CUDA graph, and its weight memory. The host-side planning,
// grid trimming and the test's own dequantized oracle (against the CPU backend, every case) run
// without a GPU; everything else skips visibly.
//
// The CPU reference runs on the activations widened to f32 (WidenToF32 in gemm_test_util.h says
// why), out f32.
//
// Tolerances (s = sum_k |x_k w_k| over the dequantized weights; see gemm_test_util.h):
//  - kGemv: each run of 16 values is summed as x * (q - zero) (exact products of small integers
//    and x, fp32 sums) and scaled once by its group scale; the CPU multiplies x by (q - zero) *
//    scale rounded once. Both are fp32 sums of the same products in other orders and roundings,
//    a few ulps of s apart: GemmClose's bound 1e-4 |r| + 2e-5 s (+ 1 bf16 ulp for a bf16 out).
//  - kSimt: x * ((q - zero) * scale), the CPU's own products, summed in another order: the same.
//  - kMma: the weight tile is dequantized to bf16 (|error| <= 2^-9 |w|), so 2^-9 s more.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/backend/cuda_backend_impl.h"
#include "kernels/cuda/backend/q4_weight_prep.h"
#include "kernels/cuda/gemm/q4_gemm.h"
#include "kernels/cuda/gemm/q4_index.h"
#include "kernels/q4_layout.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gemm/gemm_test_util.h"

namespace expertmesh::testing {
namespace {

using cuda::Q4GemmArgs;
using cuda::Q4GemmPath;

constexpr double kBf16WeightRounding = 1.0 / 512;  // 2^-9

struct Q4Layout {
  int64_t group = 128;
  int64_t row_offset = 0, col_offset = 0;  // where the weight starts in its checkpoint's grid
  bool zero_points = false;                // asymmetric (GPTQ sym=false)
  bool column_order = false;               // act-order (GPTQ desc_act)
  int64_t block_rows = 1;  // rows per scale (checkpoints have 1; the index checks also try more)
};

// A q4 weight [rows, cols] that starts at (row_offset, col_offset) of a checkpoint tensor's
// group grid: a row view (Slice) of a [row_offset + rows, cols] tensor whose grid also covers
// col_offset / group groups before its first column, as the weight loader hands out tp slices.
// Scales in [0.5, 2) / 8, so weights stay within about [-2, 2]; zero points 0..15.
Tensor RandomQ4Weight(int64_t rows, int64_t cols, const Q4Layout& l, std::mt19937& rng) {
  const int64_t full_rows = l.row_offset + rows;
  Tensor full = *Tensor::Empty(DType::kQ4, {full_rows, cols});
  std::vector<uint8_t> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < full_rows; ++r) {
    for (auto& v : values) v = static_cast<uint8_t>(rng() & 0xfu);
    kernels::PackQ4Row(values.data(), cols, full.data<uint8_t>() + r * (cols / 2));
  }
  const int64_t grid_rows = (full_rows + l.block_rows - 1) / l.block_rows;
  const int64_t grid_cols = (l.col_offset + cols + l.group - 1) / l.group;
  auto scales = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {grid_rows, grid_cols}));
  std::uniform_real_distribution<float> dist(0.5f / 8, 2.0f / 8);
  for (int64_t i = 0; i < scales->numel(); ++i) scales->data<float>()[i] = dist(rng);
  kernels::BlockScales b{.scales = scales,
                         .block_rows = l.block_rows,
                         .block_cols = l.group,
                         .row_offset = 0,
                         .col_offset = l.col_offset};
  if (l.zero_points) {
    auto zeros = std::make_shared<Tensor>(*Tensor::Empty(DType::kF32, {grid_rows, grid_cols}));
    for (int64_t i = 0; i < zeros->numel(); ++i) {
      zeros->data<float>()[i] = static_cast<float>(rng() % 16);
    }
    b.zero_points = zeros;
  }
  if (l.column_order) {
    auto order = std::make_shared<Tensor>(*Tensor::Empty(DType::kI32, {cols}));
    std::iota(order->data<int32_t>(), order->data<int32_t>() + cols, 0);
    std::shuffle(order->data<int32_t>(), order->data<int32_t>() + cols, rng);
    b.column_order = order;
  }
  return *full.WithBlockScales(std::move(b))->Slice(l.row_offset, full_rows);
}

// The weight as the product sees it: deq[o][f] is the value that multiplies activation f
// (column j lands on feature order[j]).
std::vector<double> Dequantize(const Tensor& w) {
  const kernels::BlockScales& b = *w.block_scales();
  const int64_t rows = w.dim(0), cols = w.dim(1), ld = b.scales->dim(1);
  std::vector<double> deq(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w.data<uint8_t>() + r * (cols / 2);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t g =
          ((r + b.row_offset) / b.block_rows) * ld + (j + b.col_offset) / b.block_cols;
      const double zero = b.zero_points ? b.zero_points->data<float>()[g] : 8.0;
      const int64_t f = b.column_order ? b.column_order->data<int32_t>()[j] : j;
      deq[r * cols + f] = (kernels::Q4Value(row, cols, j) - zero) * b.scales->data<float>()[g];
    }
  }
  return deq;
}

// s = |x| |W|^T (+ |bias|) for rows [0, m) of x against `weight_of_row(t)`'s dequantized values.
template <typename WeightOf>
Tensor ErrorScale(const Tensor& x, int64_t out, const Tensor& bias, WeightOf weight_of_row) {
  const int64_t m = x.dim(0), k = x.dim(1);
  Tensor s = *Tensor::Empty(DType::kF32, {m, out});
  for (int64_t t = 0; t < m; ++t) {
    const std::vector<double>* w = weight_of_row(t);
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias.defined() ? std::fabs(ValueAt(bias, o)) : 0.0;
      if (w != nullptr) {
        for (int64_t i = 0; i < k; ++i) {
          acc += std::fabs(ValueAt(x, t * k + i)) * std::fabs((*w)[o * k + i]);
        }
      }
      s.data<float>()[t * out + o] = static_cast<float>(acc);
    }
  }
  return s;
}

const char* PathName(Q4GemmPath p) {
  switch (p) {
    case Q4GemmPath::kAuto:
      return "auto";
    case Q4GemmPath::kGemv:
      return "gemv";
    case Q4GemmPath::kMma:
      return "mma";
    case Q4GemmPath::kSimt:
      return "simt";
  }
  return "?";
}

// What RunEveryPath (gemm_test_util.h) runs: LaunchQ4Gemm and its paths.
struct Q4Launcher {
  using Args = Q4GemmArgs;
  using Path = Q4GemmPath;
  static constexpr Path kPaths[] = {Path::kAuto, Path::kGemv, Path::kMma, Path::kSimt};
  static const char* Name(Path p) { return PathName(p); }
  static Path Planned(const Args& a) { return cuda::PlannedQ4GemmPath(a); }
  static cudaError_t Launch(const Args& a) { return cuda::LaunchQ4Gemm(a, nullptr); }
};

class Q4Fixture : public QuantGemmFixture {
 protected:
  // Runs every path on `args` (x, out, weights set), comparing with ref/scale.
  void RunAllPaths(Q4GemmArgs args, const Tensor& out_device, const Tensor& ref,
                   const Tensor& scale, uint32_t* flags) {
    RunEveryPath<Q4Launcher>(
        args, out_device, flags, [](Q4GemmArgs&, Q4GemmPath) {},
        [&](Q4GemmPath ran, const Tensor& got) {
          const double extra = ran == Q4GemmPath::kMma ? kBf16WeightRounding : 0.0;
          return GemmClose(got, ref, scale, {}, extra);
        });
  }
};

// ---- dense ----

struct LinearCase {
  std::string name;
  int64_t tokens, out, in;
  Q4Layout layout;
  DType x = DType::kBF16, o = DType::kBF16;
  bool bias = false;
};

std::vector<LinearCase> LinearCases() {
  const DType f = DType::kF32, b = DType::kBF16;
  return {
      {"decode1_g128", 1, 256, 512, {}},
      {"decode8_rows_300_g64", 8, 300, 384, {64}},
      {"decode3_k224_g32", 3, 200, 224, {32}},
      {"decode5_row_col_offsets", 5, 136, 320, {128, 7, 64}},
      {"decode4_asym_k416", 4, 72, 416, {32, 3, 96, true}},
      {"decode2_act_order_asym", 2, 130, 256, {128, 0, 0, true, true}},
      {"decode6_act_order_sym_g32_offsets", 6, 96, 288, {32, 5, 32, false, true}},
      {"decode4_bias_f32_out", 4, 136, 256, {64}, b, f, true},
      {"decode2_exact_mode", 2, 192, 256, {128, 5, 64}, f, f},
      {"prefill64_g128", 64, 576, 512, {}},
      {"prefill300_k352_g32_offsets", 300, 320, 352, {32, 9, 64}},
      {"prefill257_f32_out_g64", 257, 256, 1024, {64}, b, f},
      {"prefill128_exact_mode_asym", 128, 128, 256, {128, 0, 0, true}, f, f},
      {"prefill96_bias", 96, 136, 256, {}, b, b, true},
      {"prefill200_act_order_asym", 200, 200, 384, {128, 3, 0, true, true}},
      {"prefill40_act_order_k96", 40, 64, 96, {32, 0, 32, false, true}},
  };
}

using CudaQ4LinearTest = CudaFixtureTest<CudaTestWithParam<LinearCase>, Q4Fixture>;

TEST_P(CudaQ4LinearTest, MatchesCpuBackend) {
  const LinearCase& c = GetParam();
  std::mt19937 rng(static_cast<unsigned>(c.tokens * 131 + c.out * 7 + c.in));
  Tensor x = RandomTensor(c.x, {c.tokens, c.in}, rng);
  Tensor w = RandomQ4Weight(c.out, c.in, c.layout, rng);
  Tensor bias = c.bias ? RandomTensor(DType::kBF16, {c.out}, rng) : Tensor();
  Tensor ref = *Tensor::Empty(DType::kF32, {c.tokens, c.out});
  ASSERT_TRUE(cpu_->Linear(WidenToF32(x), w, bias, ref).ok());
  const std::vector<double> deq = Dequantize(w);
  const Tensor scale = ErrorScale(x, c.out, bias, [&](int64_t) { return &deq; });

  auto dw = gpu_->PrepareWeight(w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  DeviceTensor dx = ToDevice(x);
  DeviceTensor dbias = c.bias ? ToDevice(bias) : DeviceTensor{};
  DeviceTensor dout = DeviceEmpty(c.o, {c.tokens, c.out});

  Q4GemmArgs a =
      ActivationArgs<Q4GemmArgs>(dx.tensor, c.x, dout.tensor, c.o, c.tokens, c.in, c.out);
  a.weight = dw->raw_data();
  auto groups = gpu_->Q4GroupsFor(*dw);
  ASSERT_TRUE(groups.ok()) << groups.status();
  a.weight_groups = *groups;
  if (c.bias) {
    a.bias = dbias.tensor.raw_data();
    a.bias_dtype = DType::kBF16;
  }
  RunAllPaths(a, dout.tensor, ref, scale, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaQ4LinearTest, ::testing::ValuesIn(LinearCases()),
                         [](const auto& info) { return info.param.name; });

// ---- grouped ----

struct GroupedCase {
  std::string name;
  int64_t tokens;
  int experts, top_k;
  int64_t out, in;
  int64_t group = 128;
  bool half_idle = false;  // odd experts get no rows and no weight (other ranks)
  DType x = DType::kBF16, o = DType::kBF16;
  bool zero_points = false, column_order = false;
  int64_t col_step = 0;  // expert e's column offset: (e * col_step) % group (multiples of 32)
};

std::vector<GroupedCase> GroupedCases() {
  const DType f = DType::kF32, b = DType::kBF16;
  return {
      {"decode1_top8", 1, 64, 8, 256, 512},
      {"decode7_g64_col_offsets", 7, 16, 4, 576, 256, 64, false, b, b, false, false, 32},
      {"decode16_idle_experts_k224_g32", 16, 32, 4, 320, 224, 32, true},
      {"decode8_exact_mode_asym", 8, 16, 2, 192, 256, 128, false, f, f, true},
      {"decode5_act_order", 5, 8, 2, 136, 384, 128, false, b, b, true, true},
      {"prefill128_top8", 128, 16, 8, 576, 512},
      {"prefill300_idle_f32_out_k416", 300, 32, 4, 256, 416, 32, true, b, f},
      {"prefill200_asym_col_offsets", 200, 8, 2, 320, 256, 128, false, b, b, true, false, 64},
      {"prefill160_act_order_idle", 160, 8, 2, 200, 288, 32, true, b, b, true, true},
      {"prefill64_exact_mode", 64, 8, 2, 136, 256, 64, false, f, f},
  };
}

using CudaQ4GroupedTest = CudaFixtureTest<CudaTestWithParam<GroupedCase>, Q4Fixture>;

// A grouped case's host inputs: rows per expert, x, and each expert's weight (none for idle
// experts) with its dequantized oracle.
struct GroupedInputs {
  std::vector<int32_t> offsets;
  int64_t m = 0;
  Tensor x, off;
  std::vector<Tensor> weights;
  std::vector<std::vector<double>> deq;
};

GroupedInputs MakeGroupedInputs(const GroupedCase& c) {
  GroupedInputs in;
  std::mt19937 rng(static_cast<unsigned>(c.tokens * 17 + c.experts * 3 + c.in));
  // With half_idle, odd experts get no weight either.
  in.offsets = UnevenExpertOffsets(c.tokens, c.experts, c.top_k, c.half_idle, rng);
  in.m = in.offsets.back();
  in.x = RandomTensor(c.x, {in.m, c.in}, rng);
  in.off = OffsetsTensor(in.offsets);
  in.weights.resize(c.experts);
  in.deq.resize(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (c.half_idle && e % 2 == 1) continue;
    // Each expert a slice at its own offsets, as expert-parallel ranks cut fused tensors.
    const Q4Layout layout{c.group, (e * 5) % 17, (e * c.col_step) % c.group, c.zero_points,
                          c.column_order};
    in.weights[e] = RandomQ4Weight(c.out, c.in, layout, rng);
    in.deq[e] = Dequantize(in.weights[e]);
  }
  return in;
}

// The expert owning row t (the last one whose rows start at or before t).
const std::vector<double>* OracleOfRow(const GroupedInputs& in, int64_t t) {
  const int e = static_cast<int>(std::upper_bound(in.offsets.begin(), in.offsets.end(), t) -
                                 in.offsets.begin()) -
                1;
  return &in.deq[e];
}

TEST_P(CudaQ4GroupedTest, MatchesCpuBackend) {
  const GroupedCase& c = GetParam();
  const GroupedInputs in = MakeGroupedInputs(c);
  const int64_t m = in.m;
  const Tensor& x = in.x;
  const Tensor& off = in.off;
  std::vector<Tensor> device_weights(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (!in.weights[e].defined()) continue;
    auto dw = gpu_->PrepareWeight(in.weights[e]);
    ASSERT_TRUE(dw.ok()) << dw.status();
    device_weights[e] = *dw;
  }
  Tensor ref = *Tensor::Empty(DType::kF32, {m, c.out});
  ASSERT_TRUE(cpu_->MoeGroupedLinear(WidenToF32(x), off, in.weights, ref).ok());
  const Tensor scale =
      ErrorScale(x, c.out, Tensor(), [&](int64_t t) { return OracleOfRow(in, t); });

  std::vector<const void*> ptrs(c.experts, nullptr);
  std::vector<cuda::Q4Groups> groups(c.experts);
  for (int e = 0; e < c.experts; ++e) {
    if (!device_weights[e].defined()) continue;
    ptrs[e] = device_weights[e].raw_data();
    auto g = gpu_->Q4GroupsFor(device_weights[e]);
    ASSERT_TRUE(g.ok()) << g.status();
    groups[e] = *g;
  }
  cuda::DeviceBuffer dptrs, dgroups;
  ASSERT_NO_FATAL_FAILURE(UploadArray(ptrs, &dptrs));
  ASSERT_NO_FATAL_FAILURE(UploadArray(groups, &dgroups));
  DeviceTensor dx = ToDevice(x), doff = ToDevice(off);
  DeviceTensor dout = DeviceEmpty(c.o, {m, c.out});
  auto flags = *cuda::DeviceBuffer::Allocate(sizeof(uint32_t));

  Q4GemmArgs a = ActivationArgs<Q4GemmArgs>(dx.tensor, c.x, dout.tensor, c.o, m, c.in, c.out);
  a.expert_offsets = doff.tensor.data<int32_t>();
  a.weights = dptrs.as<const void*>();
  a.expert_groups = dgroups.as<const cuda::Q4Groups>();
  a.num_experts = c.experts;
  a.error_flags = flags.as<uint32_t>();
  RunAllPaths(a, dout.tensor, ref, scale, flags.as<uint32_t>());
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaQ4GroupedTest, ::testing::ValuesIn(GroupedCases()),
                         [](const auto& info) { return info.param.name; });

// ---- host-side planning and upload layout (no GPU needed) ----

// The trimmed grids hold exactly the scales and zero points the weight uses, at the same
// (row, col) -> group map; the column order travels with them.
TEST(Q4WeightPrepTest, TrimmedGridsMapEveryElementToItsGroup) {
  std::mt19937 rng(9);
  for (const Q4Layout& l : {Q4Layout{128, 200, 64, true, true}, Q4Layout{32, 3, 32, true},
                            Q4Layout{64, 0, 0}, Q4Layout{128, 128, 96, false, true}}) {
    const Tensor w = RandomQ4Weight(40, 224, l, rng);
    auto t = cuda::TrimQ4Groups(w);
    ASSERT_TRUE(t.ok()) << t.status();
    const kernels::BlockScales& full = *w.block_scales();
    EXPECT_EQ(t->layout.row_offset, 0);  // block_rows 1: the first row is the grid's first
    EXPECT_LT(t->layout.col_offset, l.group);
    EXPECT_EQ(t->layout.column_order, full.column_order);
    EXPECT_EQ(t->zero_points.defined(), l.zero_points);
    const int64_t ld = full.scales->dim(1), tld = t->scales.dim(1);
    for (int64_t r = 0; r < w.dim(0); ++r) {
      for (int64_t c = 0; c < w.dim(1); c += 16) {
        const int64_t want = (r + full.row_offset) * ld + (c + full.col_offset) / l.group;
        const int64_t got = (r + t->layout.row_offset) * tld + (c + t->layout.col_offset) / l.group;
        ASSERT_EQ(t->scales.data<float>()[got], full.scales->data<float>()[want]) << r << "," << c;
        if (l.zero_points) {
          ASSERT_EQ(t->zero_points.data<float>()[got], full.zero_points->data<float>()[want]);
        }
      }
    }
  }
  EXPECT_FALSE(cuda::TrimQ4Groups(RandomTensor(DType::kBF16, {4, 4}, rng)).ok());
}

// The kernels' index arithmetic (q4_index.h, the same functions the device code calls) against
// kernels/q4_layout.h on packed rows of every k from 32 to 1024: the decode stream's 16-byte
// chunks of a row (Q4RunsOf), the tensor-core path's chunks of each 64-wide k step with its
// narrow last step (Q4StepRunsOf, and which chunks its copies find bytes for) and the SIMT
// path's nibbles (Q4NibbleOf) each read every value exactly once, and where the layout put it.
TEST(Q4IndexTest, ChunksAndNibblesReadThePackedLayout) {
  using cuda::gemm_internal::Q4Nibble;
  using cuda::gemm_internal::Q4Runs;
  std::mt19937 rng(11);
  for (int k = 32; k <= 1024; k += 32) {
    SCOPED_TRACE("k " + std::to_string(k));
    std::vector<uint8_t> values(k), packed(k / 2);
    for (auto& v : values) v = static_cast<uint8_t>(rng() & 0xfu);
    kernels::PackQ4Row(values.data(), k, packed.data());
    const auto nibble = [&](int byte, bool high) {
      return high ? packed[byte] >> 4 : packed[byte] & 0xf;
    };
    // A chunk at `byte` whose runs start at columns lo and hi (of `base`): 16 values each.
    std::vector<int> seen(k, 0);
    const auto check_chunk = [&](int byte, int base, const Q4Runs& runs) {
      ASSERT_EQ(runs.lo % 16, 0);
      ASSERT_EQ(runs.hi % 16, 0);
      for (int j = 0; j < 16; ++j) {
        ASSERT_LT(base + runs.hi + j, k) << "byte " << byte;
        EXPECT_EQ(nibble(byte + j, false), values[base + runs.lo + j]) << "byte " << byte + j;
        EXPECT_EQ(nibble(byte + j, true), values[base + runs.hi + j]) << "byte " << byte + j;
        ++seen[base + runs.lo + j];
        ++seen[base + runs.hi + j];
      }
    };
    for (int chunk = 0; chunk < k / 32; ++chunk) {
      check_chunk(16 * chunk, 0, cuda::gemm_internal::Q4RunsOf(k, chunk));
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), k) << "decode stream";
    std::fill(seen.begin(), seen.end(), 0);
    for (int kt = 0; kt < (k + 63) / 64; ++kt) {
      const bool narrow = k - 64 * kt < 64;
      for (int c = 0; c < 2; ++c) {
        // q4_gemm_mma.cu copies chunk c when its bytes are in the row, and dequantizes it when
        // it is not chunk 1 of a narrow step: the two must agree.
        const int byte = 32 * kt + 16 * c;
        const bool copied = byte < k / 2;
        ASSERT_EQ(copied, !(narrow && c == 1)) << "step " << kt << " chunk " << c;
        const Q4Runs runs = cuda::gemm_internal::Q4StepRunsOf(narrow, c);
        EXPECT_LT(runs.hi + 16, 65);  // inside the step's 64 tile columns
        if (copied) check_chunk(byte, 64 * kt, runs);
      }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), k) << "tensor-core steps";
    for (int c = 0; c < k; ++c) {
      const Q4Nibble at = cuda::gemm_internal::Q4NibbleOf(k, c);
      ASSERT_LT(at.byte, k / 2);
      EXPECT_EQ(nibble(at.byte, at.high), values[c]) << "value " << c;
      EXPECT_EQ(nibble(at.byte, at.high), kernels::Q4Value(packed.data(), k, c));
    }
  }
}

// Q4GroupIndex over the grids PrepareWeight uploads (TrimQ4Groups, described by Q4GroupsOf, as
// the kernels get them) finds the checkpoint grid's own scale and zero point for every element,
// and the 16 values of every run (chunks start at multiples of 16) share one group: group sizes
// 32, 64 and 128, row and column offsets, more than one row per scale.
TEST(Q4IndexTest, GroupIndexOfUploadedGridsIsTheCheckpointsGroup) {
  std::mt19937 rng(13);
  for (const Q4Layout& l :
       {Q4Layout{128, 200, 64, true}, Q4Layout{32, 3, 0, true}, Q4Layout{64, 0, 32},
        Q4Layout{128, 128, 96, false, true}, Q4Layout{64, 7, 32, true, false, 3},
        Q4Layout{32, 0, 0, false, false, 4}}) {
    for (const int64_t cols : {int64_t{32}, int64_t{96}, int64_t{224}, int64_t{512}}) {
      SCOPED_TRACE("group " + std::to_string(l.group) + " offsets " + std::to_string(l.row_offset) +
                   "," + std::to_string(l.col_offset) + " block_rows " +
                   std::to_string(l.block_rows) + " cols " + std::to_string(cols));
      const Tensor w = RandomQ4Weight(40, cols, l, rng);
      auto t = cuda::TrimQ4Groups(w);
      ASSERT_TRUE(t.ok()) << t.status();
      kernels::BlockScales layout = t->layout;
      layout.scales = std::make_shared<const Tensor>(t->scales);
      if (t->zero_points.defined()) {
        layout.zero_points = std::make_shared<const Tensor>(t->zero_points);
      }
      auto uploaded = w.WithBlockScales(std::move(layout));  // host stand-in for the device copy
      ASSERT_TRUE(uploaded.ok()) << uploaded.status();
      const cuda::Q4Groups g = cuda::Q4GroupsOf(*uploaded, nullptr);
      ASSERT_EQ(g.ld, t->scales.dim(1));
      const kernels::BlockScales& full = *w.block_scales();
      const int64_t ld = full.scales->dim(1);
      const int64_t grid = t->scales.numel();
      for (int r = 0; r < w.dim(0); ++r) {
        for (int c = 0; c < w.dim(1); ++c) {
          const int got = cuda::gemm_internal::Q4GroupIndex(g, r, c);
          ASSERT_GE(got, 0);
          ASSERT_LT(got, grid) << r << "," << c;
          const int64_t want = ((r + full.row_offset) / full.block_rows) * ld +
                               (c + full.col_offset) / full.block_cols;
          ASSERT_EQ(g.scales[got], full.scales->data<float>()[want]) << r << "," << c;
          if (l.zero_points) {
            ASSERT_EQ(g.zero_points[got], full.zero_points->data<float>()[want]) << r << "," << c;
          }
          if (c % 16 == 15) {
            ASSERT_EQ(cuda::gemm_internal::Q4GroupIndex(g, r, c - 15), got) << r << "," << c;
          }
        }
      }
    }
  }
}

// The test's own oracle (Dequantize: which activation each stored value multiplies, with which
// scale and zero point) against the CPU backend that every GPU case is compared with, on every
// dense case: the layouts, offsets, zero points and column orders mean the same to both, and the
// error scale bounds the CPU's own rounding. Runs without a GPU.
TEST(Q4ReferenceTest, DequantizedOracleMatchesCpuBackend) {
  auto cpu = kernels::cpu::CpuBackend::Create({});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  for (const LinearCase& c : LinearCases()) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(static_cast<unsigned>(c.tokens * 131 + c.out * 7 + c.in));
    Tensor x = RandomTensor(c.x, {c.tokens, c.in}, rng);
    Tensor w = RandomQ4Weight(c.out, c.in, c.layout, rng);
    Tensor bias = c.bias ? RandomTensor(DType::kBF16, {c.out}, rng) : Tensor();
    Tensor ref = *Tensor::Empty(DType::kF32, {c.tokens, c.out});
    ASSERT_TRUE((*cpu)->Linear(WidenToF32(x), w, bias, ref).ok());
    const std::vector<double> deq = Dequantize(w);
    const Tensor scale = ErrorScale(x, c.out, bias, [&](int64_t) { return &deq; });
    Tensor oracle = *Tensor::Empty(DType::kF32, {c.tokens, c.out});
    for (int64_t t = 0; t < c.tokens; ++t) {
      for (int64_t o = 0; o < c.out; ++o) {
        double acc = bias.defined() ? ValueAt(bias, o) : 0.0;
        for (int64_t i = 0; i < c.in; ++i) acc += ValueAt(x, t * c.in + i) * deq[o * c.in + i];
        oracle.data<float>()[t * c.out + o] = static_cast<float>(acc);
      }
    }
    EXPECT_TRUE(GemmClose(ref, oracle, scale));
  }
}

// The same for the grouped cases (uneven, empty and absent experts, act-order, zero points).
TEST(Q4ReferenceTest, GroupedOracleMatchesCpuBackend) {
  auto cpu = kernels::cpu::CpuBackend::Create({});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  for (const GroupedCase& c : GroupedCases()) {
    SCOPED_TRACE(c.name);
    const GroupedInputs in = MakeGroupedInputs(c);
    Tensor ref = *Tensor::Empty(DType::kF32, {in.m, c.out});
    ASSERT_TRUE((*cpu)->MoeGroupedLinear(WidenToF32(in.x), in.off, in.weights, ref).ok());
    const Tensor scale =
        ErrorScale(in.x, c.out, Tensor(), [&](int64_t t) { return OracleOfRow(in, t); });
    Tensor oracle = *Tensor::Empty(DType::kF32, {in.m, c.out});
    for (int64_t t = 0; t < in.m; ++t) {
      const std::vector<double>& w = *OracleOfRow(in, t);
      for (int64_t o = 0; o < c.out; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < c.in; ++i) acc += ValueAt(in.x, t * c.in + i) * w[o * c.in + i];
        oracle.data<float>()[t * c.out + o] = static_cast<float>(acc);
      }
    }
    EXPECT_TRUE(GemmClose(ref, oracle, scale));
  }
}

TEST(Q4PlanTest, PathsFollowShapes) {
  alignas(16) static char buf[16];
  static float scales[1];
  Q4GemmArgs a;
  a.x = buf;
  a.out = buf;
  a.weight = buf;
  a.weight_groups.scales = scales;
  a.k = 512;
  a.n = 256;
  a.m = 8;
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kGemv);
  a.m = 9;
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kMma);
  a.x_dtype = DType::kF32;  // exact mode, many rows
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kSimt);
  a.m = 4;
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kGemv);
  a.path = Q4GemmPath::kMma;  // forced, cannot run f32 x
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kAuto);
  EXPECT_EQ(cuda::LaunchQ4Gemm(a, nullptr), cudaErrorInvalidValue);
  a.path = Q4GemmPath::kAuto;
  a.x_dtype = DType::kBF16;
  a.m = 64;
  a.bias = buf;  // a bias with many rows: SIMT
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kSimt);
  a.bias = nullptr;
  a.x = buf + 2;  // unaligned activations: SIMT
  EXPECT_EQ(cuda::PlannedQ4GemmPath(a), Q4GemmPath::kSimt);
  a.x = buf;
  a.k = 48;  // not a multiple of 32: refused before anything runs
  EXPECT_EQ(cuda::LaunchQ4Gemm(a, nullptr), cudaErrorInvalidValue);
}

// ---- through the backend ----

using CudaQ4BackendTest = CudaFixtureTest<CudaTest, Q4Fixture>;

// The weight arena holds half a byte per weight plus the trimmed grids (and the column order):
// nothing is widened.
TEST_F(CudaQ4BackendTest, WeightsStayHalfAByte) {
  EXPECT_TRUE(gpu_->SupportsQ4Weights());
  std::mt19937 rng(3);
  const Tensor w = RandomQ4Weight(576, 1024, {128, 200, 0, true, true}, rng);
  const size_t before = gpu_->memory_stats().weight_bytes;
  auto dw = gpu_->PrepareWeight(w);
  ASSERT_TRUE(dw.ok()) << dw.status();
  EXPECT_EQ(dw->dtype(), DType::kQ4);
  ASSERT_NE(dw->block_scales(), nullptr);
  // Rows 200..775 of the checkpoint: 576 scale rows of 8 groups, as many zero points.
  EXPECT_EQ(dw->block_scales()->scales->dim(0), 576);
  EXPECT_EQ(dw->block_scales()->scales->dim(1), 8);
  EXPECT_EQ(dw->block_scales()->row_offset, 0);
  const auto arena = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t grid_bytes = 576 * 8 * sizeof(float);
  EXPECT_EQ(gpu_->memory_stats().weight_bytes - before,
            arena(576 * 1024 / 2) + 2 * arena(grid_bytes) + arena(1024 * sizeof(int32_t)));
}

// Backend::Linear and MoeGroupedLinear with q4 weights, eagerly and replayed from a graph.
TEST_F(CudaQ4BackendTest, OpsMatchCpuInAndOutOfGraphs) {
  std::mt19937 rng(5);
  const int64_t tokens = 4, in = 352, out = 576;
  const int experts = 8, top_k = 2;
  Tensor x = RandomTensor(DType::kBF16, {tokens, in}, rng);
  Tensor w = RandomQ4Weight(out, in, {32, 64, 64, true, true}, rng);
  const std::vector<int32_t> offsets = {0, 1, 1, 3, 3, 3, 6, 7, 8};
  Tensor off = OffsetsTensor(offsets);
  Tensor xg = RandomTensor(DType::kBF16, {tokens * top_k, in}, rng);
  std::vector<Tensor> ew(experts), dew(experts);
  std::vector<std::vector<double>> deq(experts);
  for (int e = 0; e < experts; ++e) {
    ew[e] = RandomQ4Weight(out, in, {64, 3 * e, 0, e % 2 == 1, e % 3 == 0}, rng);
    deq[e] = Dequantize(ew[e]);
    dew[e] = *gpu_->PrepareWeight(ew[e]);
  }
  Tensor ref = *Tensor::Empty(DType::kF32, {tokens, out});
  ASSERT_TRUE(cpu_->Linear(WidenToF32(x), w, Tensor(), ref).ok());
  const std::vector<double> wdeq = Dequantize(w);
  const Tensor scale = ErrorScale(x, out, Tensor(), [&](int64_t) { return &wdeq; });
  Tensor gref = *Tensor::Empty(DType::kF32, {tokens * top_k, out});
  ASSERT_TRUE(cpu_->MoeGroupedLinear(WidenToF32(xg), off, ew, gref).ok());
  const Tensor gscale = ErrorScale(xg, out, Tensor(), [&](int64_t t) {
    const int e =
        static_cast<int>(std::upper_bound(offsets.begin(), offsets.end(), t) - offsets.begin()) - 1;
    return &deq[e];
  });

  ExpectOpsMatchInAndOutOfGraphs(*gpu_, x, w, xg, off, dew, ref, scale, gref, gscale);
}

}  // namespace
}  // namespace expertmesh::testing
