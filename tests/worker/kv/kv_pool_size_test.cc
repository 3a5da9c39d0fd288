#include "worker/kv/kv_pool_size.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/plan/model_plan.h"

namespace expertmesh::kv {
namespace {

using ::testing::HasSubstr;

model::ModelConfig Load(const std::string& file) {
  const std::string path = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + file;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = model::ParseModelConfig(nlohmann::json::parse(text.str()), path);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TEST(KvPoolSizeTest, HonoursTheBudget) {
  auto size = SizeKvPool(/*budget=*/1000, /*kv_bytes_per_token=*/10, /*block_size=*/16);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->block_bytes, 160u);
  EXPECT_EQ(size->num_blocks, 6);  // 6 * 160 = 960 <= 1000 < 7 * 160
  EXPECT_EQ(size->pool_bytes, 960u);
}

TEST(KvPoolSizeTest, RejectsBudgetsWithoutABlock) {
  auto size = SizeKvPool(159, 10, 16);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(size.status().message(), HasSubstr("holds no block"));
  EXPECT_FALSE(SizeKvPool(1 << 20, 0, 16).ok());
  EXPECT_FALSE(SizeKvPool(1 << 20, 10, 0).ok());
}

// MLA caches the latent (kv_lora_rank + rope dim) per layer; GQA k and v of its kv heads. The
// bytes come from model/plan; this checks the pool uses them rather than its own formula.
TEST(KvPoolSizeTest, UsesThePerRankPlanForMlaAndGqa) {
  const uint64_t budget = 64ull << 20;
  for (const char* file : {"deepseek_v3.json", "llama3_8b.json", "tiny_qwen3_moe.json"}) {
    SCOPED_TRACE(file);
    model::ModelConfig config = Load(file);
    model::ParallelConfig parallel{.tp = 1, .ep = 1, .rank = 0};
    auto plan = model::PlanRankMemory(config, parallel, DType::kBF16);
    ASSERT_TRUE(plan.ok());
    auto size = SizeKvPoolForModel(config, parallel, DType::kBF16, budget, 16);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(size->block_bytes, plan->kv_bytes_per_token * 16);
    EXPECT_LE(size->pool_bytes, budget);
    EXPECT_GT(size->pool_bytes + size->block_bytes, budget);
  }
  // DeepSeek-V3: 61 layers * (512 + 64) * 2 bytes per token.
  auto v3 = SizeKvPoolForModel(Load("deepseek_v3.json"), {}, DType::kBF16, budget, 16);
  ASSERT_TRUE(v3.ok());
  EXPECT_EQ(v3->block_bytes, 61u * (512 + 64) * 2 * 16);
  // Bad parallelism is reported, not crashed on.
  EXPECT_FALSE(
      SizeKvPoolForModel(Load("llama3_8b.json"), {.tp = 3}, DType::kBF16, budget, 16).ok());
}

}  // namespace
}  // namespace expertmesh::kv
