// MoE dispatch and combine: permute (bit-exact against a naive stable grouping), the grouped
// per-expert linear (against doubles), and the weighted combine with shared experts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "tests/kernels/cpu/kernel_test_util.h"

namespace expertmesh::testing {
namespace {

enum class Routing { kRandom, kAllToOne, kHalfExpertsIdle };

struct MoeCase {
  std::string name;
  int64_t n;
  int experts, top_k;
  int64_t hidden, inter;
  Routing routing;
  DType dtype;
  bool shared, shared_gate;
};

class MoeGroupedTest : public CpuOpTest<MoeCase> {
 protected:
  int64_t BlasMinTokens() const override { return 16; }  // both paths across the experts
};

std::vector<int32_t> MakeIds(const MoeCase& c, std::mt19937& rng) {
  // Distinct experts per token, as a router produces; kHalfExpertsIdle draws only even ids,
  // kAllToOne gives every token the same experts.
  std::vector<int32_t> candidates;
  for (int e = 0; e < c.experts; ++e) {
    if (c.routing != Routing::kHalfExpertsIdle || e % 2 == 0) candidates.push_back(e);
  }
  std::vector<int32_t> ids(c.n * c.top_k);
  for (int64_t t = 0; t < c.n; ++t) {
    if (c.routing != Routing::kAllToOne) std::shuffle(candidates.begin(), candidates.end(), rng);
    for (int j = 0; j < c.top_k; ++j) ids[t * c.top_k + j] = candidates[j];
  }
  return ids;
}

TEST_P(MoeGroupedTest, PermuteGroupedLinearCombine) {
  std::mt19937 rng(static_cast<unsigned>(c().n * 3 + c().experts));
  const int64_t n = c().n, k = c().top_k, m = n * k, h = c().hidden, inter = c().inter;
  const std::vector<int32_t> id_values = MakeIds(c(), rng);
  for (int32_t e : id_values) ASSERT_LT(e, c().experts);
  Tensor ids = I32Tensor(id_values, {n, k});
  Tensor x = RandomTensor(c().dtype, {n, h}, rng);

  // 1. Permute: bit-exact against a naive stable grouping.
  Tensor px = *Tensor::Empty(c().dtype, {m, h});
  Tensor offsets = *Tensor::Empty(DType::kI32, {c().experts + 1});
  Tensor slots = *Tensor::Empty(DType::kI32, {m});
  ASSERT_TRUE(backend_->MoePermute(x, ids, c().experts, px, offsets, slots).ok());
  std::vector<double> ref_slots, ref_offsets{0};
  for (int e = 0; e < c().experts; ++e) {
    for (int64_t s = 0; s < m; ++s) {
      if (id_values[s] == e) ref_slots.push_back(static_cast<double>(s));
    }
    ref_offsets.push_back(static_cast<double>(ref_slots.size()));
  }
  EXPECT_TRUE(TensorsClose(slots, ref_slots, {.atol = 0, .rtol = 0}));
  EXPECT_TRUE(TensorsClose(offsets, ref_offsets, {.atol = 0, .rtol = 0}));
  Tensor ref_px = *Tensor::Empty(c().dtype, {m, h});
  const size_t row = h * DTypeSize(c().dtype);
  for (int64_t r = 0; r < m; ++r) {
    std::memcpy(
        static_cast<char*>(ref_px.raw_data()) + r * row,
        static_cast<const char*>(x.raw_data()) + (static_cast<int64_t>(ref_slots[r]) / k) * row,
        row);
  }
  EXPECT_TRUE(TensorsEqual(px, ref_px));

  // 2. Grouped linear with per-expert [inter, hidden] weights; idle experts get no weight.
  std::vector<Tensor> w(c().experts);
  for (int e = 0; e < c().experts; ++e) {
    if (ref_offsets[e + 1] > ref_offsets[e]) w[e] = RandomTensor(DType::kBF16, {inter, h}, rng);
  }
  GuardedTensor y(c().dtype, {m, inter});
  absl::Status s = backend_->MoeGroupedLinear(px, offsets, w, y.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(y.GuardsIntact());
  const std::vector<double> pxd = ToDoubles(px);
  std::vector<double> ref_y(m * inter);
  for (int e = 0; e < c().experts; ++e) {
    if (!w[e].defined()) continue;
    const std::vector<double> wd = ToDoubles(w[e]);
    for (int64_t r = static_cast<int64_t>(ref_offsets[e]); r < ref_offsets[e + 1]; ++r) {
      for (int64_t o = 0; o < inter; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < h; ++i) acc += pxd[r * h + i] * wd[o * h + i];
        ref_y[r * inter + o] = acc;
      }
    }
  }
  EXPECT_TRUE(TensorsClose(y.tensor(), ref_y, ToleranceFor(c().dtype, 1e-5)));

  // 3. Combine (treating y as the expert outputs, width inter) with optional shared expert.
  Tensor tw = RandomTensor(DType::kF32, {n, k}, rng, 0.0f, 1.0f);
  Tensor shared = c().shared ? RandomTensor(c().dtype, {n, inter}, rng) : Tensor();
  Tensor gate = c().shared_gate ? RandomTensor(c().dtype, {n, 1}, rng, -3.0f, 3.0f) : Tensor();
  GuardedTensor out(c().dtype, {n, inter});
  s = backend_->MoeCombine(y.tensor(), slots, ids, tw, shared, gate, out.tensor());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(out.GuardsIntact());
  const std::vector<double> yd = ToDoubles(y.tensor()), twd = ToDoubles(tw);
  const std::vector<double> sd = c().shared ? ToDoubles(shared) : std::vector<double>();
  const std::vector<double> gd = c().shared_gate ? ToDoubles(gate) : std::vector<double>();
  std::vector<double> ref_out(n * inter, 0.0);
  for (int64_t r = 0; r < m; ++r) {
    const int64_t slot = static_cast<int64_t>(ref_slots[r]), t = slot / k;
    for (int64_t i = 0; i < inter; ++i) ref_out[t * inter + i] += twd[slot] * yd[r * inter + i];
  }
  for (int64_t t = 0; t < n && c().shared; ++t) {
    const double g = c().shared_gate ? 1.0 / (1.0 + std::exp(-gd[t])) : 1.0;
    for (int64_t i = 0; i < inter; ++i) ref_out[t * inter + i] += g * sd[t * inter + i];
  }
  EXPECT_TRUE(TensorsClose(out.tensor(), ref_out, ToleranceFor(c().dtype)));
}

const MoeCase kMoeCases[] = {
    {"one_token", 1, 8, 2, 32, 16, Routing::kRandom, DType::kF32, false, false},
    {"decode_batch", 7, 16, 4, 64, 24, Routing::kRandom, DType::kF32, true, false},
    {"qwen2_gated_shared", 9, 8, 2, 48, 40, Routing::kRandom, DType::kF32, true, true},
    {"all_to_one_expert_blas", 40, 8, 2, 64, 33, Routing::kAllToOne, DType::kF32, false, false},
    {"half_idle", 24, 16, 3, 40, 20, Routing::kHalfExpertsIdle, DType::kF32, true, false},
    {"bf16", 13, 8, 2, 64, 32, Routing::kRandom, DType::kBF16, true, true},
    {"odd_sizes", 5, 5, 5, 17, 9, Routing::kRandom, DType::kF32, false, false},
};

INSTANTIATE_TEST_SUITE_P(Cpu, MoeGroupedTest,
                         ::testing::Combine(::testing::ValuesIn(kMoeCases),
                                            ::testing::ValuesIn(AllCpuIsas())),
                         CaseName<MoeCase>);

TEST(MoeDispatchErrors, ExpertIdOutOfRangeAndMissingWeight) {
  auto backend = *CpuBackend::Create({});
  Tensor x = *Tensor::Zeros(DType::kF32, {2, 4});
  Tensor px = *Tensor::Empty(DType::kF32, {2, 4});
  Tensor off = *Tensor::Empty(DType::kI32, {5}), slots = *Tensor::Empty(DType::kI32, {2});
  absl::Status s = backend->MoePermute(x, I32Tensor({1, 4}, {2, 1}), 4, px, off, slots);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("expert id 4"), std::string_view::npos) << s;

  ASSERT_TRUE(backend->MoePermute(x, I32Tensor({1, 1}, {2, 1}), 4, px, off, slots).ok());
  std::vector<Tensor> w(4);  // expert 1 has rows but no weight
  Tensor y = *Tensor::Empty(DType::kF32, {2, 3});
  s = backend->MoeGroupedLinear(px, off, w, y);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("expert 1 has 2 rows but no weight"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace expertmesh::testing
