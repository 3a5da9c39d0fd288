// Sampling where the logits are: an Engine on the fake device backend (CPU kernels over tensors
// tagged as device memory, counting every host copy) copies only the step's token ids to the
// host on a decode step, never the [batch, vocab] logits, and draws the same tokens as an
// Engine on the CPU backend. Requests the host sampler must take (logprobs, penalties) copy
// their own logits row and nothing more.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/util/cpu_engine.h"
#include "tests/util/fake_device_backend.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/engine/engine.h"

namespace expertmesh::engine {
namespace {

using scheduler::GenerationRequest;
using testing::FakeDeviceBackend;

GenerationRequest Request(std::string id, int seed, float temperature) {
  GenerationRequest r;
  r.id = std::move(id);
  for (int i = 0; i < 5 + seed; ++i) r.prompt.push_back((i * 31 + seed * 7) % 200 + 1);
  r.sampling.temperature = temperature;
  r.sampling.top_k = temperature > 0 ? 20 : 0;
  r.sampling.top_p = temperature > 0 ? 0.9f : 1.0f;
  r.sampling.seed = 1000 + seed;
  r.max_tokens = 6;
  r.ignore_eos = true;
  return r;
}

EngineOptions Options() {
  EngineOptions o;
  o.compute_dtype = DType::kF32;
  o.block_size = 4;
  o.max_model_len = 128;
  o.kv_cache_bytes = 8u << 20;
  return o;
}

using Tokens = std::map<std::string, std::vector<int32_t>>;

// Steps until no work is left; `on_step` sees the backend's counters of each step.
Tokens RunToEnd(Engine& e, const std::function<void(const std::vector<RequestOutput>&)>& on_step) {
  Tokens out;
  while (e.HasWork()) {
    absl::StatusOr<std::vector<RequestOutput>> step = e.Step();
    EXPECT_TRUE(step.ok()) << step.status();
    if (!step.ok()) break;
    for (const RequestOutput& o : *step) out[o.id].push_back(o.token.token);
    on_step(*step);
  }
  return out;
}

class DeviceSamplingTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "tiny", "device-sampling");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    absl::StatusOr<std::unique_ptr<FakeDeviceBackend>> fake = FakeDeviceBackend::Create();
    ASSERT_TRUE(fake.ok()) << fake.status();
    fake_ = fake->get();
    fake_->set_graphs(GetParam());
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load(dir_, *std::move(fake), Options());
    ASSERT_TRUE(e.ok()) << e.status();
    device_ = *std::move(e);
    absl::StatusOr<std::unique_ptr<Engine>> cpu =
        expertmesh::testing::LoadCpuEngine(dir_, Options(), /*threads=*/1);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = *std::move(cpu);
    vocab_ = cpu_->config().vocab_size;
  }

  std::string dir_;
  FakeDeviceBackend* fake_ = nullptr;  // owned by device_
  std::unique_ptr<Engine> device_, cpu_;
  int64_t vocab_ = 0;
};

TEST_P(DeviceSamplingTest, DecodeStepsCopyOnlyTokenIdsToTheHost) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(device_->AddRequest(Request("r" + std::to_string(i), i, i % 2 ? 0.8f : 0)).ok());
    ASSERT_TRUE(cpu_->AddRequest(Request("r" + std::to_string(i), i, i % 2 ? 0.8f : 0)).ok());
  }
  int decode_steps = 0;
  uint64_t replays = 0;
  const Tokens on_device = RunToEnd(*device_, [&](const std::vector<RequestOutput>& outputs) {
    const testing::FakeDeviceCounters c = fake_->counters();
    replays += c.graph_replays;
    if (!outputs.empty()) {
      // One copy back per step, of exactly the sampled rows' int32 ids.
      EXPECT_EQ(c.copies_to_host, 1u);
      EXPECT_EQ(c.bytes_to_host, outputs.size() * sizeof(int32_t));
      EXPECT_LT(c.bytes_to_host, static_cast<uint64_t>(vocab_) * sizeof(float));
      ++decode_steps;
    }
    fake_->ResetCounters();
  });
  EXPECT_GE(decode_steps, 5);
  const Tokens on_cpu = RunToEnd(*cpu_, [](const std::vector<RequestOutput>&) {});
  EXPECT_EQ(on_device, on_cpu) << "the same seeds draw the same tokens on either backend";
  // With graphs the decode steps replay recordings, and their logits stay in the graph's buffer.
  if (GetParam()) {
    EXPECT_GT(replays, 0u);
  }
}

TEST_P(DeviceSamplingTest, LogprobsAndPenaltiesCopyTheirOwnRowOnly) {
  GenerationRequest plain = Request("plain", 1, 0.7f);
  GenerationRequest with_logprobs = Request("logprobs", 2, 0.7f);
  with_logprobs.sampling.logprobs = true;
  with_logprobs.sampling.top_logprobs = 3;
  GenerationRequest penalised = Request("penalised", 3, 0);
  penalised.sampling.repetition_penalty = 1.3f;
  for (const GenerationRequest& r : {plain, with_logprobs, penalised}) {
    ASSERT_TRUE(device_->AddRequest(r).ok());
    ASSERT_TRUE(cpu_->AddRequest(r).ok());
  }
  std::map<std::string, std::vector<float>> device_logprobs;
  fake_->ResetCounters();
  while (device_->HasWork()) {
    absl::StatusOr<std::vector<RequestOutput>> step = device_->Step();
    ASSERT_TRUE(step.ok()) << step.status();
    const testing::FakeDeviceCounters c = fake_->counters();
    fake_->ResetCounters();
    if (step->empty()) continue;
    uint64_t host_rows = 0;
    for (const RequestOutput& o : *step) {
      if (o.id != "plain") ++host_rows;
      if (o.id == "logprobs") {
        EXPECT_EQ(o.token.top_logprobs.size(), 3u);
        device_logprobs[o.id].push_back(o.token.logprob);
      }
    }
    EXPECT_EQ(c.copies_to_host, 1 + host_rows);
    EXPECT_EQ(c.bytes_to_host, step->size() * sizeof(int32_t) + host_rows * vocab_ * sizeof(float));
  }
  std::map<std::string, std::vector<float>> cpu_logprobs;
  Tokens cpu_tokens;
  while (cpu_->HasWork()) {
    absl::StatusOr<std::vector<RequestOutput>> step = cpu_->Step();
    ASSERT_TRUE(step.ok()) << step.status();
    for (const RequestOutput& o : *step) {
      cpu_tokens[o.id].push_back(o.token.token);
      if (o.id == "logprobs") cpu_logprobs[o.id].push_back(o.token.logprob);
    }
  }
  EXPECT_EQ(device_logprobs, cpu_logprobs);
}

INSTANTIATE_TEST_SUITE_P(Graphs, DeviceSamplingTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "graphs" : "eager"; });

}  // namespace
}  // namespace expertmesh::engine
