// The scheduler's side of constrained decoding, with a tiny hand-made vocabulary: a request's
// grammar matcher rides with its sampling sequences (with its stop ids and tokens left), advances
// by every sampled token, treats a stop id as an end, cuts a request whose grammar refuses a
// token (kLength), and requests that cannot work with a grammar are refused at Submit.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/engine/compiled_grammar.h"
#include "model/grammar/engine/token_vocabulary.h"
#include "model/grammar/gbnf.h"
#include "tests/worker/scheduler/scheduler_harness.h"

namespace expertmesh::scheduler {
namespace {

using ::testing::HasSubstr;

// Ids: 0 "a", 1 "b", 2 "ab", 3 eos, 4 a special stop token; 5..7 padding rows of lm_head.
constexpr int32_t kA = 0, kB = 1, kAb = 2, kEos = 3, kStop = 4;
constexpr int64_t kVocab = 8;

std::shared_ptr<const grammar::CompiledGrammar> Compile(const std::string& gbnf,
                                                        int32_t vocab_size = kVocab) {
  auto vocab = grammar::TokenVocabulary::Create(
      {"a", "b", "ab", "", ""}, {false, false, false, true, true}, {kEos}, vocab_size);
  EXPECT_TRUE(vocab.ok()) << vocab.status();
  auto g = grammar::ParseGbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status();
  auto compiled = grammar::CompiledGrammar::Compile(*g, *vocab);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  return compiled.ok() ? *compiled : nullptr;
}

class SchedulerGrammarTest : public ::testing::Test {
 protected:
  SchedulerGrammarTest()
      : h_(/*blocks=*/32, /*block_size=*/4,
           {.max_num_batched_tokens = 64,
            .max_num_seqs = 4,
            .max_model_len = 12,
            .vocab_size = kVocab,
            .eos_token_ids = {kEos}}) {}

  GenerationRequest Request(const std::string& id, int64_t max_tokens) {
    GenerationRequest r;
    r.id = id;
    r.prompt = {kA, kB, kA};
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.grammar = Compile(R"(root ::= "ab" "b"*)");
    return r;
  }

  // Schedules a step and applies `token` to every sampling sequence of it.
  std::vector<RequestUpdate> StepWith(int32_t token, StepPlan* plan_out = nullptr) {
    StepPlan plan = h_.scheduler().Schedule();
    std::vector<sampling::SampledToken> sampled(plan.NumToSample(), {.token = token});
    auto updates = h_.scheduler().ProcessStepOutputs(plan, sampled);
    EXPECT_TRUE(updates.ok()) << updates.status();
    if (plan_out != nullptr) *plan_out = std::move(plan);
    return updates.ok() ? *std::move(updates) : std::vector<RequestUpdate>{};
  }

  SchedulerHarness h_;
};

TEST_F(SchedulerGrammarTest, SamplingSequencesCarryTheMatcherAndTheTokensLeft) {
  GenerationRequest r = Request("g", 5);
  r.stop_token_ids = {kStop};
  ASSERT_TRUE(h_.scheduler().Submit(r).ok());
  ASSERT_TRUE(h_.scheduler().Submit({.id = "free", .prompt = {kA}, .max_tokens = 3}).ok());
  StepPlan plan = h_.scheduler().Schedule();
  ASSERT_EQ(plan.sequences.size(), 2u);
  const ScheduledSequence& g = plan.sequences[0];
  ASSERT_NE(g.matcher, nullptr);
  EXPECT_FALSE(g.matcher->CanTerminate());
  EXPECT_EQ(g.matcher->MinBytesToComplete(), 2);
  EXPECT_THAT(g.stop_token_ids, ::testing::ElementsAre(kStop));
  EXPECT_EQ(g.tokens_left, 5);  // max_tokens 5 before the context (12 - 3 = 9) binds
  EXPECT_EQ(plan.sequences[1].matcher, nullptr);
  std::vector<sampling::SampledToken> sampled = {{.token = kAb}, {.token = kA}};
  ASSERT_TRUE(h_.scheduler().ProcessStepOutputs(plan, sampled).ok());
  // The matcher advanced by "ab": the grammar may end now.
  plan = h_.scheduler().Schedule();
  ASSERT_NE(plan.sequences[0].matcher, nullptr);
  EXPECT_TRUE(plan.sequences[0].matcher->CanTerminate());
  EXPECT_EQ(plan.sequences[0].tokens_left, 4);
}

TEST_F(SchedulerGrammarTest, TokensLeftAreBoundByTheContext) {
  GenerationRequest r = Request("g", 9);  // the whole context: 3 + 9 = 12
  ASSERT_TRUE(h_.scheduler().Submit(r).ok());
  StepPlan plan;
  StepWith(kA, &plan);
  EXPECT_EQ(plan.sequences[0].tokens_left, 9);
  StepWith(kB, &plan);
  EXPECT_EQ(plan.sequences[0].tokens_left, 8);
}

TEST_F(SchedulerGrammarTest, EosAcceptedByTheGrammarStops) {
  ASSERT_TRUE(h_.scheduler().Submit(Request("g", 8)).ok());
  EXPECT_EQ(StepWith(kAb).front().finish, FinishReason::kNone);
  const std::vector<RequestUpdate> last = StepWith(kEos);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last.front().finish, FinishReason::kStop);
  EXPECT_FALSE(h_.scheduler().HasWork());
}

TEST_F(SchedulerGrammarTest, AStopIdEndsTheRequestAsAnEos) {
  GenerationRequest r = Request("g", 8);
  r.stop_token_ids = {kStop};
  ASSERT_TRUE(h_.scheduler().Submit(r).ok());
  StepWith(kAb);
  const std::vector<RequestUpdate> last = StepWith(kStop);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last.front().finish, FinishReason::kStop);
}

TEST_F(SchedulerGrammarTest, ATokenTheGrammarRefusesCutsOnlyThatRequest) {
  ASSERT_TRUE(h_.scheduler().Submit(Request("g", 8)).ok());
  ASSERT_TRUE(h_.scheduler().Submit({.id = "free", .prompt = {kA}, .max_tokens = 3}).ok());
  StepPlan plan = h_.scheduler().Schedule();
  // "b" cannot start "ab": the grammar refuses it; the other request goes on.
  std::vector<sampling::SampledToken> sampled = {{.token = kB}, {.token = kB}};
  auto updates = h_.scheduler().ProcessStepOutputs(plan, sampled);
  ASSERT_TRUE(updates.ok());
  ASSERT_EQ(updates->size(), 2u);
  EXPECT_EQ((*updates)[0].id, "g");
  EXPECT_EQ((*updates)[0].finish, FinishReason::kLength);
  EXPECT_EQ((*updates)[1].finish, FinishReason::kNone);
  EXPECT_THAT(h_.scheduler().RunningIds(), ::testing::ElementsAre("free"));
}

TEST_F(SchedulerGrammarTest, RefusesIgnoreEosAndAnotherVocabularySize) {
  GenerationRequest ignore = Request("ignore", 4);
  ignore.ignore_eos = true;
  absl::Status s = h_.scheduler().Submit(ignore);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("ignore_eos cannot be combined with a grammar"));
  GenerationRequest other = Request("other", 4);
  other.grammar = Compile(R"(root ::= "a")", /*vocab_size=*/16);
  s = h_.scheduler().Submit(other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("grammar compiled for a vocabulary of 16 tokens"));
  EXPECT_FALSE(h_.scheduler().HasWork());
}

}  // namespace
}  // namespace expertmesh::scheduler
