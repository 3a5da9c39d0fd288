// Scheduler scripts: each test states, step by step, what is admitted, scheduled, preempted
// and finished, and checks the generated tokens against the cache-free Reference().
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/scheduler/scheduler_harness.h"

namespace expertmesh::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr int64_t kVocab = 1000;

SchedulerConfig Config(int64_t budget, int32_t max_seqs = 16, int64_t max_len = 256) {
  return {.max_num_batched_tokens = budget,
          .max_num_seqs = max_seqs,
          .max_model_len = max_len,
          .vocab_size = kVocab};
}

TEST(SchedulerTest, ChunkedPrefillSplitsALongPromptUnderTheBudget) {
  SchedulerHarness h(32, 4, Config(8));
  ASSERT_TRUE(h.Submit("A", Prompt(0, 20), 3).ok());
  StepRecord s1 = h.Step();
  EXPECT_THAT(s1.admitted, ElementsAre("A"));
  EXPECT_THAT(s1.scheduled, ElementsAre(Pair("A", 8)));
  EXPECT_TRUE(s1.plan.sequences[0].is_prefill_chunk);
  EXPECT_FALSE(s1.plan.sequences[0].sample);
  EXPECT_THAT(h.Step().scheduled, ElementsAre(Pair("A", 8)));
  StepRecord s3 = h.Step();
  EXPECT_THAT(s3.scheduled, ElementsAre(Pair("A", 4)));
  EXPECT_TRUE(s3.plan.sequences[0].sample);
  EXPECT_THAT(s3.plan.sequences[0].positions.front(), 16);
  StepRecord s4 = h.Step();
  EXPECT_THAT(s4.scheduled, ElementsAre(Pair("A", 1)));
  EXPECT_FALSE(s4.plan.sequences[0].is_prefill_chunk);
  StepRecord s5 = h.Step();
  EXPECT_THAT(s5.finished, ElementsAre(Pair("A", FinishReason::kLength)));
  EXPECT_THAT(s5.running, IsEmpty());
  EXPECT_EQ(h.outputs["A"], Reference(Prompt(0, 20), 3, kVocab));
}

TEST(SchedulerTest, DecodesFirstThenPrefillChunksInArrivalOrder) {
  SchedulerHarness h(64, 4, Config(6));
  ASSERT_TRUE(h.Submit("A", Prompt(0, 3), 10).ok());
  EXPECT_THAT(h.Step().scheduled, ElementsAre(Pair("A", 3)));
  ASSERT_TRUE(h.Submit("B", Prompt(100, 10), 5).ok());
  ASSERT_TRUE(h.Submit("C", Prompt(200, 2), 5).ok());
  StepRecord s2 = h.Step();  // A's decode, then B takes the rest of the budget; C waits
  EXPECT_THAT(s2.scheduled, UnorderedElementsAre(Pair("A", 1), Pair("B", 5)));
  EXPECT_EQ(s2.plan.sequences[0].request_id, "A");
  EXPECT_THAT(s2.admitted, ElementsAre("B"));
  EXPECT_THAT(s2.waiting, ElementsAre("C"));
  StepRecord s3 = h.Step();
  EXPECT_THAT(s3.scheduled, UnorderedElementsAre(Pair("A", 1), Pair("B", 5)));
  EXPECT_THAT(s3.waiting, ElementsAre("C"));
  StepRecord s4 = h.Step();  // B now decodes too; C joins the running batch
  EXPECT_THAT(s4.scheduled, UnorderedElementsAre(Pair("A", 1), Pair("B", 1), Pair("C", 2)));
  EXPECT_THAT(s4.admitted, ElementsAre("C"));
  EXPECT_THAT(s4.running, ElementsAre("A", "B", "C"));
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["A"], Reference(Prompt(0, 3), 10, kVocab));
  EXPECT_EQ(h.outputs["B"], Reference(Prompt(100, 10), 5, kVocab));
  EXPECT_EQ(h.outputs["C"], Reference(Prompt(200, 2), 5, kVocab));
}

TEST(SchedulerTest, MaxNumSeqsCapsTheRunningBatch) {
  SchedulerHarness h(64, 4, Config(64, /*max_seqs=*/2));
  for (const char* id : {"A", "B", "C"}) ASSERT_TRUE(h.Submit(id, Prompt(id[0], 4), 2).ok());
  StepRecord s1 = h.Step();
  EXPECT_THAT(s1.admitted, ElementsAre("A", "B"));
  EXPECT_THAT(s1.waiting, ElementsAre("C"));
  StepRecord s2 = h.Step();  // A and B finish
  EXPECT_EQ(s2.finished.size(), 2u);
  StepRecord s3 = h.Step();
  EXPECT_THAT(s3.admitted, ElementsAre("C"));
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["C"], Reference(Prompt('C', 4), 2, kVocab));
}

TEST(SchedulerTest, PreemptsTheMostRecentlyAdmittedWhenThePoolRunsOut) {
  SchedulerHarness h(/*blocks=*/4, /*block_size=*/4, Config(64));
  ASSERT_TRUE(h.Submit("A", Prompt(0, 6), 8).ok());
  ASSERT_TRUE(h.Submit("B", Prompt(50, 6), 8).ok());
  EXPECT_THAT(h.Step().admitted, ElementsAre("A", "B"));  // 2 blocks each, pool full
  h.Step();                                               // positions 6
  h.Step();                                               // positions 7: blocks full
  StepRecord s4 = h.Step();  // A needs a third block: B gives its blocks back
  EXPECT_THAT(s4.preempted, ElementsAre("B"));
  EXPECT_THAT(s4.scheduled, ElementsAre(Pair("A", 1)));
  EXPECT_THAT(s4.running, ElementsAre("A"));
  EXPECT_THAT(s4.waiting, ElementsAre("B"));
  EXPECT_EQ(h.outputs["B"].size(), 3u);  // kept through the preemption
  h.RunToCompletion();
  EXPECT_EQ(h.scheduler().Stats().num_preemptions, 1);
  EXPECT_EQ(h.outputs["A"], Reference(Prompt(0, 6), 8, kVocab));
  // B recomputed prompt + its 3 tokens and continued exactly where it stopped.
  EXPECT_EQ(h.outputs["B"], Reference(Prompt(50, 6), 8, kVocab));
}

TEST(SchedulerTest, AbortFreesBlocksAtOnceForRunningAndWaitingRequests) {
  SchedulerHarness h(16, 4, Config(64, /*max_seqs=*/1));
  ASSERT_TRUE(h.Submit("A", Prompt(0, 9), 20).ok());
  ASSERT_TRUE(h.Submit("B", Prompt(9, 9), 20).ok());
  h.Step();
  EXPECT_EQ(h.kv().NumFreeBlocks(), 16 - 3);
  EXPECT_TRUE(h.scheduler().Abort("B").ok());  // waiting
  EXPECT_THAT(h.scheduler().WaitingIds(), IsEmpty());
  EXPECT_TRUE(h.scheduler().Abort("A").ok());  // running
  EXPECT_EQ(h.kv().NumFreeBlocks(), 16);
  EXPECT_FALSE(h.scheduler().HasWork());
  EXPECT_EQ(h.scheduler().Abort("A").code(), absl::StatusCode::kNotFound);
  h.CheckInvariants();
}

TEST(SchedulerTest, AbortBetweenScheduleAndOutputsIsIgnoredByTheStep) {
  SchedulerHarness h(16, 4, Config(64));
  ASSERT_TRUE(h.Submit("A", Prompt(0, 5), 4).ok());
  ASSERT_TRUE(h.Submit("B", Prompt(5, 5), 4).ok());
  StepPlan plan = h.scheduler().Schedule();
  ASSERT_EQ(plan.NumToSample(), 2);
  ASSERT_TRUE(h.scheduler().Abort("A").ok());
  std::vector<sampling::SampledToken> sampled = {{.token = 1}, {.token = 2}};
  auto updates = h.scheduler().ProcessStepOutputs(plan, sampled);
  ASSERT_TRUE(updates.ok()) << updates.status();
  ASSERT_EQ(updates->size(), 1u);
  EXPECT_EQ((*updates)[0].id, "B");
  EXPECT_EQ((*updates)[0].token.token, 2);
  h.CheckInvariants();
}

TEST(SchedulerTest, PrefixCacheHitsSkipTheCachedPromptAndGiveTheColdOutput) {
  SchedulerHarness h(64, 4, Config(64));
  const std::vector<int32_t> prompt = Prompt(0, 37);
  ASSERT_TRUE(h.Submit("cold", prompt, 5).ok());
  h.RunToCompletion();
  ASSERT_TRUE(h.Submit("warm", prompt, 5).ok());
  StepRecord s = h.Step();
  EXPECT_THAT(s.scheduled, ElementsAre(Pair("warm", 37 - 36)));  // 9 full blocks cached
  EXPECT_EQ(s.plan.sequences[0].positions.front(), 36);
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["warm"], h.outputs["cold"]);
  // A request sharing only the first 20 tokens reuses 5 blocks.
  std::vector<int32_t> other = prompt;
  other[21] = 999;
  ASSERT_TRUE(h.Submit("partial", other, 5).ok());
  EXPECT_THAT(h.Step().scheduled, ElementsAre(Pair("partial", 37 - 20)));
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["partial"], Reference(other, 5, kVocab));
  EXPECT_EQ(h.scheduler().Stats().num_prefix_hit_tokens, 36 + 20);
}

TEST(SchedulerTest, StopConditions) {
  const std::vector<int32_t> prompt = Prompt(3, 5);
  const std::vector<int32_t> ref = Reference(prompt, 6, kVocab);
  SchedulerConfig config = Config(64, 16, /*max_len=*/11);
  config.eos_token_ids = {ref[1]};
  SchedulerHarness h(16, 4, config);
  ASSERT_TRUE(h.Submit("eos", prompt, 6, /*ignore_eos=*/false).ok());
  ASSERT_TRUE(h.Submit("ignore", prompt, 6, /*ignore_eos=*/true).ok());
  GenerationRequest stop{.id = "stop_id", .prompt = prompt, .max_tokens = 6};
  stop.stop_token_ids = {ref[2]};
  stop.ignore_eos = true;
  ASSERT_TRUE(h.scheduler().Submit(stop).ok());
  std::map<std::string, FinishReason> finished;
  while (h.scheduler().HasWork()) {
    for (auto& [id, reason] : h.Step().finished) finished[id] = reason;
  }
  EXPECT_THAT(finished, UnorderedElementsAre(Pair("eos", FinishReason::kStop),
                                             Pair("stop_id", FinishReason::kStop),
                                             Pair("ignore", FinishReason::kLength)));
  EXPECT_EQ(h.outputs["eos"], std::vector<int32_t>(ref.begin(), ref.begin() + 2));
  EXPECT_EQ(h.outputs["stop_id"], std::vector<int32_t>(ref.begin(), ref.begin() + 3));
  EXPECT_EQ(h.outputs["ignore"], ref);  // 5 + 6 = the whole context of 11
}

// A request gives the same tokens alone and inside a batch of 16 mixed-length requests that
// share prefixes, with chunked prefill and preemption under a tight pool.
TEST(SchedulerTest, BatchingInvariance) {
  std::vector<std::pair<std::vector<int32_t>, int64_t>> requests;
  const std::vector<int32_t> system = Prompt(500, 16);
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> prompt = i % 2 == 0 ? system : std::vector<int32_t>{};
    std::vector<int32_t> tail = Prompt(37 * i, 1 + (i * 7) % 23);
    prompt.insert(prompt.end(), tail.begin(), tail.end());
    requests.push_back({prompt, 4 + (i * 5) % 17});
  }
  SchedulerHarness batch(/*blocks=*/24, /*block_size=*/4, Config(/*budget=*/24));
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(batch.Submit("r" + std::to_string(i), requests[i].first, requests[i].second).ok());
  }
  batch.RunToCompletion();
  EXPECT_GT(batch.scheduler().Stats().num_preemptions, 0);
  EXPECT_GT(batch.scheduler().Stats().num_prefix_hit_tokens, 0);
  for (int i = 0; i < 16; ++i) {
    SchedulerHarness alone(24, 4, Config(24));
    ASSERT_TRUE(alone.Submit("x", requests[i].first, requests[i].second).ok());
    alone.RunToCompletion();
    EXPECT_EQ(batch.outputs["r" + std::to_string(i)], alone.outputs["x"]) << i;
    EXPECT_EQ(alone.outputs["x"], Reference(requests[i].first, requests[i].second, kVocab));
  }
}

}  // namespace
}  // namespace expertmesh::scheduler
