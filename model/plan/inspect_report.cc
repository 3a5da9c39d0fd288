#include "model/plan/inspect_report.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "model/config/model_config.h"
#include "model/config/weight_layout.h"
#include "model/plan/checkpoint_check.h"
#include "model/plan/model_plan.h"
#include "model/safetensors/checkpoint.h"

namespace expertmesh::model {
namespace {

absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

void Line(std::string& out, std::string_view key, const std::string& value) {
  absl::StrAppendFormat(&out, "  %-22s %s\n", Sv(key), value);
}

std::string Count(int64_t n) { return absl::StrCat(FormatCount(n), " (", n, ")"); }

std::string DescribeAttention(const ModelConfig& c) {
  if (c.UsesMla()) {
    return absl::StrCat("MLA, ", c.num_attention_heads, " heads, q_lora_rank ",
                        c.q_lora_rank.has_value() ? absl::StrCat(*c.q_lora_rank) : "none",
                        ", kv_lora_rank ", c.kv_lora_rank, ", qk ", c.qk_nope_head_dim, "+",
                        c.qk_rope_head_dim, ", v ", c.v_head_dim);
  }
  std::string s = absl::StrCat("GQA, ", c.num_attention_heads, " heads x ", c.head_dim, ", ",
                               c.num_key_value_heads, " kv heads");
  if (c.qkv_bias) absl::StrAppend(&s, ", qkv bias");
  if (c.o_proj_bias) absl::StrAppend(&s, ", o bias");
  if (c.qk_norm) absl::StrAppend(&s, ", qk-norm");
  if (c.sliding_window.has_value()) absl::StrAppend(&s, ", sliding window ", *c.sliding_window);
  return s;
}

std::string DescribeExperts(const ModelConfig& c) {
  std::string s = absl::StrCat(c.num_experts, " routed x ", c.moe_intermediate_size, ", top-",
                               c.num_experts_per_tok, ", ", Sv(MoeScoringName(c.scoring_func)),
                               ", ", Sv(TopkMethodName(c.topk_method)));
  if (c.topk_method != TopkMethod::kGreedy) {
    absl::StrAppend(&s, " (", c.n_group, " groups, keep ", c.topk_group, ")");
  }
  if (c.norm_topk_prob) absl::StrAppend(&s, ", renormalised");
  if (c.routed_scaling_factor != 1.0) {
    absl::StrAppend(&s, ", scale ", c.routed_scaling_factor);
  }
  if (c.shared_expert_intermediate_size > 0) {
    absl::StrAppend(&s, "; shared expert width ", c.shared_expert_intermediate_size,
                    c.shared_expert_gate ? " (sigmoid-gated)" : "");
  }
  return s;
}

std::string DescribeRope(const ModelConfig& c) {
  std::string s = absl::StrCat("theta ", c.rope_theta);
  if (c.rope_scaling.type != RopeScalingType::kNone) {
    absl::StrAppend(&s, ", ", Sv(RopeScalingTypeName(c.rope_scaling.type)), " x",
                    c.rope_scaling.factor, " (original ",
                    c.rope_scaling.original_max_position_embeddings, ")");
  }
  return s;
}

std::string DescribeQuantization(const ModelConfig& c) {
  if (c.fp8_quantization.has_value()) {
    const Fp8Quantization& q = *c.fp8_quantization;
    if (q.per_channel) return ", fp8 e4m3 per output channel (compressed-tensors)";
    return absl::StrCat(", fp8 e4m3 blocks ", q.block_rows, "x", q.block_cols);
  }
  if (!c.int4_quantization.has_value()) return "";
  const Int4Quantization& q = *c.int4_quantization;
  // lm_head is read whole by every token: whether it is packed matters to decode speed.
  const bool ct = q.format == Int4Quantization::Format::kCompressedTensors;
  const bool lm_head =
      !c.tie_word_embeddings && (ct ? CompressedTensorsQuantizes(c, "lm_head") : q.gptq_lm_head);
  const char* head = lm_head ? ", lm_head included" : "";
  if (ct) {
    return absl::StrCat(", int4 groups of ", q.group_size, " (compressed-tensors, symmetric", head,
                        ")");
  }
  return absl::StrCat(", int4 groups of ", q.group_size, " (GPTQ",
                      q.gptq_zero_minus_one ? "" : " v2", q.symmetric ? ", symmetric" : "",
                      q.act_order ? ", act-order" : "", head, ")");
}

// Appends the checkpoint section; returns the checkpoint's status.
absl::Status AppendCheckpoint(const std::string& dir, const ModelConfig& c, std::string& out) {
  absl::StrAppend(&out, "Checkpoint\n");
  std::error_code ec;
  if (!std::filesystem::exists(dir + "/" + kSingleFileName, ec) &&
      !std::filesystem::exists(dir + "/" + kIndexFileName, ec)) {
    Line(out, "files", "none (config only)");
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) {
    Line(out, "status", absl::StrCat("UNUSABLE: ", ckpt.status().message()));
    return ckpt.status();
  }
  const Checkpoint& k = **ckpt;
  Line(out, "files",
       absl::StrCat(k.files().size(), k.sharded() ? " shards, " : " file, ", k.num_tensors(),
                    " tensors, ", FormatBytes(k.TotalFileBytes()), " on disk"));
  std::string dtypes;
  for (const auto& [dtype, bytes] : k.PayloadBytesByDType()) {
    absl::StrAppend(&dtypes, dtypes.empty() ? "" : ", ", Sv(DTypeName(dtype)), " ",
                    FormatBytes(bytes));
  }
  Line(out, "dtypes", dtypes);
  absl::Status status = CheckCheckpointAgainstConfig(k, c);
  Line(out, "matches config.json", status.ok() ? "yes" : absl::StrCat("NO: ", status.message()));
  return status;
}

void AppendPlan(const ModelConfig& c, const RankMemoryPlan& plan, int64_t kv_tokens,
                const LoadQuantization& at_load, std::string& out) {
  const ParallelConfig& p = plan.parallel;
  std::string loaded;
  if (at_load.fp8 && !c.fp8_quantization.has_value()) loaded += " --quantize fp8";
  if (at_load.fp8_lm_head) loaded += " --quantize-lm-head fp8";
  absl::StrAppendFormat(&out, "Memory plan (tp=%d, ep=%d: %d ranks; bytes of rank 0%s)\n", p.tp,
                        p.ep, p.WorldSize(),
                        loaded.empty() ? "" : absl::StrCat(", loaded with", loaded));
  absl::StrAppendFormat(&out, "  %-24s %14s %14s\n", "component", "whole model", "per rank");
  for (int r = 0; r < kNumTensorRoles; ++r) {
    const uint64_t model = plan.model_bytes_by_role[static_cast<size_t>(r)];
    // A tied lm_head has no tensor of its own, but --quantize-lm-head fp8 gives it a copy.
    if (model == 0 && plan.weight_bytes_by_role[static_cast<size_t>(r)] == 0) continue;
    absl::StrAppendFormat(&out, "  %-24s %14s %14s\n",
                          Sv(TensorRoleName(static_cast<TensorRole>(r))), FormatBytes(model),
                          FormatBytes(plan.weight_bytes_by_role[static_cast<size_t>(r)]));
  }
  absl::StrAppendFormat(&out, "  %-24s %14s %14s\n", "weights", FormatBytes(plan.model_bytes),
                        FormatBytes(plan.weight_bytes));
  absl::StrAppendFormat(&out, "  %-24s %14s %14s\n",
                        absl::StrCat("kv cache / token (", Sv(DTypeName(plan.kv_dtype)), ")"), "",
                        FormatBytes(plan.kv_bytes_per_token));
  absl::StrAppendFormat(&out, "  %-24s %14s %14s\n", absl::StrCat("kv cache x ", kv_tokens), "",
                        FormatBytes(plan.KvBytes(kv_tokens)));
  absl::StrAppendFormat(&out, "  %-24s %14s %14s\n",
                        absl::StrCat("rope table x ", plan.rope_positions), "",
                        FormatBytes(plan.rope_table_bytes));
  absl::StrAppendFormat(
      &out, "  %-24s %14s %14s\n", "weights + rope + kv cache", "",
      FormatBytes(plan.weight_bytes + plan.rope_table_bytes + plan.KvBytes(kv_tokens)));
  if (c.IsMoe() && p.ep > 1) {
    for (int e = 0; e < p.ep; ++e) {
      ExpertRange r = ParallelConfig{p.tp, p.ep, e * p.tp}.ExpertsOnRank(c.num_experts);
      absl::StrAppendFormat(&out, "  ep rank %d (ranks %d..%d) holds experts [%d, %d)\n", e,
                            e * p.tp, e * p.tp + p.tp - 1, r.first, r.first + r.count);
    }
  }
}

}  // namespace

absl::StatusOr<InspectReport> BuildInspectReport(const std::string& model_dir,
                                                 const InspectOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(model_dir));
  if (options.kv_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-tokens must not be negative, got ", options.kv_tokens));
  }
  const DType kv_dtype = c.torch_dtype == DType::kF32 ? DType::kF32 : DType::kBF16;
  ASSIGN_OR_RETURN(RankMemoryPlan plan,
                   PlanRankMemory(c, {options.tp, options.ep, 0}, kv_dtype, options.at_load));
  InspectReport report;
  std::string& out = report.text;
  absl::StrAppend(&out, "Model ", model_dir, "\n");
  Line(out, "architecture",
       absl::StrCat(Sv(ArchitectureName(c.architecture)),
                    c.model_type.empty() ? "" : absl::StrCat(" (", c.model_type, ")")));
  Line(out, "layers",
       absl::StrCat(c.num_hidden_layers, " (", c.NumMoeLayers(), " MoE, ",
                    c.num_hidden_layers - c.NumMoeLayers(), " dense)"));
  Line(out, "hidden / vocab",
       absl::StrCat(c.hidden_size, " / ", c.vocab_size,
                    c.tie_word_embeddings ? " (tied embeddings)" : ""));
  Line(out, "attention", DescribeAttention(c));
  if (c.NumMoeLayers() < c.num_hidden_layers) {
    Line(out, "dense mlp width", absl::StrCat(c.intermediate_size));
  }
  if (c.IsMoe()) Line(out, "experts", DescribeExperts(c));
  Line(out, "rope", DescribeRope(c));
  Line(out, "context", absl::StrCat(c.max_position_embeddings, " positions"));
  Line(out, "dtype", absl::StrCat(Sv(DTypeName(c.torch_dtype)), DescribeQuantization(c)));

  const ParameterCounts counts = CountParameters(c);
  absl::StrAppend(&out, "Parameters\n");
  Line(out, "total", Count(counts.total));
  Line(out, "active per token", Count(counts.active_per_token));
  Line(out, "  without embedding", Count(counts.active_without_embedding));
  for (int r = 0; r < kNumTensorRoles; ++r) {
    const int64_t n = counts.by_role[static_cast<size_t>(r)];
    if (n > 0)
      Line(out, absl::StrCat("  ", Sv(TensorRoleName(static_cast<TensorRole>(r)))), FormatCount(n));
  }
  report.checkpoint = AppendCheckpoint(model_dir, c, out);
  AppendPlan(c, plan, options.kv_tokens, options.at_load, out);
  return report;
}

}  // namespace expertmesh::model
