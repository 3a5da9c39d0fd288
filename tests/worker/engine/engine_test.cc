// Engine: batching invariance (alone vs. 16 mixed-length requests), prefix-cache hits equal to
// cold runs, per-request validation errors that leave the batch alone, abort.
#include <map>

#include "gtest/gtest.h"
#include "tests/util/cpu_engine.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/engine/engine.h"

namespace expertmesh::engine {
namespace {

using scheduler::GenerationRequest;

std::vector<int32_t> Prompt(int64_t len, int64_t vocab, int seed) {
  std::vector<int32_t> p(len);
  for (int64_t i = 0; i < len; ++i) p[i] = static_cast<int32_t>((i * 7919 + seed * 104729) % vocab);
  return p;
}

GenerationRequest Greedy(std::string id, std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "tiny", "engine");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  std::unique_ptr<Engine> Make(bool prefix_caching = true, int64_t budget_tokens = 2048,
                               DType compute_dtype = DType::kF32) {
    EngineOptions o;
    o.compute_dtype = compute_dtype;
    o.block_size = 4;
    o.enable_prefix_caching = prefix_caching;
    o.max_num_batched_tokens = 64;  // forces chunked prefill
    o.max_model_len = 256;
    o.kv_cache_bytes = 16u << 20;
    // Batch-invariant: these tests compare a request alone with the same request in a batch
    // (the AMX family's default puts products of 1-3 tokens per weight on another kernel).
    auto e = expertmesh::testing::LoadCpuEngine(dir_, o, /*threads=*/2, /*batch_invariant=*/true);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  // Runs until idle; tokens per request id.
  static std::map<std::string, std::vector<int32_t>> RunAll(Engine& e) {
    std::map<std::string, std::vector<int32_t>> out;
    for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const RequestOutput& o : *r) out[o.id].push_back(o.token.token);
    }
    return out;
  }
  std::string dir_;
};

TEST_F(EngineTest, SameGreedyTokensAloneAndInABatchOf16) {
  auto batch = Make();
  ASSERT_NE(batch, nullptr);
  const int64_t vocab = batch->config().vocab_size;
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    reqs.push_back(Greedy("r" + std::to_string(i), Prompt(3 + 7 * i, vocab, i), 6 + i % 5));
    ASSERT_TRUE(batch->AddRequest(reqs.back()).ok());
  }
  auto together = RunAll(*batch);
  for (int i = 0; i < 16; i += 3) {
    auto alone_engine = Make(/*prefix_caching=*/false);
    ASSERT_TRUE(alone_engine->AddRequest(reqs[i]).ok());
    auto alone = RunAll(*alone_engine);
    EXPECT_EQ(alone[reqs[i].id], together[reqs[i].id]) << reqs[i].id;
    EXPECT_EQ(static_cast<int64_t>(alone[reqs[i].id].size()), reqs[i].max_tokens);
  }
}

// The same in bf16 compute, comparing each token's raw-logit log-probability bit for bit (a
// change anywhere in the logits changes it): the products then run on the family's bf16 kernels
// (on a CPU with AMX and batch_invariant, the tiles for every token count), which must not depend
// on the batch either. Without batch_invariant (tiles from 4 tokens per weight) this fails there.
TEST_F(EngineTest, SameLogprobsAloneAndInABatchOf16InBf16) {
  const auto run = [](Engine& e) {
    std::map<std::string, std::vector<std::pair<int32_t, float>>> out;
    for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const RequestOutput& o : *r) out[o.id].emplace_back(o.token.token, o.token.logprob);
    }
    return out;
  };
  auto batch = Make(/*prefix_caching=*/true, 2048, DType::kBF16);
  ASSERT_NE(batch, nullptr);
  const int64_t vocab = batch->config().vocab_size;
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    reqs.push_back(Greedy("r" + std::to_string(i), Prompt(3 + 7 * i, vocab, i), 6 + i % 5));
    reqs.back().sampling.logprobs = true;
    ASSERT_TRUE(batch->AddRequest(reqs.back()).ok());
  }
  auto together = run(*batch);
  for (int i = 0; i < 16; i += 3) {
    auto alone_engine = Make(/*prefix_caching=*/false, 2048, DType::kBF16);
    ASSERT_TRUE(alone_engine->AddRequest(reqs[i]).ok());
    auto alone = run(*alone_engine);
    EXPECT_EQ(alone[reqs[i].id], together[reqs[i].id]) << reqs[i].id;
  }
}

TEST_F(EngineTest, PrefixCacheHitGivesTheColdOutput) {
  auto e = Make();
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = Prompt(37, e->config().vocab_size, 9);
  ASSERT_TRUE(e->AddRequest(Greedy("cold", prompt, 8)).ok());
  auto cold = RunAll(*e);
  ASSERT_TRUE(e->AddRequest(Greedy("warm", prompt, 8)).ok());
  auto warm = RunAll(*e);
  EXPECT_GT(e->Stats().scheduler.num_prefix_hit_tokens, 0);
  EXPECT_EQ(cold["cold"], warm["warm"]);
}

TEST_F(EngineTest, BadRequestsAreRefusedAndTheBatchIsUnaffected) {
  auto ref_engine = Make();
  const int64_t vocab = ref_engine->config().vocab_size;
  const GenerationRequest good = Greedy("good", Prompt(11, vocab, 1), 10);
  ASSERT_TRUE(ref_engine->AddRequest(good).ok());
  auto ref = RunAll(*ref_engine);

  auto e = Make();
  ASSERT_TRUE(e->AddRequest(good).ok());
  ASSERT_TRUE(e->Step().ok());  // in flight
  std::vector<GenerationRequest> bad;
  bad.push_back(Greedy("empty", {}, 4));
  bad.push_back(Greedy("too-long", Prompt(300, vocab, 2), 4));
  bad.push_back(Greedy("zero", Prompt(5, vocab, 3), 0));
  bad.push_back(Greedy("huge", Prompt(5, vocab, 3), 1 << 30));
  GenerationRequest temp = Greedy("temp", Prompt(5, vocab, 3), 4);
  temp.sampling.temperature = -1;
  bad.push_back(temp);
  GenerationRequest topp = Greedy("topp", Prompt(5, vocab, 3), 4);
  topp.sampling.top_p = 1.5f;
  bad.push_back(topp);
  bad.push_back(Greedy("ids", {1, static_cast<int32_t>(vocab), 2}, 4));
  bad.push_back(Greedy("neg", {1, -3, 2}, 4));
  for (const GenerationRequest& r : bad) {
    absl::Status s = e->AddRequest(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << r.id << ": " << s;
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_EQ(e->AddRequest(good).code(), absl::StatusCode::kAlreadyExists);
  auto rest = RunAll(*e);
  std::vector<int32_t> got = rest["good"];
  ASSERT_EQ(got.size() + 1, ref["good"].size());  // its first token came from the Step above
  EXPECT_TRUE(std::equal(got.begin(), got.end(), ref["good"].begin() + 1));
}

TEST_F(EngineTest, AbortFreesBlocksAtOnce) {
  auto e = Make();
  const int64_t vocab = e->config().vocab_size;
  const int32_t free_before = e->Stats().scheduler.kv.free_blocks;
  ASSERT_TRUE(e->AddRequest(Greedy("a", Prompt(30, vocab, 4), 50)).ok());
  ASSERT_TRUE(e->AddRequest(Greedy("b", Prompt(20, vocab, 5), 5)).ok());
  auto first = e->Step();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(e->Abort("a").ok());
  EXPECT_EQ(e->Abort("a").code(), absl::StatusCode::kNotFound);
  auto rest = RunAll(*e);
  EXPECT_FALSE(rest.contains("a"));
  size_t b_tokens = rest["b"].size();
  for (const RequestOutput& o : *first) b_tokens += o.id == "b";
  EXPECT_EQ(b_tokens, 5u);
  EXPECT_EQ(e->Stats().scheduler.kv.free_blocks, free_before);
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  auto run = [&] {
    auto e = Make();
    GenerationRequest r = Greedy("s", Prompt(9, e->config().vocab_size, 6), 12);
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 1234;
    EXPECT_TRUE(e->AddRequest(r).ok());
    return RunAll(*e)["s"];
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace expertmesh::engine
