// Worker groups of two ranks sharing one GPU: each rank is a thread with its own CudaBackend on
// device 0, the ranks meet over Gloo on 127.0.0.1 (in-process HashStore rendezvous), and the
// collectives stage device tensors through host memory (models::Collectives). For every golden
// architecture at tp 2 and at ep 2, against one rank on one CudaBackend:
//   - prefill logits of one 23-token step on each rank within fp32 rounding of the single rank
//     (fp32 compute, partial sums added in another order: max |diff| < 1e-4 on logits of
//     magnitude ~1, the bound tests/worker/engine/sharded_engine_test.cc uses on the CPU);
//   - greedy tokens of the group's engine (rank 0 schedules and broadcasts every step, rank 1
//     runs RunFollower) equal the single-rank CUDA engine's and the CPU engine's.
// Without a GPU every case reports SKIPPED.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gloo/rendezvous/hash_store.h"
#include "gtest/gtest.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/util/cpu_engine.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/engine/engine.h"
#include "worker/engine/follower.h"
#include "worker/engine/step_sync.h"
#include "worker/models/forward_batch.h"

namespace expertmesh::engine {
namespace {

using scheduler::GenerationRequest;
using Tokens = std::map<std::string, std::vector<int32_t>>;
constexpr int kWorld = 2;

struct Case {
  std::string arch;
  int tp, ep;
};

std::string GoldenModel(const std::string& arch) {
  return absl::StrCat(EXPERTMESH_SOURCE_DIR, "/tests/golden/", arch, "/model");
}

absl::StatusOr<std::unique_ptr<kernels::Backend>> NewCudaBackend() {
  // Two of these share the GPU: keep the scratch small (the golden models are tiny).
  return cuda::CreateCudaBackend({.device = 0, .workspace_bytes = size_t{64} << 20});
}

absl::StatusOr<std::unique_ptr<models::Model>> LoadShard(const std::string& dir,
                                                         kernels::Backend* backend, int tp, int ep,
                                                         int rank, comm::Communicator* comm) {
  models::ModelOptions mo;
  mo.compute_dtype = DType::kF32;
  mo.max_positions = 128;
  mo.shard = {.tp = tp, .ep = ep, .rank = rank};
  mo.comm = comm;
  return models::LoadModel(dir, backend, mo);
}

// Runs fn(rank) on one thread per rank; each rank's status.
std::vector<absl::Status> OnRanks(const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> out(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r) threads.emplace_back([&, r] { out[r] = fn(r); });
  for (std::thread& t : threads) t.join();
  return out;
}

// A Gloo group over loopback, rank r at index r.
absl::StatusOr<std::vector<std::unique_ptr<comm::Communicator>>> GlooGroup() {
  gloo::rendezvous::HashStore store;
  std::vector<std::unique_ptr<comm::Communicator>> comms(kWorld);
  for (const absl::Status& s : OnRanks([&](int r) -> absl::Status {
         comm::GlooOptions o{.rank = r,
                             .world_size = kWorld,
                             .hostname = "127.0.0.1",
                             .timeout = absl::Seconds(60)};
         auto c = comm::CreateGlooCommunicator(o, store);
         if (!c.ok()) return c.status();
         comms[r] = std::move(*c);
         return absl::OkStatus();
       })) {
    if (!s.ok()) return s;
  }
  return comms;
}

std::vector<GenerationRequest> Requests(int64_t vocab) {
  std::vector<GenerationRequest> out;
  const int lens[] = {1, 5, 17, 40};
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    r.id = absl::StrCat("r", i);
    for (int j = 0; j < lens[i]; ++j) {
      r.prompt.push_back(static_cast<int32_t>(2 + (j * 7919 + i * 104729) % (vocab - 2)));
    }
    r.sampling.temperature = 0;
    r.max_tokens = 10;
    r.ignore_eos = true;
    out.push_back(std::move(r));
  }
  return out;
}

EngineOptions Options() {
  EngineOptions o;
  o.compute_dtype = DType::kF32;
  o.block_size = 4;
  o.max_num_batched_tokens = 24;  // chunked prefill across steps
  o.max_model_len = 128;
  o.kv_cache_bytes = 4u << 20;
  return o;
}

absl::StatusOr<Tokens> RunToCompletion(Engine& e) {
  for (const GenerationRequest& r : Requests(e.config().vocab_size)) {
    if (absl::Status s = e.AddRequest(r); !s.ok()) return s;
  }
  Tokens out;
  for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
    absl::StatusOr<std::vector<RequestOutput>> step = e.Step();
    if (!step.ok()) return step.status();
    for (const RequestOutput& o : *step) out[o.id].push_back(o.token.token);
  }
  return out;
}

// The logits of one 23-token prefill step (all rows) of `m` on `b`.
absl::StatusOr<std::vector<float>> PrefillLogits(kernels::Backend& b, models::Model& m) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 23; ++i) prompt.push_back(3 + (i * 31) % 500);
  const std::vector<int32_t> table = {0, 1, 2, 3, 4, 5};
  models::SequenceChunk chunk{.tokens = prompt,
                              .start_pos = 0,
                              .block_table = table,
                              .logits = models::SequenceChunk::Logits::kAll};
  auto kv = models::AllocateKvCache(b, m.kv_cache_spec(), 8, 4);
  if (!kv.ok()) return kv.status();
  auto batch = models::MakeForwardBatch(std::span(&chunk, 1), 4);
  if (!batch.ok()) return batch.status();
  auto logits = kernels::Tensor::Empty(DType::kF32, {23, m.config().vocab_size});
  if (!logits.ok()) return logits.status();
  if (absl::Status s = m.Forward(*batch, *kv, *logits); !s.ok()) return s;
  return std::vector<float>(logits->data<float>(), logits->data<float>() + logits->numel());
}

class ShardedCudaTest : public expertmesh::testing::CudaTestWithParam<Case> {};

TEST_P(ShardedCudaTest, PrefillLogitsOfEveryRankMatchOneRank) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  auto one = NewCudaBackend();
  ASSERT_TRUE(one.ok()) << one.status();
  auto m1 = LoadShard(dir, one->get(), 1, 1, 0, nullptr);
  ASSERT_TRUE(m1.ok()) << m1.status();
  auto ref = PrefillLogits(**one, **m1);
  ASSERT_TRUE(ref.ok()) << ref.status();

  auto comms = GlooGroup();
  ASSERT_TRUE(comms.ok()) << comms.status();
  std::vector<std::vector<float>> got(kWorld);
  const std::vector<absl::Status> status = OnRanks([&](int r) -> absl::Status {
    auto b = NewCudaBackend();
    if (!b.ok()) return b.status();
    auto m = LoadShard(dir, b->get(), c.tp, c.ep, r, (*comms)[r].get());
    if (!m.ok()) return m.status();
    auto l = PrefillLogits(**b, **m);
    if (!l.ok()) return l.status();
    got[r] = std::move(*l);
    return absl::OkStatus();
  });
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
    ASSERT_EQ(got[r].size(), ref->size());
    float max_diff = 0;
    for (size_t i = 0; i < ref->size(); ++i) {
      max_diff = std::max(max_diff, std::abs(got[r][i] - (*ref)[i]));
    }
    EXPECT_LT(max_diff, 1e-4f) << "rank " << r;
  }
}

TEST_P(ShardedCudaTest, GreedyTokensEqualOneRankAndTheCpuEngine) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  auto cpu = expertmesh::testing::LoadCpuEngine(dir, Options(), /*threads=*/1);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto cpu_tokens = RunToCompletion(**cpu);
  ASSERT_TRUE(cpu_tokens.ok()) << cpu_tokens.status();
  ASSERT_EQ(cpu_tokens->size(), 4u);

  auto one_backend = NewCudaBackend();
  ASSERT_TRUE(one_backend.ok()) << one_backend.status();
  auto one_model = LoadShard(dir, one_backend->get(), 1, 1, 0, nullptr);
  ASSERT_TRUE(one_model.ok()) << one_model.status();
  auto one = Engine::Create(std::move(*one_backend), std::move(*one_model), Options());
  ASSERT_TRUE(one.ok()) << one.status();
  auto one_tokens = RunToCompletion(**one);
  ASSERT_TRUE(one_tokens.ok()) << one_tokens.status();

  auto comms = GlooGroup();
  ASSERT_TRUE(comms.ok()) << comms.status();
  Tokens group_tokens;
  const std::vector<absl::Status> status = OnRanks([&](int r) -> absl::Status {
    auto b = NewCudaBackend();
    if (!b.ok()) return b.status();
    comm::Communicator& cm = *(*comms)[r];
    auto m = LoadShard(dir, b->get(), c.tp, c.ep, r, &cm);
    if (!m.ok()) return m.status();
    if (r != 0) return RunFollower(**b, **m, cm);
    auto e = Engine::Create(std::move(*b), std::move(*m), Options());
    if (!e.ok()) return e.status();
    if (absl::Status s = SendGeometry(cm, (*e)->num_kv_blocks(), Options().block_size); !s.ok()) {
      return s;
    }
    (*e)->SetStepListener(
        [&cm](const std::vector<kv::KvBlockCopy>& copies, const models::ForwardBatch& batch) {
          return PublishToGroup(cm, EncodeStep(copies, batch));
        });
    auto t = RunToCompletion(**e);
    // Stop the follower whatever happened, so its thread ends.
    const absl::Status stop = SendStop(cm);
    if (!t.ok()) return t.status();
    group_tokens = std::move(*t);
    return stop;
  });
  for (int r = 0; r < kWorld; ++r) ASSERT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
  for (const auto& [id, tokens] : *cpu_tokens) {
    EXPECT_EQ(tokens.size(), 10u) << id;
    ASSERT_EQ(one_tokens->count(id), 1u) << id;
    EXPECT_EQ(one_tokens->at(id), tokens) << id << ": one CUDA rank vs the CPU engine";
    ASSERT_EQ(group_tokens.count(id), 1u) << id;
    EXPECT_EQ(group_tokens.at(id), tokens) << id << ": two CUDA ranks vs the CPU engine";
  }
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const char* arch :
       {"llama", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"}) {
    out.push_back({arch, 2, 1});
    out.push_back({arch, 1, 2});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Golden, ShardedCudaTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat(info.param.arch, "_tp", info.param.tp, "_ep",
                                               info.param.ep);
                         });

}  // namespace
}  // namespace expertmesh::engine
