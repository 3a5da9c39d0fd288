// Memory: the KV pool stays within its budget, and after every weight has been used the
// process's resident set grows by at most 10% over weights + KV pool + a stated overhead.
// Model: a make-model Qwen3-MoE of ~330 MB (bf16), its own process (a separate test binary)
// so the baseline is only the binary and its libraries.
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/util/cpu_engine.h"
#include "tests/worker/models/model_test_util.h"
#include "worker/engine/engine.h"

namespace expertmesh::engine {
namespace {

// Scratch buffers (activations for a 256-token step, per-op workspaces), the RoPE table and
// allocator slack: stated here, checked below.
constexpr uint64_t kOverheadBytes = 64ull << 20;

uint64_t RssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST(EngineMemoryTest, RssWithinWeightsPlusKvPlusOverhead) {
  make_model::ShapeOverrides o;
  o.hidden_size = 1024;
  o.num_layers = 6;
  o.num_heads = 16;
  o.num_kv_heads = 4;
  o.head_dim = 64;
  o.num_experts = 16;
  o.num_experts_per_tok = 4;
  o.moe_intermediate_size = 512;
  auto dir = models::testing::MakeTestModel(model::Architecture::kQwen3Moe, "small", "memory", o);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const uint64_t before = RssBytes();

  EngineOptions options;
  options.compute_dtype = DType::kBF16;
  options.kv_cache_bytes = 64ull << 20;
  options.max_model_len = 1024;
  auto e = expertmesh::testing::LoadCpuEngine(*dir, options, /*threads=*/2);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_LE((*e)->kv_cache_bytes(), options.kv_cache_bytes);
  EXPECT_GT((*e)->kv_cache_bytes(), options.kv_cache_bytes * 9 / 10);

  // 256 prompt tokens with 4 of 16 experts each: every expert's weights are read.
  for (int r = 0; r < 4; ++r) {
    scheduler::GenerationRequest req;
    req.id = std::to_string(r);
    for (int i = 0; i < 256; ++i) {
      req.prompt.push_back((i * 131 + r * 977) % static_cast<int>((*e)->config().vocab_size));
    }
    req.sampling.temperature = 0;
    req.max_tokens = 16;
    ASSERT_TRUE((*e)->AddRequest(req).ok());
  }
  while ((*e)->HasWork()) ASSERT_TRUE((*e)->Step().ok());

  const uint64_t weights = (*e)->model().weight_bytes();
  const uint64_t kv = (*e)->kv_cache_bytes();
  const uint64_t grew = RssBytes() - before;
  const double bound = 1.10 * static_cast<double>(weights + kv + kOverheadBytes);
  std::printf("weights %.1f MB, kv %.1f MB, rss growth %.1f MB, bound %.1f MB\n", weights / 1e6,
              kv / 1e6, grew / 1e6, bound / 1e6);
  EXPECT_GT(weights, 250ull << 20);
  EXPECT_LE(static_cast<double>(grew), bound);
}

}  // namespace
}  // namespace expertmesh::engine
