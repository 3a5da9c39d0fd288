// Random submissions, aborts and steps under a tight pool and budget; invariants after every
// operation, every finished request equal to its cache-free reference, the pool full at the end.
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/scheduler/scheduler_harness.h"

namespace expertmesh::scheduler {
namespace {

constexpr int64_t kVocab = 1000;

TEST(SchedulerStressTest, RandomWorkload) {
  int64_t preemptions = 0, prefix_hit_tokens = 0;
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    auto rand = [&](int n) { return static_cast<int>(rng() % n); };
    SchedulerHarness h(/*blocks=*/20, /*block_size=*/4,
                       {.max_num_batched_tokens = 12 + rand(20),
                        .max_num_seqs = 1 + rand(8),
                        .max_model_len = 64,
                        .vocab_size = kVocab});
    std::map<std::string, std::pair<std::vector<int32_t>, int64_t>> submitted;
    std::set<std::string> aborted;
    int next = 0;
    for (int op = 0; op < 600; ++op) {
      const int kind = rand(10);
      if (kind < 3) {
        // Prompts from a few shared prefixes, so the prefix cache sees hits.
        std::vector<int32_t> prompt = Prompt(100 * rand(3), 4 * rand(4));
        for (int i = 1 + rand(20); i > 0; --i) prompt.push_back(rand(kVocab));
        const int64_t max_tokens = 1 + rand(20);
        const std::string id = "r" + std::to_string(next++);
        ASSERT_TRUE(h.Submit(id, prompt, max_tokens).ok());
        submitted[id] = {prompt, max_tokens};
      } else if (kind < 4 && !submitted.empty()) {
        auto it = std::next(submitted.begin(), rand(static_cast<int>(submitted.size())));
        if (h.scheduler().Abort(it->first).ok()) aborted.insert(it->first);
        h.CheckInvariants();
      } else {
        h.Step();
      }
    }
    h.RunToCompletion();
    EXPECT_EQ(h.kv().NumFreeBlocks(), h.kv().num_blocks());
    preemptions += h.scheduler().Stats().num_preemptions;
    prefix_hit_tokens += h.scheduler().Stats().num_prefix_hit_tokens;
    int checked = 0;
    for (const auto& [id, request] : submitted) {
      if (aborted.contains(id)) continue;
      EXPECT_EQ(h.outputs[id], Reference(request.first, request.second, kVocab)) << id;
      ++checked;
    }
    EXPECT_GT(checked, 50);
  }
  // The workload really exercised preemption and the prefix cache.
  EXPECT_GT(preemptions, 0);
  EXPECT_GT(prefix_hit_tokens, 0);
}

}  // namespace
}  // namespace expertmesh::scheduler
