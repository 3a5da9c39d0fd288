#include "model/plan/model_plan.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/plan/parallel_config.h"

namespace expertmesh::model {
namespace {

using ::testing::HasSubstr;

ModelConfig Load(const std::string& file) {
  const std::string path = std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/" + file;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseModelConfig(nlohmann::json::parse(text.str()), path);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

struct PublishedCount {
  std::string file;
  double total_billions;               // as published by the model's authors
  double active_billions;              // "activated parameters"
  double tolerance;                    // relative, stated per model (published figures are rounded)
  bool active_counts_input_embedding;  // the publisher's convention
};
void PrintTo(const PublishedCount& c, std::ostream* os) { *os << c.file; }

class PublishedCountTest : public ::testing::TestWithParam<PublishedCount> {};

TEST_P(PublishedCountTest, MatchesPublishedNumbers) {
  const PublishedCount& p = GetParam();
  ParameterCounts counts = CountParameters(Load(p.file));
  const double total = static_cast<double>(counts.total) / 1e9;
  const double active =
      static_cast<double>(p.active_counts_input_embedding ? counts.active_per_token
                                                          : counts.active_without_embedding) /
      1e9;
  RecordProperty("total_billions", std::to_string(total));
  RecordProperty("active_billions", std::to_string(active));
  EXPECT_NEAR(total, p.total_billions, p.total_billions * p.tolerance) << "total";
  EXPECT_NEAR(active, p.active_billions, p.active_billions * p.tolerance) << "active";
  EXPECT_LE(counts.active_per_token, counts.total);
}

// DeepSeek counts activated parameters without the input embedding, the others with it.
// Published: Mixtral paper (46.7B / 12.9B); DeepSeek-V3 README_WEIGHTS (671B main model /
// 36.6B activated incl. the 0.9B output head); Qwen3 model card (30.5B / 3.3B); DeepSeek-V2
// paper (V2-Lite 15.7B / 2.4B); Qwen1.5-MoE blog (14.3B / 2.7B); Llama 3 model card (8.03B).
INSTANTIATE_TEST_SUITE_P(
    RealModels, PublishedCountTest,
    ::testing::Values(PublishedCount{"mixtral_8x7b.json", 46.7, 12.9, 0.01, true},
                      PublishedCount{"deepseek_v3.json", 671.0, 36.6, 0.01, false},
                      PublishedCount{"qwen3_30b_a3b.json", 30.5, 3.3, 0.02, true},
                      PublishedCount{"deepseek_v2_lite.json", 15.7, 2.4, 0.03, false},
                      PublishedCount{"qwen1.5_moe_a2.7b.json", 14.3, 2.7, 0.01, true},
                      PublishedCount{"llama3_8b.json", 8.03, 8.03, 0.005, true}),
    [](const auto& info) {
      std::string name = info.param.file.substr(0, info.param.file.size() - 5);
      for (char& ch : name) {
        if (ch == '.') ch = '_';
      }
      return name;
    });

TEST(ParameterCountTest, TinyLlamaByHand) {
  // vocab 512, hidden 64, inter 128, 2 layers, 4 heads x 16, 2 kv heads, tied embeddings.
  ParameterCounts c = CountParameters(Load("tiny_llama.json"));
  const int64_t attention = 64 * 64 + 2 * (32 * 64) + 64 * 64;
  const int64_t mlp = 3 * 64 * 128;
  const int64_t norms = 2 * 64;
  EXPECT_EQ(c.total, 512 * 64 + 2 * (attention + mlp + norms) + 64);
  EXPECT_EQ(c.active_per_token, c.total);
  EXPECT_EQ(c.of(TensorRole::kLmHead), 0);
}

TEST(ParallelConfigTest, RankArithmetic) {
  ParallelConfig p{.tp = 2, .ep = 4, .rank = 5};
  ASSERT_TRUE(p.Validate().ok());
  EXPECT_EQ(p.WorldSize(), 8);
  EXPECT_EQ(p.TpRank(), 1);
  EXPECT_EQ(p.EpRank(), 2);
  ExpertRange r = p.ExpertsOnRank(64);
  EXPECT_EQ(r.first, 32);
  EXPECT_EQ(r.count, 16);
  EXPECT_TRUE(r.Contains(47));
  EXPECT_FALSE(r.Contains(48));
  EXPECT_EQ(p.EpRankOfExpert(47, 64), 2);
  EXPECT_THAT((ParallelConfig{.tp = 2, .ep = 2, .rank = 4}).Validate().message(),
              HasSubstr("rank 4 outside [0, 4)"));
  EXPECT_FALSE((ParallelConfig{.tp = 0, .ep = 1, .rank = 0}).Validate().ok());
}

TEST(MemoryPlanTest, ValidationErrors) {
  ModelConfig mixtral = Load("mixtral_8x7b.json");
  EXPECT_THAT(ValidateParallelism(mixtral, {.tp = 3, .ep = 1, .rank = 0}).message(),
              HasSubstr("num_attention_heads 32 is not divisible by tp 3"));
  EXPECT_THAT(ValidateParallelism(mixtral, {.tp = 1, .ep = 3, .rank = 0}).message(),
              HasSubstr("num_experts 8 is not divisible by ep 3"));
  ModelConfig llama = Load("llama3_8b.json");
  EXPECT_THAT(ValidateParallelism(llama, {.tp = 1, .ep = 2, .rank = 0}).message(),
              HasSubstr("needs a mixture-of-experts model"));
  ModelConfig qwen3 = Load("qwen3_30b_a3b.json");  // 32 heads, 4 kv heads
  EXPECT_TRUE(ValidateParallelism(qwen3, {.tp = 8, .ep = 1, .rank = 0}).ok());
  EXPECT_TRUE(ValidateParallelism(qwen3, {.tp = 2, .ep = 1, .rank = 0}).ok());
  ModelConfig tiny = Load("tiny_mixtral.json");  // 4 heads, 2 kv heads, expert width 96
  EXPECT_TRUE(ValidateParallelism(tiny, {.tp = 4, .ep = 1, .rank = 0}).ok());
  EXPECT_THAT(
      PlanRankMemory(Load("tiny_qwen3_moe.json"), {.tp = 1, .ep = 16, .rank = 0}, DType::kBF16)
          .status()
          .message(),
      HasSubstr("num_experts 8 is not divisible by ep 16"));
}

TEST(MemoryPlanTest, KvCachePerToken) {
  // MLA caches kv_lora_rank + qk_rope_head_dim per layer on every tp rank.
  ModelConfig v3 = Load("deepseek_v3.json");
  for (int tp : {1, 8}) {
    auto plan = PlanRankMemory(v3, {.tp = tp, .ep = 1, .rank = 0}, DType::kBF16);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->kv_bytes_per_token, 61u * (512 + 64) * 2);
  }
  // GQA: 2 * kv heads on the rank * head_dim per layer; one head per rank when tp > kv heads.
  ModelConfig llama = Load("llama3_8b.json");
  EXPECT_EQ(PlanRankMemory(llama, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16)->kv_bytes_per_token,
            32u * 2 * 8 * 128 * 2);
  EXPECT_EQ(PlanRankMemory(llama, {.tp = 2, .ep = 1, .rank = 1}, DType::kBF16)->kv_bytes_per_token,
            32u * 2 * 4 * 128 * 2);
  EXPECT_EQ(PlanRankMemory(llama, {.tp = 16, .ep = 1, .rank = 3}, DType::kBF16)->kv_bytes_per_token,
            32u * 2 * 1 * 128 * 2);
  EXPECT_EQ(PlanRankMemory(llama, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16)->KvBytes(1000),
            131072u * 1000);
}

// Summed over all ranks: experts are stored exactly once, tp-split tensors once per ep group,
// replicated tensors once per rank.
TEST(MemoryPlanTest, RanksPartitionTheModel) {
  for (const char* file :
       {"mixtral_8x7b.json", "deepseek_v3.json", "qwen3_30b_a3b.json", "qwen1.5_moe_a2.7b.json"}) {
    SCOPED_TRACE(file);
    ModelConfig config = Load(file);
    const int tp = 2;
    const int ep = 4;
    std::array<uint64_t, kNumTensorRoles> sum{};
    RankMemoryPlan first;
    for (int rank = 0; rank < tp * ep; ++rank) {
      auto plan = PlanRankMemory(config, {.tp = tp, .ep = ep, .rank = rank}, DType::kBF16);
      ASSERT_TRUE(plan.ok()) << plan.status();
      if (rank == 0) first = *plan;
      for (int r = 0; r < kNumTensorRoles; ++r) sum[r] += plan->weight_bytes_by_role[r];
    }
    auto model = [&](TensorRole role) {
      return first.model_bytes_by_role[static_cast<size_t>(role)];
    };
    auto total = [&](TensorRole role) { return sum[static_cast<size_t>(role)]; };
    EXPECT_GT(model(TensorRole::kRoutedExpert), 0u);
    // fp8 scale blocks may round up per rank; otherwise the split is exact.
    const bool fp8 = config.fp8_quantization.has_value();
    if (!fp8) {
      EXPECT_EQ(total(TensorRole::kRoutedExpert), model(TensorRole::kRoutedExpert));
      EXPECT_EQ(total(TensorRole::kAttentionHeads), ep * model(TensorRole::kAttentionHeads));
    } else {
      EXPECT_NEAR(static_cast<double>(total(TensorRole::kRoutedExpert)),
                  static_cast<double>(model(TensorRole::kRoutedExpert)),
                  0.001 * static_cast<double>(model(TensorRole::kRoutedExpert)));
    }
    EXPECT_EQ(total(TensorRole::kNorm), tp * ep * model(TensorRole::kNorm));
    EXPECT_EQ(total(TensorRole::kRouter), tp * ep * model(TensorRole::kRouter));
    EXPECT_EQ(first.experts.count, config.num_experts / ep);
    EXPECT_LT(first.weight_bytes, first.model_bytes);
  }
}

TEST(MemoryPlanTest, Fp8CheckpointBytes) {
  // DeepSeek-V3 fp8: ~1 byte per quantized parameter plus bf16 embeddings, router and norms.
  // The published checkpoint is ~642 GiB for 671B + 14B (MTP) parameters; without MTP ~626 GiB.
  ModelConfig v3 = Load("deepseek_v3.json");
  auto plan = PlanRankMemory(v3, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  ASSERT_TRUE(plan.ok());
  const double gib = static_cast<double>(plan->model_bytes) / (1u << 30);
  EXPECT_GT(gib, 620.0);
  EXPECT_LT(gib, 635.0);
}

// --quantize fp8 of Qwen3-30B-A3B in bf16 keeps what its published FP8 checkpoint keeps (the same
// tensors quantized, the same 128 x 128 blocks), rank by rank, while the checkpoint's own bytes
// stay bf16; --quantize-lm-head fp8 then takes lm_head from 2 bytes per weight to 1 (+ scales).
TEST(MemoryPlanTest, QuantizedAtLoadKeepsThePublishedFp8Bytes) {
  const ModelConfig bf16 = Load("qwen3_30b_a3b.json");
  ASSERT_FALSE(bf16.fp8_quantization.has_value());
  ModelConfig fp8 = bf16;
  fp8.fp8_quantization = Fp8Quantization{};
  for (const ParallelConfig p :
       {ParallelConfig{.tp = 1, .ep = 1, .rank = 0}, ParallelConfig{.tp = 4, .ep = 2, .rank = 5}}) {
    auto published = PlanRankMemory(fp8, p, DType::kBF16);
    auto quantized = PlanRankMemory(bf16, p, DType::kBF16, {.fp8 = true});
    auto plain = PlanRankMemory(bf16, p, DType::kBF16);
    auto lm_head = PlanRankMemory(bf16, p, DType::kBF16, {.fp8 = true, .fp8_lm_head = true});
    ASSERT_TRUE(published.ok() && quantized.ok() && plain.ok() && lm_head.ok());
    EXPECT_EQ(quantized->weight_bytes_by_role, published->weight_bytes_by_role);
    EXPECT_EQ(quantized->model_bytes, plain->model_bytes);
    EXPECT_LT(quantized->weight_bytes, plain->weight_bytes * 55 / 100);
    const size_t head = static_cast<size_t>(TensorRole::kLmHead);
    const uint64_t rows = static_cast<uint64_t>(p.VocabRowsPerRank(bf16.vocab_size));
    EXPECT_EQ(published->weight_bytes_by_role[head], rows * 2048 * 2);
    // 151,936 rows: one rank's all (aligned: 1,187 block rows of 16 blocks); 8 ranks' 18,992
    // each, rank 5's starting at 94,960 = 741.875 x 128 (a scale row per row).
    const uint64_t scale_rows = p.WorldSize() == 1 ? 1187 : rows;
    EXPECT_EQ(lm_head->weight_bytes_by_role[head], rows * 2048 + scale_rows * 16 * 4);
    EXPECT_EQ(lm_head->weight_bytes - quantized->weight_bytes,
              lm_head->weight_bytes_by_role[head] - quantized->weight_bytes_by_role[head]);
  }
}

// A packed int4 checkpoint: parameters count out x in per weight, and a rank keeps the packed
// bytes plus f32 scales (4 bytes per group), not the bf16 scales or GPTQ metadata of the files.
TEST(MemoryPlanTest, Int4Bytes) {
  ModelConfig bf16 = Load("tiny_qwen3_moe.json");
  ModelConfig gptq = Load("tiny_qwen3_moe_gptq.json");
  EXPECT_EQ(CountParameters(gptq).total, CountParameters(bf16).total);
  EXPECT_EQ(CountParameters(gptq).active_per_token, CountParameters(bf16).active_per_token);
  auto plan = PlanRankMemory(gptq, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  auto plain = PlanRankMemory(bf16, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  ASSERT_TRUE(plan.ok() && plain.ok());
  // Routed experts: 2 layers x 8 experts x 3 weights of 32 x 64 = 2048 values, in groups of 32:
  // 1024 bytes of int4 plus 64 f32 scales (256 bytes) each.
  const uint64_t experts = 2 * 8 * 3;
  EXPECT_EQ(plan->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRoutedExpert)],
            experts * (1024 + 256));
  EXPECT_EQ(plain->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRoutedExpert)],
            experts * 2048 * 2);
  // Routers and norms are not quantized.
  EXPECT_EQ(plan->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRouter)],
            plain->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRouter)]);

  // Kimi-K2's layout: only the routed experts of the MoE layers are int4.
  ModelConfig kimi = Load("tiny_deepseek_v3_int4.json");
  ModelConfig v3 = Load("tiny_deepseek_v3.json");
  auto kp = PlanRankMemory(kimi, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  auto vp = PlanRankMemory(v3, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  ASSERT_TRUE(kp.ok() && vp.ok());
  // N bf16 values: 2N bytes; as int4 in groups of 32: N / 2 + 4 N / 32 = 5 N / 8.
  EXPECT_EQ(kp->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRoutedExpert)] * 16,
            vp->weight_bytes_by_role[static_cast<size_t>(TensorRole::kRoutedExpert)] * 5);
  EXPECT_EQ(kp->weight_bytes_by_role[static_cast<size_t>(TensorRole::kSharedExpert)],
            vp->weight_bytes_by_role[static_cast<size_t>(TensorRole::kSharedExpert)]);
}

// An int4 lm_head (GPTQ `lm_head: true`): counted as lm_head parameters, kept packed with f32
// scales, vocab-parallel over the ranks like a plain one, its act-order column order whole on
// every rank.
TEST(MemoryPlanTest, Int4LmHeadBytes) {
  const std::string path =
      std::string(EXPERTMESH_SOURCE_DIR) + "/tests/model/config/data/tiny_qwen3_moe_gptq.json";
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json = nlohmann::json::parse(text.str());
  json["quantization_config"]["lm_head"] = true;
  absl::StatusOr<ModelConfig> gptq = ParseModelConfig(json, path);
  ASSERT_TRUE(gptq.ok()) << gptq.status();
  const ModelConfig bf16 = Load("tiny_qwen3_moe.json");
  const size_t lm_head = static_cast<size_t>(TensorRole::kLmHead);
  EXPECT_EQ(CountParameters(*gptq).by_role[lm_head], 512 * 64);
  EXPECT_EQ(CountParameters(*gptq).total, CountParameters(bf16).total);
  EXPECT_EQ(CountParameters(*gptq).active_per_token, CountParameters(bf16).active_per_token);

  auto plan = PlanRankMemory(*gptq, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  auto plain = PlanRankMemory(bf16, {.tp = 1, .ep = 1, .rank = 0}, DType::kBF16);
  ASSERT_TRUE(plan.ok() && plain.ok());
  // 512 x 64 values in groups of 32: 16384 bytes of int4 and 1024 f32 scales (symmetric: the
  // zero points are not kept), against 65536 bytes of bf16.
  EXPECT_EQ(plan->weight_bytes_by_role[lm_head], 16384u + 4096u);
  EXPECT_EQ(plain->weight_bytes_by_role[lm_head], 65536u);

  // Asymmetric act-order, ep 2: each rank 256 rows with their scales and zero points, and the
  // 64 features' column order.
  json["quantization_config"]["sym"] = false;
  json["quantization_config"]["desc_act"] = true;
  absl::StatusOr<ModelConfig> act = ParseModelConfig(json, path);
  ASSERT_TRUE(act.ok()) << act.status();
  auto rank = PlanRankMemory(*act, {.tp = 1, .ep = 2, .rank = 1}, DType::kBF16);
  ASSERT_TRUE(rank.ok());
  EXPECT_EQ(rank->weight_bytes_by_role[lm_head], 8192u + 2048u + 2048u + 256u);
}

TEST(FormatTest, HumanUnits) {
  EXPECT_EQ(FormatCount(46'702'792'704), "46.70 B");
  EXPECT_EQ(FormatCount(512), "512");
  EXPECT_EQ(FormatCount(12'900'000), "12.90 M");
  EXPECT_EQ(FormatBytes(12), "12 B");
  EXPECT_EQ(FormatBytes(3u << 29), "1.50 GiB");
}

}  // namespace
}  // namespace expertmesh::model
