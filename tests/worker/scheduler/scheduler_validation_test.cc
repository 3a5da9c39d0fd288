// Bad requests are refused at Submit with a clear message and affect nothing else.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/worker/scheduler/scheduler_harness.h"

namespace expertmesh::scheduler {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kVocab = 1000;

struct BadRequest {
  std::string name;
  GenerationRequest request;
  std::string message;
};
void PrintTo(const BadRequest& b, std::ostream* os) { *os << b.name; }

GenerationRequest Good() { return {.id = "bad", .prompt = Prompt(0, 10), .max_tokens = 8}; }
GenerationRequest With(void (*edit)(GenerationRequest&)) {
  GenerationRequest r = Good();
  edit(r);
  return r;
}

class SchedulerValidationTest : public ::testing::TestWithParam<BadRequest> {};

TEST_P(SchedulerValidationTest, IsRefusedAndTheBatchRunsOnUnchanged) {
  SchedulerHarness h(
      /*blocks=*/32, /*block_size=*/4,
      {.max_num_batched_tokens = 16, .max_num_seqs = 4, .max_model_len = 64, .vocab_size = kVocab});
  ASSERT_TRUE(h.Submit("good", Prompt(7, 20), 10).ok());
  h.Step();
  const auto running = h.scheduler().RunningIds();
  const int32_t free_blocks = h.kv().NumFreeBlocks();
  absl::Status status = h.scheduler().Submit(GetParam().request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(GetParam().message));
  EXPECT_EQ(h.scheduler().RunningIds(), running);
  EXPECT_TRUE(h.scheduler().WaitingIds().empty());
  EXPECT_EQ(h.kv().NumFreeBlocks(), free_blocks);
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["good"], Reference(Prompt(7, 20), 10, kVocab));
}

INSTANTIATE_TEST_SUITE_P(
    All, SchedulerValidationTest,
    ::testing::Values(
        BadRequest{"empty_id", With([](auto& r) { r.id.clear(); }), "empty request id"},
        BadRequest{"empty_prompt", With([](auto& r) { r.prompt.clear(); }), "empty prompt"},
        BadRequest{"prompt_too_long", With([](auto& r) { r.prompt = Prompt(0, 64); }),
                   "prompt of 64 tokens leaves no room in the context of 64"},
        BadRequest{"max_tokens_zero", With([](auto& r) { r.max_tokens = 0; }),
                   "max_tokens must be >= 1, got 0"},
        BadRequest{"max_tokens_huge", With([](auto& r) { r.max_tokens = 1 << 30; }),
                   "exceeds the context length 64 (at most 54)"},
        BadRequest{"negative_token", With([](auto& r) { r.prompt[3] = -1; }),
                   "prompt token 3 is id -1, outside the vocabulary of 1000"},
        BadRequest{"unknown_token", With([](auto& r) { r.prompt[9] = 1000; }),
                   "prompt token 9 is id 1000"},
        BadRequest{"unknown_stop", With([](auto& r) { r.stop_token_ids = {5000}; }),
                   "stop token id 5000"},
        BadRequest{"bad_temperature", With([](auto& r) { r.sampling.temperature = -1; }),
                   "request bad: sampling: temperature"},
        BadRequest{"bad_top_p", With([](auto& r) { r.sampling.top_p = 2; }), "top_p"}),
    [](const auto& info) { return info.param.name; });

TEST(SchedulerValidation, RequestLargerThanThePoolAndDuplicateIds) {
  SchedulerHarness h(
      /*blocks=*/4, /*block_size=*/4,
      {.max_num_batched_tokens = 16, .max_num_seqs = 4, .max_model_len = 64, .vocab_size = kVocab});
  absl::Status big = h.Submit("big", Prompt(0, 10), 7);  // 17 tokens need 5 blocks
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.message(), HasSubstr("need 5 KV blocks; the pool has 4"));
  ASSERT_TRUE(h.Submit("a", Prompt(0, 10), 6).ok());
  EXPECT_EQ(h.Submit("a", Prompt(0, 3), 1).code(), absl::StatusCode::kAlreadyExists);
  h.RunToCompletion();
  EXPECT_EQ(h.outputs["a"], Reference(Prompt(0, 10), 6, kVocab));
}

TEST(SchedulerValidation, ConfigAndStepOutputErrors) {
  auto kv = kv::KvCacheManager::Create({.num_blocks = 8, .block_size = 4});
  ASSERT_TRUE(kv.ok());
  EXPECT_FALSE(Scheduler::Create({.max_model_len = 0, .vocab_size = 10}, &*kv).ok());
  EXPECT_FALSE(
      Scheduler::Create({.max_model_len = 8, .vocab_size = 10, .eos_token_ids = {10}}, &*kv).ok());
  auto s = Scheduler::Create({.max_model_len = 32, .vocab_size = 10}, &*kv);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Submit({.id = "a", .prompt = {1, 2}, .max_tokens = 3}).ok());
  StepPlan plan = (*s)->Schedule();
  std::vector<sampling::SampledToken> none;
  EXPECT_EQ((*s)->ProcessStepOutputs(plan, none).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<sampling::SampledToken> out_of_vocab = {{.token = 10}};
  EXPECT_EQ((*s)->ProcessStepOutputs(plan, out_of_vocab).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<sampling::SampledToken> one = {{.token = 3}};
  ASSERT_TRUE((*s)->ProcessStepOutputs(plan, one).ok());
  // The same plan again is stale.
  EXPECT_EQ((*s)->ProcessStepOutputs(plan, one).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace expertmesh::scheduler
