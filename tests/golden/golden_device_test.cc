// The golden models on a device backend: FakeDeviceBackend (tests/util/fake_device_backend.h)
// runs the CPU kernels over tensors tagged as CUDA memory, so the forward pass only succeeds if
// every weight, constant, batch tensor and scratch buffer was moved to the backend. Against the
// plain CPU backend, for each architecture and compute dtype, over the golden sequences as one
// mixed batch (prefill of every row, then teacher-forced decode steps with the reference's
// greedy tokens):
//   - logits bit-identical to the CPU run's (same kernels in the same order), so the greedy
//     tokens are the same;
//   - a steady-state decode step allocates nothing on the backend and crosses the bus twice:
//     one CopyFromHost (the packed batch) and one CopyToHost (the logits).
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/util/fake_device_backend.h"
#include "worker/models/forward_batch.h"
#include "worker/models/model.h"

namespace expertmesh::models {
namespace {

using Logits = SequenceChunk::Logits;
using expertmesh::testing::FakeDeviceBackend;
constexpr int32_t kBlockSize = 16;

struct Sequence {
  std::vector<int32_t> input_ids, greedy_tokens;
};

struct BackendRun {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  KvCacheTensors kv;
};

class GoldenDeviceTest : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    const std::string dir =
        std::string(EXPERTMESH_SOURCE_DIR) + "/tests/golden/" + std::get<0>(GetParam());
    if (!std::filesystem::exists(dir + "/reference.json")) {
      GTEST_SKIP() << dir << "/reference.json missing: run tools/golden/make_golden.sh";
    }
    absl::StatusOr<nlohmann::json> j = ReadJsonFile(dir + "/reference.json");
    ASSERT_TRUE(j.ok()) << j.status();
    model_dir_ = dir + "/" + j->at("model_dir").get<std::string>();
    for (const nlohmann::json& s : j->at("sequences")) {
      seqs_.push_back({s.at("input_ids").get<std::vector<int32_t>>(),
                       s.at("greedy_tokens").get<std::vector<int32_t>>()});
    }
    // Batch-invariant: graph replays pad batches to power-of-two buckets, and the comparisons
    // are bit for bit (the AMX family's default puts 1-3 tokens per weight on another kernel).
    kernels::cpu::CpuBackendOptions options;
    options.num_threads = 2;
    options.batch_invariant = true;
    auto cpu = kernels::cpu::CpuBackend::Create(options);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_.backend = std::move(*cpu);
    auto fake = FakeDeviceBackend::Create(options);
    ASSERT_TRUE(fake.ok()) << fake.status();
    fake_ = fake->get();
    dev_.backend = std::move(*fake);
    for (BackendRun* r : {&cpu_, &dev_}) {
      auto m = LoadModel(model_dir_, r->backend.get(), {.compute_dtype = std::get<1>(GetParam())});
      ASSERT_TRUE(m.ok()) << m.status();
      r->model = std::move(*m);
      auto kv = AllocateKvCache(*r->backend, r->model->kv_cache_spec(), 128, kBlockSize);
      ASSERT_TRUE(kv.ok()) << kv.status();
      r->kv = std::move(*kv);
    }
  }

  static absl::StatusOr<Tensor> Forward(BackendRun& r, const std::vector<SequenceChunk>& chunks) {
    auto batch = MakeForwardBatch(chunks, kBlockSize);
    if (!batch.ok()) return batch.status();
    auto logits =
        Tensor::Empty(DType::kF32, {batch->logit_rows.dim(0), r.model->config().vocab_size});
    if (!logits.ok()) return logits.status();
    if (absl::Status s = r.model->Forward(*batch, r.kv, *logits); !s.ok()) return s;
    return logits;
  }

  void ExpectIdentical(const std::vector<SequenceChunk>& chunks, const std::string& where) {
    auto want = Forward(cpu_, chunks);
    ASSERT_TRUE(want.ok()) << where << ": " << want.status();
    auto got = Forward(dev_, chunks);
    ASSERT_TRUE(got.ok()) << where << ": " << got.status();
    ASSERT_EQ(got->nbytes(), want->nbytes());
    EXPECT_EQ(0, std::memcmp(got->raw_data(), want->raw_data(), want->nbytes())) << where;
  }

  std::string model_dir_;
  std::vector<Sequence> seqs_;
  BackendRun cpu_, dev_;
  FakeDeviceBackend* fake_ = nullptr;
};

TEST_P(GoldenDeviceTest, MixedBatchLogitsEqualTheCpuBackendExactly) {
  EXPECT_GT(fake_->counters().weights, 0u);
  const size_t n = seqs_.size();
  std::vector<std::vector<int32_t>> tables(n), toks(n);
  std::vector<SequenceChunk> prefill;
  for (size_t i = 0; i < n; ++i) {
    for (int b = 0; b < 10; ++b) tables[i].push_back(static_cast<int32_t>(i) * 10 + b);
    prefill.push_back({seqs_[i].input_ids, 0, tables[i], Logits::kAll});
  }
  ExpectIdentical(prefill, "prefill");
  const size_t steps = seqs_[0].greedy_tokens.size();
  for (size_t k = 0; k < steps; ++k) {
    std::vector<SequenceChunk> step;
    for (size_t i = 0; i < n; ++i) {
      toks[i] = {seqs_[i].greedy_tokens[k]};
      step.push_back(
          {toks[i], static_cast<int64_t>(seqs_[i].input_ids.size() + k), tables[i], Logits::kLast});
    }
    const expertmesh::testing::FakeDeviceCounters before = fake_->counters();
    ExpectIdentical(step, "decode step " + std::to_string(k));
    if (k >= 1) {
      // Same shapes as the step before: nothing to allocate, nothing but the batch and the
      // logits to copy.
      const expertmesh::testing::FakeDeviceCounters& after = fake_->counters();
      EXPECT_EQ(after.allocations, before.allocations) << "decode step " << k;
      EXPECT_EQ(after.copies_from_host - before.copies_from_host, 1u) << "decode step " << k;
      EXPECT_EQ(after.copies_to_host - before.copies_to_host, 1u) << "decode step " << k;
    }
  }
}

// Decode steps as recorded graphs (decode_graph.h) on a fake device that emulates recording and
// replay: batches of every size from all sequences down to one (padded to power-of-two buckets,
// e.g. 3 -> 4 rows), teacher-forced, give the CPU's logits exactly; from the second step of a
// bucket on, the step is a replay (same tensors touched in the same order, nothing allocated,
// one copy each way).
TEST_P(GoldenDeviceTest, DecodeGraphsGiveTheEagerLogits) {
  fake_->set_graphs(true);
  const size_t n = seqs_.size();
  std::vector<std::vector<int32_t>> tables(n), toks(n);
  std::vector<SequenceChunk> prefill;
  for (size_t i = 0; i < n; ++i) {
    for (int b = 0; b < 10; ++b) tables[i].push_back(static_cast<int32_t>(i) * 10 + b);
    prefill.push_back({seqs_[i].input_ids, 0, tables[i], Logits::kLast});
  }
  ExpectIdentical(prefill, "prefill");
  std::vector<size_t> done(n, 0);  // decode tokens fed to sequence i so far
  const size_t budget = seqs_[0].greedy_tokens.size();
  int replays_checked = 0;
  for (size_t k = 0; k < 3 * n; ++k) {
    const size_t rows = n - (k % n);  // n, n-1, ..., 1, n, ...
    std::vector<SequenceChunk> step;
    for (size_t i = 0; i < rows; ++i) {
      if (done[i] >= std::min(budget, seqs_[i].greedy_tokens.size())) continue;
      toks[i] = {seqs_[i].greedy_tokens[done[i]]};
      step.push_back({toks[i], static_cast<int64_t>(seqs_[i].input_ids.size() + done[i]), tables[i],
                      Logits::kLast});
      ++done[i];
    }
    if (step.empty()) break;
    const expertmesh::testing::FakeDeviceCounters before = fake_->counters();
    ExpectIdentical(step, "graph decode step " + std::to_string(k));
    const expertmesh::testing::FakeDeviceCounters& after = fake_->counters();
    if (after.graph_replays > before.graph_replays) {
      ++replays_checked;
      EXPECT_EQ(after.allocations, before.allocations) << "graph decode step " << k;
      EXPECT_EQ(after.copies_from_host - before.copies_from_host, 1u) << "step " << k;
      EXPECT_EQ(after.copies_to_host - before.copies_to_host, 1u) << "step " << k;
    }
  }
  EXPECT_GT(fake_->counters().graph_recordings, 0u);
  EXPECT_GT(replays_checked, 0);
}

// The device checks are live: a host tensor handed to the fake backend's op is refused.
TEST(FakeDeviceBackendTest, RefusesHostTensors) {
  auto fake = FakeDeviceBackend::Create();
  ASSERT_TRUE(fake.ok()) << fake.status();
  Tensor host_w = *Tensor::Zeros(DType::kF32, {4, 8});
  Tensor x = *(*fake)->Allocate(DType::kF32, {2, 8});
  Tensor out = *(*fake)->Allocate(DType::kF32, {2, 4});
  ASSERT_TRUE((*fake)->Zero(x).ok());
  absl::Status s = (*fake)->Linear(x, host_w, Tensor(), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ((*fake)->CopyFromHost(host_w.raw_data(), host_w).code(),
            absl::StatusCode::kInvalidArgument);
  auto w = (*fake)->PrepareWeight(host_w);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->device(), kernels::Device::kCuda);
  EXPECT_NE(w->raw_data(), host_w.raw_data());
  EXPECT_TRUE((*fake)->Linear(x, *w, Tensor(), out).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Golden, GoldenDeviceTest,
    ::testing::Combine(::testing::Values("llama", "mixtral", "qwen2_moe", "qwen3_moe",
                                         "deepseek_v2", "deepseek_v3", "qwen3_moe_fp8",
                                         "deepseek_v3_fp8", "qwen3_moe_int4_ct",
                                         "deepseek_v3_int4_ct", "qwen3_moe_gptq",
                                         "deepseek_v3_gptq", "qwen3_moe_fp8_channel",
                                         "deepseek_v3_fp8_channel"),
                       ::testing::Values(DType::kF32, DType::kBF16)),
    [](const auto& info) {
      return std::get<0>(info.param) + (std::get<1>(info.param) == DType::kF32 ? "_fp32" : "_bf16");
    });

}  // namespace
}  // namespace expertmesh::models
