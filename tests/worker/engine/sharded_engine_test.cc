// Worker groups of several ranks (tp x ep) give the same greedy tokens as the single-process
// engine, and logits within fp32 rounding of it, on every golden architecture. The ranks are
// threads over the in-process fake communicator here (real processes over Gloo are covered by
// the end-to-end tests); rank 0 runs the scheduler and broadcasts each step (step_sync.h).
#include <cstring>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/util/cpu_engine.h"
#include "tests/util/fake_device_backend.h"
#include "tests/util/shared_model.h"
#include "tests/worker/comm/fake_communicator.h"
#include "tools/make_model/make_model.h"
#include "worker/engine/engine.h"
#include "worker/engine/follower.h"
#include "worker/engine/step_sync.h"
#include "worker/models/forward_batch.h"

namespace expertmesh::engine {
namespace {

using scheduler::GenerationRequest;
using Tokens = std::map<std::string, std::vector<int32_t>>;
using BackendFactory = std::function<absl::StatusOr<std::unique_ptr<kernels::Backend>>()>;

absl::StatusOr<std::unique_ptr<kernels::Backend>> CpuBackend() {
  auto b = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  if (!b.ok()) return b.status();
  return std::unique_ptr<kernels::Backend>(std::move(*b));
}
// Every op on the CPU, every tensor tagged as device memory (tests/util/fake_device_backend.h).
absl::StatusOr<std::unique_ptr<kernels::Backend>> FakeDevice() {
  auto b = expertmesh::testing::FakeDeviceBackend::Create({.num_threads = 1});
  if (!b.ok()) return b.status();
  return std::unique_ptr<kernels::Backend>(std::move(*b));
}

// A model directory with this suffix is loaded with lm_head quantized to fp8
// (ModelOptions::quantize_lm_head_fp8).
constexpr std::string_view kFp8LmHead = "+fp8-lm-head";

// The directory of `subject` and whether it asks for an fp8 lm_head.
std::pair<std::string, bool> SplitFp8LmHead(const std::string& subject) {
  if (!subject.ends_with(kFp8LmHead)) return {subject, false};
  return {subject.substr(0, subject.size() - kFp8LmHead.size()), true};
}

// A golden model by architecture name, or for "fp8_<arch>" an fp8 checkpoint made by make-model
// with widths whose tensor-parallel halves cut through 128 x 128 scale blocks (hidden 320,
// expert width 192: each rank of tp 2 gets 96 rows of a block), or for "fp8lmh_<arch>" that
// checkpoint with its lm_head quantized at load (vocab 2112: tp 2 and 4 cut its rows inside
// 128-row blocks).
std::string GoldenModel(const std::string& arch) {
  if (arch.starts_with("fp8lmh_")) {
    return GoldenModel("fp8_" + arch.substr(7)) + std::string(kFp8LmHead);
  }
  if (!arch.starts_with("fp8_")) {
    return absl::StrCat(EXPERTMESH_SOURCE_DIR, "/tests/golden/", arch, "/model");
  }
  make_model::MakeModelOptions options;
  options.arch =
      arch == "fp8_deepseek_v3" ? model::Architecture::kDeepseekV3 : model::Architecture::kQwen3Moe;
  options.size = "tiny";
  options.overrides.hidden_size = 320;
  options.overrides.moe_intermediate_size = 192;
  options.overrides.intermediate_size = 384;
  options.dtype = DType::kF8E4M3;
  options.seed = 5;
  options.out_dir = absl::StrCat(EXPERTMESH_BINARY_DIR, "/test-scratch/models/sharded-", arch);
  absl::StatusOr<std::string> dir = expertmesh::testing::MakeSharedModel(options);
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? *dir : std::string();
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
    // Prompt logprobs put every prompt position's logits row in the broadcast batch.
    if (i == 2) r.prompt_logprobs = 3;
    out.push_back(std::move(r));
  }
  return out;
}

EngineOptions Options(bool fp8_lm_head = false) {
  EngineOptions o;
  o.quantize_lm_head_fp8 = fp8_lm_head;
  o.compute_dtype = DType::kF32;
  o.block_size = 4;
  o.max_num_batched_tokens = 24;  // chunked prefill across steps
  o.max_model_len = 128;
  o.kv_cache_bytes = 4u << 20;
  return o;
}

absl::StatusOr<Tokens> RunToCompletion(Engine& e, const std::vector<GenerationRequest>& reqs) {
  for (const GenerationRequest& r : reqs) {
    absl::Status s = e.AddRequest(r);
    if (!s.ok()) return s;
  }
  Tokens out;
  for (int steps = 0; e.HasWork() && steps < 10000; ++steps) {
    absl::StatusOr<std::vector<RequestOutput>> step = e.Step();
    if (!step.ok()) return step.status();
    for (const RequestOutput& o : *step) {
      out[o.id].push_back(o.token.token);
      // The scored prompt tokens' ranks and top ids (their logprobs differ across groups
      // within fp32 rounding, as the logits do).
      for (const sampling::PromptLogprob& p : o.prompt_logprobs) {
        std::vector<int32_t>& scored = out[o.id + "/prompt"];
        scored.push_back(p.rank);
        for (const sampling::TokenLogprob& t : p.top_logprobs) scored.push_back(t.token);
      }
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<models::Model>> LoadShard(const std::string& dir,
                                                         kernels::Backend* backend, int tp, int ep,
                                                         int rank, comm::Communicator* comm);

absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(const std::string& dir,
                                                   const BackendFactory& factory) {
  if (!factory) {
    const auto [model_dir, fp8_lm_head] = SplitFp8LmHead(dir);
    return expertmesh::testing::LoadCpuEngine(model_dir, Options(fp8_lm_head), /*threads=*/1);
  }
  auto backend = factory();
  if (!backend.ok()) return backend.status();
  auto model = LoadShard(dir, backend->get(), 1, 1, 0, nullptr);
  if (!model.ok()) return model.status();
  return Engine::Create(std::move(*backend), std::move(*model), Options());
}

// The engine of one process (Engine::Create's own CPU backend unless `factory` is given).
Tokens SingleProcess(const std::string& dir, const BackendFactory& factory = nullptr) {
  auto e = MakeEngine(dir, factory);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  auto tokens = RunToCompletion(**e, Requests((*e)->config().vocab_size));
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : Tokens{};
}

absl::StatusOr<std::unique_ptr<models::Model>> LoadShard(const std::string& dir,
                                                         kernels::Backend* backend, int tp, int ep,
                                                         int rank, comm::Communicator* comm) {
  const auto [model_dir, fp8_lm_head] = SplitFp8LmHead(dir);
  models::ModelOptions mo;
  mo.compute_dtype = DType::kF32;
  mo.max_positions = 128;
  mo.shard = {.tp = tp, .ep = ep, .rank = rank};
  mo.comm = comm;
  mo.quantize_lm_head_fp8 = fp8_lm_head;
  return models::LoadModel(model_dir, backend, mo);
}

// Runs a group of tp x ep ranks as threads; returns the leader's tokens.
Tokens Sharded(const std::string& dir, int tp, int ep, const BackendFactory& factory = CpuBackend) {
  const int world = tp * ep;
  auto comms = comm::CreateFakeGroup(world, absl::Seconds(60));
  std::vector<absl::Status> follower_status(world);
  std::vector<std::thread> followers;
  for (int r = 1; r < world; ++r) {
    followers.emplace_back([&, r] {
      auto backend = factory();
      if (!backend.ok()) {
        follower_status[r] = backend.status();
        return;
      }
      auto model = LoadShard(dir, backend->get(), tp, ep, r, comms[r].get());
      if (!model.ok()) {
        follower_status[r] = model.status();
        return;
      }
      follower_status[r] = RunFollower(**backend, **model, *comms[r]);
    });
  }
  Tokens tokens;
  [&] {
    auto made = factory();
    ASSERT_TRUE(made.ok()) << made.status();
    std::unique_ptr<kernels::Backend> backend = std::move(*made);
    auto model = LoadShard(dir, backend.get(), tp, ep, 0, comms[0].get());
    ASSERT_TRUE(model.ok()) << model.status();
    auto e = Engine::Create(std::move(backend), std::move(*model), Options());
    ASSERT_TRUE(e.ok()) << e.status();
    comm::Communicator& c = *comms[0];
    ASSERT_TRUE(SendGeometry(c, (*e)->num_kv_blocks(), Options().block_size).ok());
    (*e)->SetStepListener(
        [&c](const std::vector<kv::KvBlockCopy>& copies, const models::ForwardBatch& batch) {
          return PublishToGroup(c, EncodeStep(copies, batch));
        });
    auto t = RunToCompletion(**e, Requests((*e)->config().vocab_size));
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) tokens = *t;
    EXPECT_TRUE(SendStop(c).ok());
  }();
  for (std::thread& t : followers) t.join();
  for (int r = 1; r < world; ++r) EXPECT_TRUE(follower_status[r].ok()) << follower_status[r];
  return tokens;
}

struct Case {
  std::string arch;
  int tp, ep;
};

class ShardedEngineTest : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedEngineTest, GreedyTokensEqualTheSingleProcessEngine) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  const Tokens alone = SingleProcess(dir);
  ASSERT_EQ(alone.size(), 5u);  // four requests and r2's scored prompt
  EXPECT_EQ(alone.at("r2/prompt").size(), 16u * 4u);
  const Tokens group = Sharded(dir, c.tp, c.ep);
  for (const auto& [id, tokens] : alone) {
    if (!id.ends_with("/prompt")) {
      EXPECT_EQ(tokens.size(), 10u);
    }
    auto it = group.find(id);
    ASSERT_NE(it, group.end()) << id;
    EXPECT_EQ(it->second, tokens) << id;
  }
}

// The logits of one 23-token prefill step (all rows), run by one rank on `backend`.
absl::StatusOr<std::vector<float>> PrefillLogits(kernels::Backend& b, models::Model& m) {
  static const std::vector<int32_t> prompt = [] {
    std::vector<int32_t> p;
    for (int i = 0; i < 23; ++i) p.push_back(3 + (i * 31) % 500);
    return p;
  }();
  static const std::vector<int32_t> table = {0, 1, 2, 3, 4, 5};
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
  absl::Status s = m.Forward(*batch, *kv, *logits);
  if (!s.ok()) return s;
  return std::vector<float>(logits->data<float>(), logits->data<float>() + logits->numel());
}

// Every rank's prefill logits in a group of tp x ep ranks (threads) on `factory`'s backends.
std::vector<absl::StatusOr<std::vector<float>>> GroupPrefillLogits(const std::string& dir, int tp,
                                                                   int ep,
                                                                   const BackendFactory& factory) {
  const int world = tp * ep;
  auto comms = comm::CreateFakeGroup(world, absl::Seconds(60));
  std::vector<absl::StatusOr<std::vector<float>>> got(world, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      auto b = factory();
      if (!b.ok()) {
        got[r] = b.status();
        return;
      }
      auto m = LoadShard(dir, b->get(), tp, ep, r, comms[r].get());
      if (!m.ok()) {
        got[r] = m.status();
        return;
      }
      got[r] = PrefillLogits(**b, **m);
    });
  }
  for (std::thread& t : ranks) t.join();
  return got;
}

// Logits of one prefill step on a shard group against one rank: fp32 partial sums in another
// order, so equal within rounding (max abs diff < 1e-4 on logits of magnitude ~1).
TEST_P(ShardedEngineTest, PrefillLogitsMatchWithinFp32Rounding) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  const int world = c.tp * c.ep;
  auto b1 = kernels::cpu::CpuBackend::Create({.num_threads = 1});
  ASSERT_TRUE(b1.ok());
  auto m1 = LoadShard(dir, b1->get(), 1, 1, 0, nullptr);
  ASSERT_TRUE(m1.ok()) << m1.status();
  auto ref = PrefillLogits(**b1, **m1);
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto got = GroupPrefillLogits(dir, c.tp, c.ep, CpuBackend);
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(got[r].ok()) << "rank " << r << ": " << got[r].status();
    ASSERT_EQ(got[r]->size(), ref->size());
    float max_diff = 0;
    for (size_t i = 0; i < ref->size(); ++i) {
      max_diff = std::max(max_diff, std::abs((*got[r])[i] - (*ref)[i]));
    }
    EXPECT_LT(max_diff, 1e-4f) << "rank " << r;
  }
}

// The same group on a device backend (FakeDeviceBackend: every tensor the forward pass forgot
// to move would fail its device checks; collectives stage through host memory because the
// communicator is a host one): logits bit-identical to the CPU group's, greedy tokens equal to
// the single-process CPU engine's. tp 1 x ep 1 is one process on the device backend.
class DeviceShardedEngineTest : public ::testing::TestWithParam<Case> {};

TEST_P(DeviceShardedEngineTest, PrefillLogitsEqualTheCpuRunExactly) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  const int world = c.tp * c.ep;
  std::vector<absl::StatusOr<std::vector<float>>> cpu, dev;
  if (world == 1) {
    for (const BackendFactory& f : {BackendFactory(CpuBackend), BackendFactory(FakeDevice)}) {
      auto b = f();
      ASSERT_TRUE(b.ok()) << b.status();
      auto m = LoadShard(dir, b->get(), 1, 1, 0, nullptr);
      ASSERT_TRUE(m.ok()) << m.status();
      (cpu.empty() ? cpu : dev).push_back(PrefillLogits(**b, **m));
    }
  } else {
    cpu = GroupPrefillLogits(dir, c.tp, c.ep, CpuBackend);
    dev = GroupPrefillLogits(dir, c.tp, c.ep, FakeDevice);
  }
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(cpu[r].ok()) << "cpu rank " << r << ": " << cpu[r].status();
    ASSERT_TRUE(dev[r].ok()) << "device rank " << r << ": " << dev[r].status();
    ASSERT_EQ(dev[r]->size(), cpu[r]->size());
    EXPECT_EQ(0, std::memcmp(dev[r]->data(), cpu[r]->data(), cpu[r]->size() * sizeof(float)))
        << "rank " << r;
  }
}

TEST_P(DeviceShardedEngineTest, GreedyTokensEqualTheCpuEngine) {
  const Case& c = GetParam();
  const std::string dir = GoldenModel(c.arch);
  const Tokens alone = SingleProcess(dir);
  ASSERT_EQ(alone.size(), 5u);  // four requests and r2's scored prompt
  const Tokens dev =
      c.tp * c.ep == 1 ? SingleProcess(dir, FakeDevice) : Sharded(dir, c.tp, c.ep, FakeDevice);
  for (const auto& [id, tokens] : alone) {
    auto it = dev.find(id);
    ASSERT_NE(it, dev.end()) << id;
    EXPECT_EQ(it->second, tokens) << id;
  }
}

std::vector<Case> DeviceCases() {
  std::vector<Case> out;
  for (const char* arch : {"llama", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2",
                           "deepseek_v3", "fp8_qwen3_moe", "fp8_deepseek_v3"}) {
    for (auto [tp, ep] : {std::pair{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
      out.push_back({arch, tp, ep});
    }
  }
  out.push_back({"fp8lmh_qwen3_moe", 1, 1});
  out.push_back({"fp8lmh_qwen3_moe", 2, 1});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Golden, DeviceShardedEngineTest, ::testing::ValuesIn(DeviceCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat(info.param.arch, "_tp", info.param.tp, "_ep",
                                               info.param.ep);
                         });

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const char* arch : {"llama", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2",
                           "deepseek_v3", "fp8_qwen3_moe", "fp8_deepseek_v3"}) {
    for (auto [tp, ep] : {std::pair{2, 1}, {4, 1}, {1, 2}, {1, 4}, {2, 2}}) {
      out.push_back({arch, tp, ep});
    }
  }
  // Vocab-parallel fp8 lm_head slices through 128-row blocks.
  out.push_back({"fp8lmh_qwen3_moe", 2, 1});
  out.push_back({"fp8lmh_qwen3_moe", 4, 1});
  out.push_back({"fp8lmh_qwen3_moe", 2, 2});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Golden, ShardedEngineTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat(info.param.arch, "_tp", info.param.tp, "_ep",
                                               info.param.ep);
                         });

}  // namespace
}  // namespace expertmesh::engine
