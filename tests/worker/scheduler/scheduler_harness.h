// Drives a Scheduler step by step against FakeExecutor, checking invariants after every
// operation and recording what each step did.
#ifndef EXPERTMESH_TESTS_WORKER_SCHEDULER_SCHEDULER_HARNESS_H_
#define EXPERTMESH_TESTS_WORKER_SCHEDULER_SCHEDULER_HARNESS_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/scheduler/fake_executor.h"
#include "worker/kv/kv_cache_manager.h"
#include "worker/scheduler/scheduler.h"

namespace expertmesh::scheduler {

struct StepRecord {
  StepPlan plan;
  std::vector<std::string> admitted, preempted, running, waiting;
  std::map<std::string, FinishReason> finished;
  // request -> (tokens scheduled this step)
  std::map<std::string, int64_t> scheduled;
};

class SchedulerHarness {
 public:
  SchedulerHarness(int32_t num_blocks, int32_t block_size, SchedulerConfig config,
                   bool prefix_caching = true)
      : config_(config), executor_(num_blocks, block_size, config.vocab_size) {
    auto kv = kv::KvCacheManager::Create({.num_blocks = num_blocks,
                                          .block_size = block_size,
                                          .enable_prefix_caching = prefix_caching});
    EXPECT_TRUE(kv.ok());
    kv_ = std::make_unique<kv::KvCacheManager>(*std::move(kv));
    auto s = Scheduler::Create(config, kv_.get());
    EXPECT_TRUE(s.ok()) << s.status();
    scheduler_ = *std::move(s);
  }

  Scheduler& scheduler() { return *scheduler_; }
  kv::KvCacheManager& kv() { return *kv_; }

  absl::Status Submit(const std::string& id, std::vector<int32_t> prompt, int64_t max_tokens,
                      bool ignore_eos = true) {
    GenerationRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.ignore_eos = ignore_eos;
    r.sampling.temperature = 0;
    absl::Status status = scheduler_->Submit(std::move(r));
    CheckInvariants();
    return status;
  }

  StepRecord Step() {
    StepRecord rec;
    rec.plan = scheduler_->Schedule();
    CheckInvariants();
    EXPECT_LE(rec.plan.num_tokens, config_.max_num_batched_tokens);
    EXPECT_LE(static_cast<int32_t>(scheduler_->RunningIds().size()), config_.max_num_seqs);
    rec.admitted = rec.plan.admitted;
    rec.preempted = rec.plan.preempted;
    for (const ScheduledSequence& s : rec.plan.sequences) {
      rec.scheduled[s.request_id] = static_cast<int64_t>(s.token_ids.size());
    }
    std::vector<sampling::SampledToken> sampled = executor_.Run(rec.plan);
    auto updates = scheduler_->ProcessStepOutputs(rec.plan, sampled);
    EXPECT_TRUE(updates.ok()) << updates.status();
    CheckInvariants();
    if (updates.ok()) {
      for (const RequestUpdate& u : *updates) {
        outputs[u.id].push_back(u.token.token);
        if (u.finish != FinishReason::kNone) rec.finished[u.id] = u.finish;
      }
    }
    rec.running = scheduler_->RunningIds();
    rec.waiting = scheduler_->WaitingIds();
    return rec;
  }

  // Steps until nothing is left (at most `limit` steps).
  void RunToCompletion(int limit = 10000) {
    for (int i = 0; i < limit && scheduler_->HasWork(); ++i) Step();
    EXPECT_FALSE(scheduler_->HasWork());
  }

  void CheckInvariants() {
    absl::Status s = kv_->CheckInvariants();
    EXPECT_TRUE(s.ok()) << s;
    if (!scheduler_->HasWork()) {
      EXPECT_EQ(kv_->NumFreeBlocks(), kv_->num_blocks());
    }
  }

  std::map<std::string, std::vector<int32_t>> outputs;

 private:
  SchedulerConfig config_;
  FakeExecutor executor_;
  std::unique_ptr<kv::KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
};

inline std::vector<int32_t> Prompt(int32_t first, int32_t count) {
  std::vector<int32_t> v;
  for (int32_t i = 0; i < count; ++i) v.push_back((first + i) % 1000);
  return v;
}

}  // namespace expertmesh::scheduler

#endif  // EXPERTMESH_TESTS_WORKER_SCHEDULER_SCHEDULER_HARNESS_H_
