// Forward passes of every architecture on make-model checkpoints: finite logits, and the same
// logits whether a sequence runs as one prefill, in chunks, token by token, or inside a batch
// with other sequences (fp32 compute: only summation order may differ).
#include <cmath>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/util/tensor_compare.h"
#include "tests/worker/models/model_test_util.h"

namespace expertmesh::models {
namespace {

using testing::Blocks;
using testing::MakeTestModel;
using testing::RunStep;
using Logits = SequenceChunk::Logits;

constexpr int32_t kBlockSize = 4;
const expertmesh::testing::Tolerance kFp32Tol{2e-4, 2e-3, 0.99999};

std::vector<int32_t> Prompt(int64_t len, int64_t vocab, int seed) {
  std::vector<int32_t> p(len);
  for (int64_t i = 0; i < len; ++i) p[i] = static_cast<int32_t>((i * 7919 + seed * 104729) % vocab);
  return p;
}

Tensor Row(const Tensor& t, int64_t r) { return *t.Slice(r, r + 1); }

class ForwardTest : public ::testing::TestWithParam<model::Architecture> {
 protected:
  void SetUp() override {
    auto backend = kernels::cpu::CpuBackend::Create({.num_threads = 2});
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto dir = MakeTestModel(GetParam(), "tiny", "fwd");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  std::unique_ptr<Model> Load(DType cdt) {
    auto m = LoadModel(dir_, backend_.get(), {.compute_dtype = cdt});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }
  KvCacheTensors Cache(const Model& m) {
    auto kv = AllocateKvCache(*backend_, m.kv_cache_spec(), 64, kBlockSize);
    EXPECT_TRUE(kv.ok()) << kv.status();
    return std::move(*kv);
  }

  std::unique_ptr<kernels::cpu::CpuBackend> backend_;
  std::string dir_;
};

TEST_P(ForwardTest, PrefillMatchesChunkedAndDecode) {
  auto m = Load(DType::kF32);
  ASSERT_NE(m, nullptr);
  const int64_t vocab = m->config().vocab_size;
  const std::vector<int32_t> prompt = Prompt(13, vocab, 1);
  const std::vector<int32_t> table = Blocks(0, 4);

  KvCacheTensors kv = Cache(*m);
  auto full = RunStep(*m, kv, {{prompt, 0, table, Logits::kAll}});
  ASSERT_TRUE(full.ok()) << full.status();
  for (int64_t i = 0; i < full->numel(); ++i) ASSERT_TRUE(std::isfinite(full->data<float>()[i]));

  // Chunk of 5, chunk of 3, then one token at a time, into a fresh cache.
  KvCacheTensors kv2 = Cache(*m);
  std::span<const int32_t> p(prompt);
  auto a = RunStep(*m, kv2, {{p.subspan(0, 5), 0, table, Logits::kAll}});
  ASSERT_TRUE(a.ok()) << a.status();
  for (int r = 0; r < 5; ++r) {
    EXPECT_TRUE(expertmesh::testing::TensorsClose(Row(*a, r), Row(*full, r), kFp32Tol)) << r;
  }
  auto b = RunStep(*m, kv2, {{p.subspan(5, 3), 5, table, Logits::kLast}});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(expertmesh::testing::TensorsClose(*b, Row(*full, 7), kFp32Tol));
  for (int64_t pos = 8; pos < 13; ++pos) {
    auto d = RunStep(*m, kv2, {{p.subspan(pos, 1), pos, table, Logits::kLast}});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(expertmesh::testing::TensorsClose(*d, Row(*full, pos), kFp32Tol)) << pos;
  }
}

TEST_P(ForwardTest, BatchedEqualsAlone) {
  auto m = Load(DType::kF32);
  ASSERT_NE(m, nullptr);
  const int64_t vocab = m->config().vocab_size;
  const std::vector<int32_t> p1 = Prompt(9, vocab, 2), p2 = Prompt(3, vocab, 3),
                             p3 = Prompt(14, vocab, 4);
  KvCacheTensors kv = Cache(*m);
  auto alone1 = RunStep(*m, kv, {{p1, 0, Blocks(0, 3), Logits::kAll}});
  auto alone2 = RunStep(*m, kv, {{p2, 0, Blocks(3, 1), Logits::kAll}});
  auto alone3 = RunStep(*m, kv, {{p3, 0, Blocks(4, 4), Logits::kAll}});
  ASSERT_TRUE(alone1.ok() && alone2.ok() && alone3.ok());
  // Different blocks (non-contiguous, in reverse order) for the batched run.
  const std::vector<int32_t> t1 = {20, 18, 16}, t2 = {30}, t3 = {40, 39, 38, 37};
  auto batched = RunStep(
      *m, kv, {{p1, 0, t1, Logits::kAll}, {p2, 0, t2, Logits::kAll}, {p3, 0, t3, Logits::kAll}});
  ASSERT_TRUE(batched.ok()) << batched.status();
  int64_t r = 0;
  for (const auto* alone : {&*alone1, &*alone2, &*alone3}) {
    for (int64_t i = 0; i < alone->dim(0); ++i, ++r) {
      EXPECT_TRUE(expertmesh::testing::TensorsClose(Row(*batched, r), Row(*alone, i), kFp32Tol))
          << "row " << r;
    }
  }
  // A mixed step: decode of sequence 1 beside a prefill chunk of a new sequence.
  const std::vector<int32_t> next = {5}, t4 = {50};
  auto mixed = RunStep(*m, kv, {{next, 9, t1, Logits::kLast}, {p2, 0, t4, Logits::kLast}});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  std::vector<int32_t> p1n = p1;
  p1n.push_back(5);
  auto ref = RunStep(*m, kv, {{p1n, 0, Blocks(0, 3), Logits::kLast}});
  ASSERT_TRUE(ref.ok());
  EXPECT_TRUE(expertmesh::testing::TensorsClose(Row(*mixed, 0), *ref, kFp32Tol));
  EXPECT_TRUE(expertmesh::testing::TensorsClose(Row(*mixed, 1), Row(*alone2, 2), kFp32Tol));
}

TEST_P(ForwardTest, Bf16CloseToFp32) {
  auto m32 = Load(DType::kF32);
  auto m16 = Load(DType::kBF16);
  ASSERT_TRUE(m32 && m16);
  const std::vector<int32_t> p = Prompt(10, m32->config().vocab_size, 5);
  KvCacheTensors kv32 = Cache(*m32), kv16 = Cache(*m16);
  auto a = RunStep(*m32, kv32, {{p, 0, Blocks(0, 3), Logits::kAll}});
  auto b = RunStep(*m16, kv16, {{p, 0, Blocks(0, 3), Logits::kAll}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(expertmesh::testing::TensorsClose(*b, *a, {0.5, 0.1, 0.99}));
}

TEST_P(ForwardTest, BadInputIsAnErrorAndLeavesTheModelUsable) {
  auto m = Load(DType::kF32);
  ASSERT_NE(m, nullptr);
  KvCacheTensors kv = Cache(*m);
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(m->config().vocab_size), 2};
  auto r = RunStep(*m, kv, {{bad, 0, Blocks(0, 1), Logits::kLast}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  const std::vector<int32_t> good = {1, 2, 3};
  EXPECT_TRUE(RunStep(*m, kv, {{good, 0, Blocks(0, 1), Logits::kLast}}).ok());
  // A batch whose logits tensor has the wrong shape.
  auto batch = MakeForwardBatch(std::vector<SequenceChunk>{{good, 0, Blocks(0, 1)}}, kBlockSize);
  ASSERT_TRUE(batch.ok());
  Tensor wrong = *Tensor::Empty(DType::kF32, {2, m->config().vocab_size});
  EXPECT_EQ(m->Forward(*batch, kv, wrong).code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, ForwardTest,
                         ::testing::ValuesIn(model::AllArchitectures()), [](const auto& info) {
                           return std::string(model::ArchitectureName(info.param));
                         });

}  // namespace
}  // namespace expertmesh::models
