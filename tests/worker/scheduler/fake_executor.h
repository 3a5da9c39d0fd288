// A fake executor for scheduler tests: a "model" whose next token is a hash of the whole
// context, read back through the KV block tables of the plan. Token ids stand in for KV
// entries: each step writes its tokens into the slots the block table names (after the
// plan's block copies), then reads positions [0, context_len) back through the table. A wrong
// block table, a bad prefix-cache hit or a missed copy-on-write changes the context read and
// so the generated tokens, which tests compare with Reference() computed without any cache.
#ifndef EXPERTMESH_TESTS_WORKER_SCHEDULER_FAKE_EXECUTOR_H_
#define EXPERTMESH_TESTS_WORKER_SCHEDULER_FAKE_EXECUTOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/plan/kv_block_hash.h"
#include "worker/scheduler/step_plan.h"

namespace expertmesh::scheduler {

inline int32_t FakeNextToken(const std::vector<int32_t>& context, int64_t vocab) {
  return static_cast<int32_t>(model::HashKvBlock(model::kRootBlockHash, context) % vocab);
}

// The tokens a request generates with no cache at all: greedy continuation of FakeNextToken
// until max_tokens or one of `stops`.
inline std::vector<int32_t> Reference(std::vector<int32_t> tokens, int64_t max_tokens,
                                      int64_t vocab, const std::vector<int32_t>& stops = {}) {
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < max_tokens) {
    const int32_t t = FakeNextToken(tokens, vocab);
    out.push_back(t);
    tokens.push_back(t);
    if (std::find(stops.begin(), stops.end(), t) != stops.end()) break;
  }
  return out;
}

class FakeExecutor {
 public:
  FakeExecutor(int32_t num_blocks, int32_t block_size, int64_t vocab)
      : block_size_(block_size), vocab_(vocab), slots_(num_blocks * block_size, -1) {}

  // Runs `plan` and returns one sampled token per sequence with sample set.
  std::vector<sampling::SampledToken> Run(const StepPlan& plan) {
    for (const kv::KvBlockCopy& c : plan.block_copies) {
      std::copy_n(slots_.begin() + c.src * block_size_, block_size_,
                  slots_.begin() + c.dst * block_size_);
    }
    for (const ScheduledSequence& s : plan.sequences) {
      EXPECT_EQ(s.token_ids.size(), s.positions.size());
      for (size_t i = 0; i < s.token_ids.size(); ++i) {
        slots_[Slot(s, s.positions[i])] = s.token_ids[i];
      }
      EXPECT_EQ(s.positions.back() + 1, s.context_len) << s.request_id;
    }
    std::vector<sampling::SampledToken> out;
    for (const ScheduledSequence& s : plan.sequences) {
      if (!s.sample) continue;
      std::vector<int32_t> context;
      for (int64_t p = 0; p < s.context_len; ++p) context.push_back(slots_[Slot(s, p)]);
      out.push_back({.token = FakeNextToken(context, vocab_)});
    }
    return out;
  }

 private:
  size_t Slot(const ScheduledSequence& s, int64_t position) const {
    const size_t block = static_cast<size_t>(position / block_size_);
    EXPECT_LT(block, s.block_table.size()) << s.request_id << " position " << position;
    if (block >= s.block_table.size()) return 0;
    return static_cast<size_t>(s.block_table[block]) * block_size_ + position % block_size_;
  }

  int32_t block_size_;
  int64_t vocab_;
  std::vector<int32_t> slots_;
};

}  // namespace expertmesh::scheduler

#endif  // EXPERTMESH_TESTS_WORKER_SCHEDULER_FAKE_EXECUTOR_H_
