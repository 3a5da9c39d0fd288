// LaunchSampling against the host sampler (sampling::Sampler, without penalties), row by row.
//   Greedy rows: the same token always (argmax, lowest id on ties, -0 == +0).
//   Sampled rows (temperature, min_p, top_k, top_p, seeded draw): the same token, except where
//     the host's decision lies within rounding distance of a boundary that sampling.h lists
//     (e within ~4 ulps of min_p; tokens with equal double e but different logits among the
//     kept ones; the top_p target or the draw u within 1e-10 of a cumulative mass). Such rows
//     are detected on the host, counted and must stay rare; with these inputs there are none.
//   Distribution: many draws of one row (counter 0..N-1) follow the host's distribution within
//     5 standard deviations per token, and never leave its support.
// Vocabularies 1 to 151936 (Qwen2) and 129280 (DeepSeek-V3); logits Gaussian, bf16-quantised
// (many exact ties), flat, half -inf, spiky, and signed zeros at the max; parameters from plain
// temperature to top_k + top_p + min_p, top_k cutting through tie groups, top_p keeping one
// token or nearly the whole vocabulary. NaN / +inf / all -inf rows set the error flag and get
// token 0 without disturbing the other rows. Host-only cases (run everywhere): the random
// stream and greedy threshold equal the sampler's, and argument checks.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/splitmix64.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/error_flags.h"
#include "kernels/cuda/ops/sampling.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/sampling_params.h"

namespace expertmesh::cuda {
namespace {

using testing::CudaTest;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------------------------
// Host reference and boundary detection.

kernels::SamplingRow Params(float temperature, int32_t top_k = 0, float top_p = 1.0f,
                            float min_p = 0.0f) {
  kernels::SamplingRow p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

// The host sampler's token for one row; -1 when it rejects the row.
int32_t HostToken(std::span<const float> row, const kernels::SamplingRow& p) {
  sampling::SamplingParams sp;
  sp.temperature = p.temperature;
  sp.top_k = p.top_k;
  sp.top_p = p.top_p;
  sp.min_p = p.min_p;
  sp.seed = p.seed;
  const std::vector<int32_t> output(p.counter, 0);  // only its length matters without penalties
  sampling::Sampler sampler;
  auto r = sampler.Sample(row, sp, {.prompt = {}, .output = output});
  return r.ok() ? r->token : -1;
}

// Whether the host's decision for a sampled row lies within rounding distance of a boundary the
// GPU may resolve differently (see the top of the file and sampling.h).
bool NearBoundary(std::span<const float> row, const kernels::SamplingRow& p) {
  if (p.temperature < kernels::kGreedyTemperature) return false;
  float mx = -kInf;
  for (float l : row) mx = std::max(mx, l);
  const double inv_t = 1.0 / p.temperature;
  struct Kept {
    int32_t id;
    float logit;
    double e;
  };
  std::vector<Kept> kept;
  for (size_t i = 0; i < row.size(); ++i) {
    const double e = std::exp((static_cast<double>(row[i]) - mx) * inv_t);
    // exp(0) = 1 exactly on both sides; any other e this close to min_p may round apart.
    if (e != 1.0 && std::fabs(e - p.min_p) <= 4 * std::numeric_limits<double>::epsilon() * e) {
      return true;
    }
    if (e > 0 && e >= p.min_p) kept.push_back({static_cast<int32_t>(i), row[i], e});
  }
  auto more_likely = [](const Kept& a, const Kept& b) {
    return a.e != b.e ? a.e > b.e : a.id < b.id;
  };
  std::sort(kept.begin(), kept.end(), more_likely);
  for (size_t i = 0; i + 1 < kept.size(); ++i) {
    if (kept[i].e == kept[i + 1].e && kept[i].logit != kept[i + 1].logit) return true;
  }
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < kept.size()) kept.resize(p.top_k);
  if (p.top_p < 1.0f) {
    double total = 0;
    for (const Kept& k : kept) total += k.e;
    const double target = p.top_p * total, slack = 1e-10 * total;
    double mass = 0;
    size_t n = 0;
    while (n < kept.size() && mass < target) mass += kept[n++].e;
    if (std::fabs(mass - target) <= slack) return true;
    if (n > 0 && std::fabs(mass - kept[n - 1].e - target) <= slack) return true;
    kept.resize(std::max<size_t>(n, 1));
  }
  std::sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) { return a.id < b.id; });
  double total = 0;
  for (const Kept& k : kept) total += k.e;
  const double u = sampling::CounterUniform(p.seed, p.counter);
  double cumulative = 0;
  for (const Kept& k : kept) {
    cumulative += k.e / total;
    if (std::fabs(cumulative - u) <= 1e-10) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Device runs.

struct GpuResult {
  std::vector<int32_t> tokens;
  uint32_t flags = 0;
};

// rows x vocab logits laid out with `stride` floats between rows.
GpuResult RunGpu(const std::vector<float>& logits, int64_t vocab, int64_t stride,
                 const std::vector<kernels::SamplingRow>& params) {
  const int64_t rows = static_cast<int64_t>(params.size());
  EXPECT_EQ(static_cast<int64_t>(logits.size()), rows * stride);
  auto d_logits = DeviceBuffer::Allocate(logits.size() * sizeof(float));
  auto d_params = DeviceBuffer::Allocate(params.size() * sizeof(kernels::SamplingRow));
  auto d_tokens = DeviceBuffer::Allocate(params.size() * sizeof(int32_t));
  const size_t ws_bytes = SamplingWorkspaceBytes(rows, vocab);
  auto d_ws = DeviceBuffer::Allocate(ws_bytes);
  auto d_flags = DeviceBuffer::Allocate(sizeof(uint32_t));
  EXPECT_TRUE(d_logits.ok() && d_params.ok() && d_tokens.ok() && d_ws.ok() && d_flags.ok());
  GpuResult r;
  r.tokens.assign(rows, -2);
  if (!d_logits.ok() || !d_params.ok() || !d_tokens.ok() || !d_ws.ok() || !d_flags.ok()) return r;
  EXPECT_EQ(cudaMemcpy(d_logits->get(), logits.data(), logits.size() * sizeof(float),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_params->get(), params.data(), params.size() * sizeof(kernels::SamplingRow),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  // Poison: tokens a row forgets to write, and workspace read before it is written, show up.
  EXPECT_EQ(cudaMemset(d_tokens->get(), 0x5a, params.size() * sizeof(int32_t)), cudaSuccess);
  EXPECT_EQ(cudaMemset(d_ws->get(), 0xff, ws_bytes), cudaSuccess);
  EXPECT_EQ(cudaMemset(d_flags->get(), 0, sizeof(uint32_t)), cudaSuccess);
  SamplingArgs a;
  a.logits = d_logits->as<float>();
  a.rows = rows;
  a.vocab = vocab;
  a.logits_stride = stride == vocab ? 0 : stride;
  a.params = d_params->as<kernels::SamplingRow>();
  a.tokens = d_tokens->as<int32_t>();
  a.workspace = d_ws->get();
  a.error_flags = d_flags->as<uint32_t>();
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.tokens.data(), d_tokens->get(), params.size() * sizeof(int32_t),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&r.flags, d_flags->get(), sizeof(uint32_t), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Inputs.

enum class Pattern { kGaussian, kQuantized, kFlat, kMasked, kSpiky, kSignedZeros };
constexpr Pattern kPatterns[] = {Pattern::kGaussian, Pattern::kQuantized, Pattern::kFlat,
                                 Pattern::kMasked,   Pattern::kSpiky,     Pattern::kSignedZeros};

const char* PatternName(Pattern p) {
  switch (p) {
    case Pattern::kGaussian:
      return "gaussian";
    case Pattern::kQuantized:
      return "bf16_quantised";
    case Pattern::kFlat:
      return "flat";
    case Pattern::kMasked:
      return "half_masked";
    case Pattern::kSpiky:
      return "spiky";
    case Pattern::kSignedZeros:
      return "signed_zeros";
  }
  return "?";
}

void FillRow(Pattern pattern, std::mt19937_64& rng, float* row, int64_t vocab) {
  std::normal_distribution<float> gauss(0.0f, 3.0f);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  switch (pattern) {
    case Pattern::kGaussian:
      for (int64_t i = 0; i < vocab; ++i) row[i] = gauss(rng);
      break;
    case Pattern::kQuantized:  // bf16 lm_head output: few distinct values, many exact ties
      for (int64_t i = 0; i < vocab; ++i) row[i] = Bf16ToFloat(FloatToBf16(gauss(rng)));
      break;
    case Pattern::kFlat:
      for (int64_t i = 0; i < vocab; ++i) row[i] = 1.5f;
      break;
    case Pattern::kMasked: {
      std::bernoulli_distribution masked(0.5);
      for (int64_t i = 0; i < vocab; ++i) row[i] = masked(rng) ? -kInf : gauss(rng);
      row[pick(rng)] = 2.0f;  // at least one finite logit
      break;
    }
    case Pattern::kSpiky:
      for (int64_t i = 0; i < vocab; ++i) row[i] = gauss(rng) / 3.0f;
      for (int s = 0; s < 5; ++s) row[pick(rng)] = 12.0f + static_cast<float>(s);
      break;
    case Pattern::kSignedZeros:  // the max is 0, held as -0 and +0 by several ids
      for (int64_t i = 0; i < vocab; ++i) row[i] = -std::fabs(gauss(rng)) - 0.5f;
      for (int s = 0; s < 4; ++s) row[pick(rng)] = (s % 2 == 0) ? -0.0f : 0.0f;
      break;
  }
}

// The parameter sets every vocabulary is sampled with (seed and counter set per row).
std::vector<kernels::SamplingRow> ParameterSets(int64_t vocab) {
  const int32_t v = static_cast<int32_t>(vocab);
  return {
      Params(0.0f),                              // greedy
      Params(9.9e-6f),                           // just below the greedy threshold
      Params(1e-5f),                             // just at it: sampled, very peaked
      Params(1.0f),                              // plain temperature
      Params(0.7f, 50),                          // top_k
      Params(1.0f, 0, 0.9f),                     // top_p
      Params(0.8f, 40, 0.95f, 0.05f),            // everything
      Params(1.3f, 0, 1.0f, 0.1f),               // min_p
      Params(0.5f, 0, 0.5f),                     // tight top_p
      Params(1.0f, 1),                           // top_k 1: argmax through the sampling path
      Params(1.0f, std::max(v - 1, 0)),          // top_k one below the vocabulary
      Params(1.0f, v + 5),                       // top_k above it: off
      Params(1.0f, 0, 1e-6f),                    // top_p keeping a single token
      Params(100.0f, 0, 0.99f),                  // nearly flat, top_p keeps nearly everything
      Params(2.0f, std::min(v, 100000), 0.97f),  // large top_k, then top_p
      Params(1.0f, 0, 1.0f, 1.0f),               // min_p 1: only the tokens tied at the max
  };
}

struct Batch {
  std::vector<float> logits;
  std::vector<kernels::SamplingRow> params;
  std::vector<std::string> labels;
};

Batch BuildBatch(int64_t vocab, int seeds_per_set, uint64_t seed) {
  Batch b;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> counter(0, 1000);
  const std::vector<kernels::SamplingRow> sets = ParameterSets(vocab);
  for (Pattern pattern : kPatterns) {
    for (size_t s = 0; s < sets.size(); ++s) {
      for (int k = 0; k < seeds_per_set; ++k) {
        kernels::SamplingRow p = sets[s];
        p.seed = rng();
        p.counter = counter(rng);
        const size_t at = b.logits.size();
        b.logits.resize(at + vocab);
        FillRow(pattern, rng, b.logits.data() + at, vocab);
        b.params.push_back(p);
        b.labels.push_back(std::string(PatternName(pattern)) + " set " + std::to_string(s));
      }
    }
  }
  return b;
}

// Compares every row with the host; returns the number of rows excused as boundary cases.
int CompareWithHost(const Batch& b, int64_t vocab, int64_t stride, const GpuResult& got) {
  int boundary = 0;
  for (size_t r = 0; r < b.params.size(); ++r) {
    const std::span<const float> row(b.logits.data() + r * stride, vocab);
    const int32_t want = HostToken(row, b.params[r]);
    if (got.tokens[r] == want) continue;
    if (NearBoundary(row, b.params[r])) {
      ++boundary;
      continue;
    }
    ADD_FAILURE() << "row " << r << " (" << b.labels[r] << ", T " << b.params[r].temperature
                  << " top_k " << b.params[r].top_k << " top_p " << b.params[r].top_p << " min_p "
                  << b.params[r].min_p << " seed " << b.params[r].seed << " counter "
                  << b.params[r].counter << "): gpu " << got.tokens[r] << ", host " << want;
  }
  return boundary;
}

// ---------------------------------------------------------------------------------------------
// GPU cases.

class SamplingGpuTest : public CudaTest {};

TEST_F(SamplingGpuTest, MatchesHostSamplerOverVocabularies) {
  struct Vocab {
    int64_t size;
    int seeds_per_set;
  };
  for (const Vocab& v : {Vocab{1, 2}, Vocab{7, 4}, Vocab{1000, 4}, Vocab{32000, 2},
                         Vocab{129280, 1}, Vocab{151936, 1}}) {
    SCOPED_TRACE("vocab " + std::to_string(v.size));
    const Batch b = BuildBatch(v.size, v.seeds_per_set, 1000 + static_cast<uint64_t>(v.size));
    const GpuResult got = RunGpu(b.logits, v.size, v.size, b.params);
    EXPECT_EQ(got.flags, 0u);
    const int boundary = CompareWithHost(b, v.size, v.size, got);
    EXPECT_LE(boundary * 100, static_cast<int>(b.params.size())) << boundary << " boundary rows";
  }
}

// Greedy corner cases: ties at the max (lowest id wins), -0 and +0 (equal), -inf elsewhere.
TEST_F(SamplingGpuTest, GreedyTiesAndInfinities) {
  const int64_t vocab = 4099;
  Batch b;
  auto add_row = [&](auto fill) {
    const size_t at = b.logits.size();
    b.logits.resize(at + vocab, -1.0f);
    fill(b.logits.data() + at);
    b.params.push_back(Params(0.0f));
    b.labels.push_back("greedy " + std::to_string(b.params.size() - 1));
  };
  add_row([](float* r) { r[17] = r[3000] = r[4098] = 5.0f; });  // -> 17
  add_row([](float* r) { r[4098] = 0.5f; });                    // last id
  add_row([](float* r) {
    r[9] = -0.0f;
    r[5] = 0.0f;
    r[7] = -0.0f;
  });  // -> 5 (-0 == +0)
  add_row([&](float* r) {
    std::fill(r, r + vocab, -kInf);
    r[2048] = -1e30f;
  });                                                         // -> 2048
  add_row([&](float* r) { std::fill(r, r + vocab, 3.0f); });  // -> 0
  const GpuResult got = RunGpu(b.logits, vocab, vocab, b.params);
  EXPECT_EQ(got.flags, 0u);
  EXPECT_EQ(got.tokens, (std::vector<int32_t>{17, 4098, 5, 2048, 0}));
  EXPECT_EQ(CompareWithHost(b, vocab, vocab, got), 0);
}

// top_k cutting through a group of tied logits keeps the lowest ids of the group; top_p's
// target falling inside a tie group takes the lowest ids it needs. Exact equality, many draws.
TEST_F(SamplingGpuTest, FiltersBreakTiesByLowerId) {
  const int64_t vocab = 1000;
  Batch b;
  for (uint64_t counter = 0; counter < 200; ++counter) {
    for (const kernels::SamplingRow& base :
         {Params(1.0f, 300), Params(1.0f, 0, 0.3f), Params(0.9f, 260, 0.8f)}) {
      kernels::SamplingRow p = base;
      p.seed = 99;
      p.counter = counter;
      const size_t at = b.logits.size();
      b.logits.resize(at + vocab);
      for (int64_t i = 0; i < vocab; ++i) b.logits[at + i] = static_cast<float>(i % 4);
      b.params.push_back(p);
      b.labels.push_back("ties counter " + std::to_string(counter));
    }
  }
  const GpuResult got = RunGpu(b.logits, vocab, vocab, b.params);
  EXPECT_EQ(got.flags, 0u);
  EXPECT_EQ(CompareWithHost(b, vocab, vocab, got), 0);
}

// Rows laid out with a stride: the padding between rows (NaN here) is never read.
TEST_F(SamplingGpuTest, StridedRowsIgnoreThePadding) {
  const int64_t vocab = 5003, stride = vocab + 37;
  const Batch compact = BuildBatch(vocab, 1, 5);
  Batch strided = compact;
  strided.logits.assign(compact.params.size() * stride, std::numeric_limits<float>::quiet_NaN());
  for (size_t r = 0; r < compact.params.size(); ++r) {
    std::copy_n(compact.logits.begin() + r * vocab, vocab, strided.logits.begin() + r * stride);
  }
  const GpuResult got = RunGpu(strided.logits, vocab, stride, strided.params);
  EXPECT_EQ(got.flags, 0u);
  EXPECT_EQ(CompareWithHost(strided, vocab, stride, got), 0);
}

// The same batch twice gives the same tokens, and each row alone gives its batch token.
TEST_F(SamplingGpuTest, DeterministicAndIndependentOfTheBatch) {
  const int64_t vocab = 32000;
  const Batch b = BuildBatch(vocab, 1, 77);
  const GpuResult first = RunGpu(b.logits, vocab, vocab, b.params);
  const GpuResult second = RunGpu(b.logits, vocab, vocab, b.params);
  EXPECT_EQ(first.tokens, second.tokens);
  for (size_t r = 0; r < b.params.size(); r += 7) {
    const std::vector<float> row(b.logits.begin() + r * vocab, b.logits.begin() + (r + 1) * vocab);
    const GpuResult alone = RunGpu(row, vocab, vocab, {b.params[r]});
    EXPECT_EQ(alone.tokens[0], first.tokens[r]) << "row " << r << " (" << b.labels[r] << ")";
  }
}

// N draws of one row (counters 0..N-1) against the host's filtered distribution.
TEST_F(SamplingGpuTest, DrawsFollowTheHostDistribution) {
  const int64_t vocab = 64, draws = 50000;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> gauss(0.0f, 1.5f);
  std::vector<float> row(vocab);
  for (float& l : row) l = gauss(rng);
  kernels::SamplingRow base = Params(0.9f, 20, 0.9f, 0.01f);
  base.seed = 7;

  sampling::SamplingParams sp;
  sp.temperature = base.temperature;
  sp.top_k = base.top_k;
  sp.top_p = base.top_p;
  sp.min_p = base.min_p;
  sp.seed = base.seed;
  sampling::Sampler sampler;
  auto dist = sampler.Distribution(row, sp, {});
  ASSERT_TRUE(dist.ok()) << dist.status();
  std::vector<double> want(vocab, 0.0);
  for (const sampling::TokenProb& t : *dist) want[t.token] = t.prob;
  ASSERT_GT(dist->size(), 3u);  // a distribution worth testing

  Batch b;
  for (int64_t i = 0; i < draws; ++i) {
    kernels::SamplingRow p = base;
    p.counter = static_cast<uint64_t>(i);
    b.logits.insert(b.logits.end(), row.begin(), row.end());
    b.params.push_back(p);
    b.labels.push_back("draw " + std::to_string(i));
  }
  const GpuResult got = RunGpu(b.logits, vocab, vocab, b.params);
  EXPECT_EQ(got.flags, 0u);
  std::vector<int64_t> count(vocab, 0);
  for (int32_t t : got.tokens) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    ++count[t];
  }
  for (int64_t t = 0; t < vocab; ++t) {
    if (want[t] == 0.0) {
      EXPECT_EQ(count[t], 0) << "token " << t << " is outside the host's support";
      continue;
    }
    const double freq = static_cast<double>(count[t]) / draws;
    const double sigma = std::sqrt(want[t] * (1 - want[t]) / draws);
    EXPECT_LE(std::fabs(freq - want[t]), 5 * sigma + 1.0 / draws)
        << "token " << t << ": frequency " << freq << ", probability " << want[t];
  }
  EXPECT_EQ(CompareWithHost(b, vocab, vocab, got), 0);
}

// A NaN, a +inf or no finite logit sets kErrorSampling and gives token 0 for that row only.
TEST_F(SamplingGpuTest, BadRowsSetTheErrorFlag) {
  const int64_t vocab = 3001;
  Batch b;
  std::mt19937_64 rng(11);
  const std::vector<kernels::SamplingRow> params = {Params(0.8f, 40), Params(1.0f), Params(0.0f),
                                                    Params(1.0f, 0, 0.9f), Params(0.0f)};
  for (const kernels::SamplingRow& base : params) {
    kernels::SamplingRow p = base;
    p.seed = rng();
    const size_t at = b.logits.size();
    b.logits.resize(at + vocab);
    FillRow(Pattern::kGaussian, rng, b.logits.data() + at, vocab);
    b.params.push_back(p);
    b.labels.push_back("row " + std::to_string(b.params.size() - 1));
  }
  b.logits[1 * vocab + 1234] = std::numeric_limits<float>::quiet_NaN();  // sampled row
  b.logits[2 * vocab + 7] = kInf;                                        // greedy row
  std::fill(b.logits.begin() + 3 * vocab, b.logits.begin() + 4 * vocab, -kInf);
  const GpuResult got = RunGpu(b.logits, vocab, vocab, b.params);
  EXPECT_EQ(got.flags, static_cast<uint32_t>(kErrorSampling));
  for (int r : {1, 2, 3}) {
    EXPECT_EQ(got.tokens[r], 0) << "row " << r;
    EXPECT_EQ(HostToken({b.logits.data() + r * vocab, static_cast<size_t>(vocab)}, b.params[r]), -1)
        << "the host rejects row " << r << " too";
  }
  for (int r : {0, 4}) {
    EXPECT_EQ(got.tokens[r],
              HostToken({b.logits.data() + r * vocab, static_cast<size_t>(vocab)}, b.params[r]))
        << "row " << r;
  }
}

// ---------------------------------------------------------------------------------------------
// Host-only cases: they need no GPU.

TEST(SamplingHostTest, WorkspaceHoldsAKeyAndAnIdPerTokenPerRow) {
  for (int64_t rows : {1, 3, 64}) {
    for (int64_t vocab : {1, 7, 1000, 151936}) {
      const size_t bytes = SamplingWorkspaceBytes(rows, vocab);
      EXPECT_GE(bytes, static_cast<size_t>(rows * vocab * 8));
      EXPECT_EQ(bytes % 16, 0u);
    }
  }
  EXPECT_EQ(SamplingWorkspaceBytes(0, 1000), 0u);
}

// Argument checks return before touching the device.
TEST(SamplingHostTest, BadArgumentsAreInvalidValue) {
  alignas(16) static char fake_workspace[16];
  SamplingArgs a;
  a.rows = 0;
  a.vocab = 10;
  a.workspace = fake_workspace;
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaSuccess);  // an empty batch is a no-op
  a.rows = 2;
  a.workspace = nullptr;
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
  a.workspace = fake_workspace + 4;  // not 16-aligned
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
  a.workspace = fake_workspace;
  a.vocab = int64_t{1} << 31;
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
  a.vocab = 0;
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
  a.vocab = 10;
  a.logits_stride = 9;  // rows overlap
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
  a.logits_stride = 0;  // logits, params and tokens are null
  EXPECT_EQ(LaunchSampling(a, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace expertmesh::cuda
