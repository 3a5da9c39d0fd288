// Prompt logprobs (GenerationRequest::prompt_logprobs): every prompt token i >= 1 scored under
// the logits of position i - 1 equals a log_softmax of the model's logits for the whole prompt
// computed in one forward pass; with chunked prefill, with another request in the batch (whose
// tokens do not change), with the prompt already in the prefix cache, on a device backend that
// copies the logits rows to the host, and after a preemption.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/cpu_engine.h"
#include "tests/util/fake_device_backend.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/engine/engine.h"
#include "worker/models/forward_batch.h"

namespace expertmesh::engine {
namespace {

using sampling::PromptLogprob;
using scheduler::GenerationRequest;

std::vector<int32_t> Prompt(int64_t len, int64_t vocab, int seed) {
  std::vector<int32_t> p(len);
  for (int64_t i = 0; i < len; ++i) p[i] = static_cast<int32_t>((i * 7919 + seed * 104729) % vocab);
  return p;
}

GenerationRequest Greedy(std::string id, std::vector<int32_t> prompt, int64_t max_tokens,
                         std::optional<int32_t> prompt_logprobs = std::nullopt) {
  GenerationRequest r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.prompt_logprobs = prompt_logprobs;
  return r;
}

struct Result {
  std::vector<int32_t> tokens;
  std::vector<PromptLogprob> prompt_logprobs;
  int first_token_outputs = 0;  // outputs that carried prompt logprobs (must be the first)
  std::optional<int64_t> cached_prompt_tokens;
};

std::map<std::string, Result> RunAll(Engine& e) {
  std::map<std::string, Result> out;
  for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
    absl::StatusOr<std::vector<RequestOutput>> r = e.Step();
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    for (const RequestOutput& o : *r) {
      Result& res = out[o.id];
      if (res.tokens.empty()) {
        res.prompt_logprobs = o.prompt_logprobs;
        res.cached_prompt_tokens = o.cached_prompt_tokens;
      } else {
        EXPECT_TRUE(o.prompt_logprobs.empty()) << o.id << " token " << res.tokens.size();
      }
      res.tokens.push_back(o.token.token);
    }
  }
  return out;
}

EngineOptions Options(int64_t budget, int64_t prompt_rows) {
  EngineOptions o;
  o.compute_dtype = DType::kF32;
  o.block_size = 4;
  o.max_num_batched_tokens = budget;
  o.max_prompt_logprob_tokens = prompt_rows;
  o.max_model_len = 256;
  o.kv_cache_bytes = 16u << 20;
  return o;
}

// The reference: one forward pass over the whole prompt with every position's logits (the
// golden tests' path), then log_softmax in double, rank and top-k by a full sort.
std::vector<PromptLogprob> Reference(models::Model& m, kernels::Backend& b,
                                     const std::vector<int32_t>& prompt, int32_t k) {
  const int32_t blocks = static_cast<int32_t>((prompt.size() + 3) / 4);
  auto kv = models::AllocateKvCache(b, m.kv_cache_spec(), blocks, 4);
  EXPECT_TRUE(kv.ok()) << kv.status();
  const std::vector<int32_t> table = models::testing::Blocks(0, blocks);
  const models::SequenceChunk chunk{.tokens = prompt,
                                    .start_pos = 0,
                                    .block_table = table,
                                    .logits = models::SequenceChunk::Logits::kAll};
  auto batch = models::MakeForwardBatch(std::span(&chunk, 1), 4);
  EXPECT_TRUE(batch.ok()) << batch.status();
  const int64_t vocab = m.config().vocab_size;
  auto logits = kernels::Tensor::Empty(DType::kF32, {static_cast<int64_t>(prompt.size()), vocab});
  EXPECT_TRUE(logits.ok());
  absl::Status s = m.Forward(*batch, *kv, *logits);
  EXPECT_TRUE(s.ok()) << s;
  std::vector<PromptLogprob> out;
  for (size_t i = 1; i < prompt.size(); ++i) {
    const float* row = logits->data<float>() + (i - 1) * vocab;
    double max = row[0], sum = 0;
    for (int64_t v = 0; v < vocab; ++v) max = std::max<double>(max, row[v]);
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
    const double lse = max + std::log(sum);
    std::vector<int32_t> order(vocab);
    for (int64_t v = 0; v < vocab; ++v) order[v] = static_cast<int32_t>(v);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t c) { return row[a] > row[c]; });
    PromptLogprob p{.token = prompt[i], .logprob = static_cast<float>(row[prompt[i]] - lse)};
    p.rank = 1 + static_cast<int32_t>(
                     std::count_if(row, row + vocab, [&](float l) { return l > row[prompt[i]]; }));
    for (int32_t j = 0; j < k; ++j) {
      p.top_logprobs.push_back({order[j], static_cast<float>(row[order[j]] - lse)});
    }
    out.push_back(std::move(p));
  }
  return out;
}

void ExpectNear(const std::vector<PromptLogprob>& got, const std::vector<PromptLogprob>& want,
                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(what + " prompt token " + std::to_string(i + 1));
    EXPECT_EQ(got[i].token, want[i].token);
    // The chunked engine and the one-shot reference sum attention in other orders: fp32 noise.
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-4);
    EXPECT_EQ(got[i].rank, want[i].rank);
    ASSERT_EQ(got[i].top_logprobs.size(), want[i].top_logprobs.size());
    for (size_t j = 0; j < got[i].top_logprobs.size(); ++j) {
      EXPECT_EQ(got[i].top_logprobs[j].token, want[i].top_logprobs[j].token) << "top " << j;
      EXPECT_NEAR(got[i].top_logprobs[j].logprob, want[i].top_logprobs[j].logprob, 1e-4);
    }
  }
}

class PromptLogprobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir =
        models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "tiny", "prompt-logprobs");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    ref_engine_ = Make(Options(64, 256));
    ASSERT_NE(ref_engine_, nullptr);
    vocab_ = ref_engine_->config().vocab_size;
  }
  std::unique_ptr<Engine> Make(const EngineOptions& o) {
    auto e = expertmesh::testing::LoadCpuEngine(dir_, o, /*threads=*/2);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  std::vector<PromptLogprob> Ref(const std::vector<int32_t>& prompt, int32_t k) {
    return Reference(ref_engine_->model(), ref_engine_->backend(), prompt, k);
  }
  std::string dir_;
  std::unique_ptr<Engine> ref_engine_;  // its model computes the references
  int64_t vocab_ = 0;
};

// Budgets: the prompt in one step; chunks of 7 prompt-logprob rows; chunks of a 16-token budget.
TEST_F(PromptLogprobsTest, EqualLogSoftmaxOfFullPromptLogitsAloneAndBatched) {
  const std::vector<int32_t> prompt = Prompt(41, vocab_, 3);
  const std::vector<int32_t> other = Prompt(23, vocab_, 8);
  const std::vector<PromptLogprob> want = Ref(prompt, 5);
  // The tokens without prompt logprobs anywhere.
  auto plain_engine = Make(Options(64, 256));
  ASSERT_TRUE(plain_engine->AddRequest(Greedy("a", prompt, 6)).ok());
  ASSERT_TRUE(plain_engine->AddRequest(Greedy("b", other, 9)).ok());
  auto plain = RunAll(*plain_engine);

  for (auto [budget, rows] : {std::pair<int64_t, int64_t>{64, 256}, {64, 7}, {16, 256}}) {
    const std::string what = "budget " + std::to_string(budget) + " rows " + std::to_string(rows);
    auto alone = Make(Options(budget, rows));
    ASSERT_TRUE(alone->AddRequest(Greedy("a", prompt, 6, 5)).ok());
    auto a = RunAll(*alone);
    ExpectNear(a["a"].prompt_logprobs, want, what + " alone");
    EXPECT_EQ(a["a"].tokens, plain["a"].tokens) << what;

    auto batched = Make(Options(budget, rows));
    ASSERT_TRUE(batched->AddRequest(Greedy("b", other, 9)).ok());
    ASSERT_TRUE(batched->AddRequest(Greedy("a", prompt, 6, 5)).ok());
    auto t = RunAll(*batched);
    ExpectNear(t["a"].prompt_logprobs, want, what + " batched");
    EXPECT_TRUE(t["b"].prompt_logprobs.empty());
    EXPECT_EQ(t["a"].tokens, plain["a"].tokens) << what;
    EXPECT_EQ(t["b"].tokens, plain["b"].tokens) << what << ": the other request changed";
  }
}

TEST_F(PromptLogprobsTest, ACachedPrefixIsRecomputedForPromptLogprobs) {
  const std::vector<int32_t> prompt = Prompt(37, vocab_, 9);
  auto e = Make(Options(64, 256));
  ASSERT_TRUE(e->AddRequest(Greedy("cold", prompt, 4)).ok());
  auto cold = RunAll(*e);
  const int64_t hits = e->Stats().scheduler.num_prefix_hit_tokens;

  ASSERT_TRUE(e->AddRequest(Greedy("scored", prompt, 4, 2)).ok());
  auto scored = RunAll(*e);
  EXPECT_EQ(scored["scored"].cached_prompt_tokens, 0);
  EXPECT_EQ(e->Stats().scheduler.num_prefix_hit_tokens, hits) << "no cached block was reused";
  ExpectNear(scored["scored"].prompt_logprobs, Ref(prompt, 2), "after a cached run");
  EXPECT_EQ(scored["scored"].tokens, cold["cold"].tokens);

  // The cache still serves requests that do not ask.
  ASSERT_TRUE(e->AddRequest(Greedy("warm", prompt, 4)).ok());
  auto warm = RunAll(*e);
  EXPECT_GT(*warm["warm"].cached_prompt_tokens, 0);
  EXPECT_EQ(warm["warm"].tokens, cold["cold"].tokens);
}

TEST_F(PromptLogprobsTest, ZeroAlternativesOneTokenPromptsAndBadValues) {
  auto e = Make(Options(64, 256));
  const std::vector<int32_t> prompt = Prompt(9, vocab_, 4);
  ASSERT_TRUE(e->AddRequest(Greedy("zero", prompt, 2, 0)).ok());
  ASSERT_TRUE(e->AddRequest(Greedy("one", {5}, 2, 3)).ok());
  auto got = RunAll(*e);
  ExpectNear(got["zero"].prompt_logprobs, Ref(prompt, 0), "k = 0");
  EXPECT_TRUE(got["one"].prompt_logprobs.empty()) << "token 0 has no logprob";
  EXPECT_EQ(got["one"].tokens.size(), 2u);

  for (int32_t bad : {-1, sampling::kMaxTopLogprobs + 1}) {
    absl::Status s = e->AddRequest(Greedy("bad", prompt, 2, bad));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("prompt_logprobs"), std::string::npos) << s;
  }
  EXPECT_TRUE(e->AddRequest(Greedy("max", prompt, 1, sampling::kMaxTopLogprobs)).ok());
  EXPECT_EQ(RunAll(*e)["max"].prompt_logprobs.front().top_logprobs.size(),
            static_cast<size_t>(sampling::kMaxTopLogprobs));
}

TEST_F(PromptLogprobsTest, DeviceLogitsRowsComeToTheHostAndScoreTheSame) {
  auto fake = expertmesh::testing::FakeDeviceBackend::Create({.num_threads = 2});
  ASSERT_TRUE(fake.ok()) << fake.status();
  expertmesh::testing::FakeDeviceBackend* device = fake->get();
  auto e = Engine::Load(dir_, *std::move(fake), Options(16, 5));
  ASSERT_TRUE(e.ok()) << e.status();
  const std::vector<int32_t> prompt = Prompt(30, vocab_, 2);
  ASSERT_TRUE((*e)->AddRequest(Greedy("b", Prompt(12, vocab_, 6), 5)).ok());
  ASSERT_TRUE((*e)->AddRequest(Greedy("a", prompt, 3, 4)).ok());
  device->ResetCounters();
  auto got = RunAll(**e);
  ExpectNear(got["a"].prompt_logprobs, Ref(prompt, 4), "fake device");
  // 29 scored rows of [vocab] f32 crossed, plus token ids: far less than a full-vocab copy per
  // prompt token twice over.
  EXPECT_GE(device->counters().bytes_to_host, 29u * vocab_ * sizeof(float));
  EXPECT_LT(device->counters().bytes_to_host, 2u * 29u * vocab_ * sizeof(float));
}

TEST_F(PromptLogprobsTest, APreemptedRequestScoresEachPromptTokenOnce) {
  // A pool of 10 blocks of 4 tokens. "long" decodes to 40 tokens (the whole pool) while
  // "scored" prefills its 30-token prompt 3 tokens a step: "scored" runs out of room mid-prompt,
  // is preempted (the most recently admitted), and recomputes its prompt later, scoring only
  // the positions it had not scored yet.
  EngineOptions o = Options(8, 3);
  auto probe = Make(o);
  const uint64_t bytes_per_block = probe->kv_cache_bytes() / probe->num_kv_blocks();
  o.kv_cache_bytes = bytes_per_block * 10;
  auto e = Make(o);
  ASSERT_EQ(e->num_kv_blocks(), 10);
  const std::vector<int32_t> prompt = Prompt(30, vocab_, 12);
  ASSERT_TRUE(e->AddRequest(Greedy("long", Prompt(4, vocab_, 11), 36)).ok());
  ASSERT_TRUE(e->AddRequest(Greedy("scored", prompt, 4, 2)).ok());
  auto got = RunAll(*e);
  EXPECT_GT(e->Stats().scheduler.num_preemptions, 0);
  ExpectNear(got["scored"].prompt_logprobs, Ref(prompt, 2), "preempted");
  EXPECT_EQ(got["long"].tokens.size(), 36u);
  EXPECT_EQ(got["scored"].tokens.size(), 4u);
}

}  // namespace
}  // namespace expertmesh::engine
