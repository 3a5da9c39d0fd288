// The memory plan (model::PlanRankMemory, which `expertmesh inspect` and docs/deploy.md print)
// against what a rank really keeps after loading: the bytes a device backend received
// (tests/util/fake_device_backend.h counts every PrepareWeight, fp8 scale grids and the RoPE
// table included) and the model's own count of its weights, within 5%, for fp8 and bf16
// checkpoints, GQA and MLA, one rank and ranks of tp / ep / tp x ep groups whose slices cut fp8
// scale blocks; int4 checkpoints, with a packed vocab-parallel lm_head too.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "model/config/model_config.h"
#include "model/plan/model_plan.h"
#include "tests/util/fake_device_backend.h"
#include "tests/util/shared_model.h"
#include "tests/worker/comm/fake_communicator.h"
#include "worker/models/model.h"

namespace expertmesh::models {
namespace {

struct PlanCase {
  std::string name;
  model::Architecture arch;
  DType dtype;
  int tp, ep, rank;
  model::LinearFormat quantization = model::LinearFormat::kPlain;  // int4 layouts (group 64)
  bool quantize_lm_head = false;                                   // int4 lm_head too
  model::LoadQuantization at_load = {};  // --quantize fp8, --quantize-lm-head fp8
};

// Widths whose tp halves cut 128 x 128 scale blocks (hidden 320, experts 192 wide).
absl::StatusOr<std::string> MakeModel(const PlanCase& c) {
  make_model::MakeModelOptions options;
  options.arch = c.arch;
  options.size = "tiny";
  options.overrides.hidden_size = 320;
  options.overrides.moe_intermediate_size = 192;
  options.overrides.intermediate_size = 384;
  options.dtype = c.dtype;
  options.seed = 11;
  options.quantization = c.quantization;
  options.group_size = 64;
  options.quantize_lm_head = c.quantize_lm_head;
  const char* suffix = c.quantization == model::LinearFormat::kInt4CompressedTensors ? "-int4-ct"
                       : c.quantization == model::LinearFormat::kInt4Gptq            ? "-int4-gptq"
                       : c.dtype == DType::kF8E4M3                                   ? "-fp8"
                                                                                     : "-bf16";
  options.out_dir = absl::StrCat(EXPERTMESH_BINARY_DIR, "/test-scratch/models/memory-plan-",
                                 std::string(model::ArchitectureName(c.arch)), suffix,
                                 c.quantize_lm_head ? "-lm-head" : "");
  return expertmesh::testing::MakeSharedModel(options);
}

class MemoryPlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(MemoryPlanTest, RankKeepsWhatThePlanSays) {
  const PlanCase& c = GetParam();
  absl::StatusOr<std::string> dir = MakeModel(c);
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(*dir);
  ASSERT_TRUE(config.ok()) << config.status();
  const model::ParallelConfig parallel{.tp = c.tp, .ep = c.ep, .rank = c.rank};
  absl::StatusOr<model::RankMemoryPlan> plan =
      model::PlanRankMemory(*config, parallel, config->torch_dtype, c.at_load);
  ASSERT_TRUE(plan.ok()) << plan.status();

  absl::StatusOr<std::unique_ptr<expertmesh::testing::FakeDeviceBackend>> device =
      expertmesh::testing::FakeDeviceBackend::Create();
  ASSERT_TRUE(device.ok()) << device.status();
  (*device)->set_q4_weights(true);
  std::vector<std::unique_ptr<comm::Communicator>> group =
      comm::CreateFakeGroup(parallel.WorldSize(), absl::Seconds(10));
  ModelOptions options;
  options.compute_dtype = DType::kBF16;
  options.shard = parallel;
  options.comm = parallel.Sharded() ? group[c.rank].get() : nullptr;
  options.decode_graph_max_batch = 0;
  options.quantize_fp8 = c.at_load.fp8;
  options.quantize_lm_head_fp8 = c.at_load.fp8_lm_head;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(*dir, device->get(), options);
  ASSERT_TRUE(model.ok()) << model.status();

  // The device also receives the RoPE table the plan lists beside the weights.
  const double planned = static_cast<double>(plan->weight_bytes + plan->rope_table_bytes);
  const double on_device = static_cast<double>((*device)->counters().weight_bytes);
  const double counted = static_cast<double>((*model)->weight_bytes());
  std::printf(
      "%s: plan %.3f MB, device received %.3f MB (%.2f%%), model counts %.3f MB of %.3f MB planned "
      "weights\n",
      c.name.c_str(), planned / 1e6, on_device / 1e6, 100.0 * (on_device / planned - 1),
      counted / 1e6, plan->weight_bytes / 1e6);
  EXPECT_NEAR(on_device / planned, 1.0, 0.05);
  EXPECT_NEAR(counted / static_cast<double>(plan->weight_bytes), 1.0, 0.05);
  if (c.quantize_lm_head) {
    // This rank's ceil(V / world) rows of lm_head, packed: half a byte per weight and an f32
    // scale per group of 64 (no zero points: make-model's int4 is symmetric), a fifth of bf16.
    const uint64_t rows = static_cast<uint64_t>(parallel.VocabRowsPerRank(config->vocab_size));
    const uint64_t hidden = static_cast<uint64_t>(config->hidden_size);
    EXPECT_EQ(plan->weight_bytes_by_role[static_cast<size_t>(model::TensorRole::kLmHead)],
              rows * hidden / 2 + rows * (hidden / 64) * 4);
  }
  if (c.at_load.fp8_lm_head) {
    // This rank's rows in fp8, and a scale per 128 x 128 block of the whole table, or per row
    // (and 128 columns) where the rank's rows start inside a block row.
    const uint64_t rows = static_cast<uint64_t>(parallel.VocabRowsPerRank(config->vocab_size));
    const uint64_t hidden = static_cast<uint64_t>(config->hidden_size);
    const bool aligned = parallel.VocabRows(config->vocab_size).begin % 128 == 0;
    EXPECT_EQ(plan->weight_bytes_by_role[static_cast<size_t>(model::TensorRole::kLmHead)],
              rows * hidden + (aligned ? (rows + 127) / 128 : rows) * ((hidden + 127) / 128) * 4);
  }
}

// The plan refuses what the loader refuses: fp8 over int4 weights, an fp8 copy of an int4
// lm_head.
TEST(MemoryPlanAtLoad, RefusesWhatTheLoaderRefuses) {
  for (bool lm_head : {false, true}) {
    const PlanCase c{"int4",
                     model::Architecture::kQwen3Moe,
                     DType::kBF16,
                     1,
                     1,
                     0,
                     model::LinearFormat::kInt4CompressedTensors,
                     true};
    absl::StatusOr<std::string> dir = MakeModel(c);
    ASSERT_TRUE(dir.ok()) << dir.status();
    absl::StatusOr<model::ModelConfig> config = model::LoadModelConfig(*dir);
    ASSERT_TRUE(config.ok()) << config.status();
    const model::LoadQuantization at_load{.fp8 = !lm_head, .fp8_lm_head = lm_head};
    EXPECT_EQ(model::PlanRankMemory(*config, {}, DType::kBF16, at_load).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, MemoryPlanTest,
    ::testing::Values(
        PlanCase{"qwen3_fp8", model::Architecture::kQwen3Moe, DType::kF8E4M3, 1, 1, 0},
        PlanCase{"qwen3_fp8_tp2_rank1", model::Architecture::kQwen3Moe, DType::kF8E4M3, 2, 1, 1},
        PlanCase{"qwen3_fp8_ep2_rank1", model::Architecture::kQwen3Moe, DType::kF8E4M3, 1, 2, 1},
        PlanCase{"qwen3_bf16_tp2_rank0", model::Architecture::kQwen3Moe, DType::kBF16, 2, 1, 0},
        PlanCase{"deepseek_v3_fp8", model::Architecture::kDeepseekV3, DType::kF8E4M3, 1, 1, 0},
        PlanCase{"deepseek_v3_fp8_tp2ep2_rank2", model::Architecture::kDeepseekV3, DType::kF8E4M3,
                 2, 2, 2},
        PlanCase{"deepseek_v3_bf16", model::Architecture::kDeepseekV3, DType::kBF16, 1, 1, 0},
        PlanCase{"deepseek_v3_bf16_tp2_rank1", model::Architecture::kDeepseekV3, DType::kBF16, 2, 1,
                 1},
        // int4 groups of 64: tp halves of the 192-wide experts cut a group in the middle.
        PlanCase{"qwen3_int4_ct_tp2_rank1", model::Architecture::kQwen3Moe, DType::kBF16, 2, 1, 1,
                 model::LinearFormat::kInt4CompressedTensors},
        PlanCase{"qwen3_int4_gptq_ep2_rank1", model::Architecture::kQwen3Moe, DType::kF16, 1, 2, 1,
                 model::LinearFormat::kInt4Gptq},
        PlanCase{"deepseek_v3_int4_ct", model::Architecture::kDeepseekV3, DType::kBF16, 1, 1, 0,
                 model::LinearFormat::kInt4CompressedTensors},
        // A packed lm_head, vocab-parallel: each rank keeps its rows packed.
        PlanCase{"qwen3_int4_ct_lm_head_tp2_rank1", model::Architecture::kQwen3Moe, DType::kBF16, 2,
                 1, 1, model::LinearFormat::kInt4CompressedTensors, true},
        PlanCase{"qwen3_int4_gptq_lm_head_ep2_rank0", model::Architecture::kQwen3Moe, DType::kF16,
                 1, 2, 0, model::LinearFormat::kInt4Gptq, true},
        // Quantized at load: --quantize fp8 of a bf16 checkpoint, --quantize-lm-head fp8 (rank 1
        // of 2 starts its 1056 rows inside a 128-row block; llama's lm_head is tied).
        PlanCase{"qwen3_bf16_quantize_fp8_tp2_rank1",
                 model::Architecture::kQwen3Moe,
                 DType::kBF16,
                 2,
                 1,
                 1,
                 model::LinearFormat::kPlain,
                 false,
                 {.fp8 = true}},
        PlanCase{"deepseek_v3_bf16_quantize_fp8",
                 model::Architecture::kDeepseekV3,
                 DType::kBF16,
                 1,
                 1,
                 0,
                 model::LinearFormat::kPlain,
                 false,
                 {.fp8 = true}},
        PlanCase{"qwen3_fp8_lm_head_fp8_tp2_rank1",
                 model::Architecture::kQwen3Moe,
                 DType::kF8E4M3,
                 2,
                 1,
                 1,
                 model::LinearFormat::kPlain,
                 false,
                 {.fp8_lm_head = true}},
        PlanCase{"qwen3_fp8_lm_head_fp8",
                 model::Architecture::kQwen3Moe,
                 DType::kF8E4M3,
                 1,
                 1,
                 0,
                 model::LinearFormat::kPlain,
                 false,
                 {.fp8_lm_head = true}},
        PlanCase{"llama_bf16_lm_head_fp8_tp2_rank0",
                 model::Architecture::kLlama,
                 DType::kBF16,
                 2,
                 1,
                 0,
                 model::LinearFormat::kPlain,
                 false,
                 {.fp8 = true, .fp8_lm_head = true}}),
    [](const ::testing::TestParamInfo<PlanCase>& info) { return info.param.name; });

}  // namespace
}  // namespace expertmesh::models
