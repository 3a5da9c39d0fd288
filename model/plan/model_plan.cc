#include "model/plan/model_plan.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "model/config/weight_layout.h"

namespace expertmesh::model {
namespace {

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

absl::Status Unshardable(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("cannot shard the model: ", what));
}

// Bytes of one tensor `name` that `parallel.rank` loads.
uint64_t RankBytes(const ModelConfig& c, const ParallelConfig& p, const ClassifiedTensor& t,
                   const std::string& name, uint64_t bytes, const ExpertRange& experts) {
  const uint64_t tp = static_cast<uint64_t>(p.tp);
  switch (t.role) {
    case TensorRole::kEmbedding:
    case TensorRole::kLmHead: {
      // An int4 lm_head's act-order column order is one per input feature, on every rank.
      if (name.ends_with(".g_idx")) return bytes;
      // Vocab-parallel over the whole group (worker/models/shard.h): each of the tp x ep ranks
      // holds ceil(vocab / (tp x ep)) rows (the last one padded).
      const uint64_t vocab = static_cast<uint64_t>(c.vocab_size);
      return bytes / vocab * CeilDiv(vocab, tp * static_cast<uint64_t>(p.ep));
    }
    case TensorRole::kAttentionKv: {
      const int64_t kv_on_rank = std::max<int64_t>(1, c.num_key_value_heads / p.tp);
      return bytes / static_cast<uint64_t>(c.num_key_value_heads) *
             static_cast<uint64_t>(kv_on_rank);
    }
    case TensorRole::kAttentionHeads:
    case TensorRole::kDenseMlp:
    case TensorRole::kSharedExpert:
      return CeilDiv(bytes, tp);  // ceil: fp8 scale blocks may straddle the split
    case TensorRole::kRoutedExpert:
      return experts.Contains(t.expert) ? CeilDiv(bytes, tp) : 0;
    case TensorRole::kAttentionShared:
    case TensorRole::kRouter:
    case TensorRole::kNorm:
      return bytes;
  }
  return bytes;
}

std::string FormatScaled(double value, const char* const* units, int num_units, double base) {
  int unit = 0;
  while (value >= base && unit + 1 < num_units) {
    value /= base;
    ++unit;
  }
  char buffer[64];
  if (unit == 0) {
    std::snprintf(buffer, sizeof(buffer), "%.0f%s", value, units[0]);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.2f %s", value, units[unit]);
  }
  return buffer;
}

}  // namespace

ParameterCounts CountParameters(const ModelConfig& config) {
  ParameterCounts counts;
  int64_t routed = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    const ClassifiedTensor t = ClassifyTensor(spec.name);
    const int64_t n = spec.Parameters();  // 0 for scales and other quantization metadata
    counts.by_role[static_cast<size_t>(t.role)] += n;
    counts.total += n;
    if (t.role == TensorRole::kRoutedExpert) routed += n;
  }
  counts.active_per_token = counts.total - routed;
  if (config.IsMoe()) {
    // Experts of a layer are equal in size, so a token touches k / E of the routed weights.
    counts.active_per_token += routed / config.num_experts * config.num_experts_per_tok;
  }
  counts.active_without_embedding = counts.active_per_token - counts.of(TensorRole::kEmbedding);
  return counts;
}

absl::Status ValidateParallelism(const ModelConfig& c, const ParallelConfig& p) {
  absl::Status status = p.Validate();
  if (!status.ok()) return status;
  if (c.num_attention_heads % p.tp != 0) {
    return Unshardable(absl::StrCat("num_attention_heads ", c.num_attention_heads,
                                    " is not divisible by tp ", p.tp));
  }
  if (!c.UsesMla() && c.num_key_value_heads % p.tp != 0 && p.tp % c.num_key_value_heads != 0) {
    return Unshardable(absl::StrCat("num_key_value_heads ", c.num_key_value_heads, " and tp ", p.tp,
                                    " do not divide one another"));
  }
  if (c.NumMoeLayers() < c.num_hidden_layers && c.intermediate_size % p.tp != 0) {
    return Unshardable(
        absl::StrCat("intermediate_size ", c.intermediate_size, " is not divisible by tp ", p.tp));
  }
  if (!c.IsMoe()) {
    if (p.ep > 1) {
      return Unshardable(absl::StrCat("ep ", p.ep, " > 1 needs a mixture-of-experts model"));
    }
    return absl::OkStatus();
  }
  if (c.moe_intermediate_size % p.tp != 0) {
    return Unshardable(absl::StrCat("moe_intermediate_size ", c.moe_intermediate_size,
                                    " is not divisible by tp ", p.tp));
  }
  if (c.shared_expert_intermediate_size % p.tp != 0) {
    return Unshardable(absl::StrCat("shared expert width ", c.shared_expert_intermediate_size,
                                    " is not divisible by tp ", p.tp));
  }
  if (c.num_experts % p.ep != 0) {
    return Unshardable(
        absl::StrCat("num_experts ", c.num_experts, " is not divisible by ep ", p.ep));
  }
  return absl::OkStatus();
}

// What the loader keeps of one MLA layer in place of kv_b_proj (worker/models/deepseek.cc):
// per head on this rank, the absorbed query projection [rank + rope, nope + rope] and value
// projection [v, rank + rope], plus the latent and rope selectors and a ones vector, all in
// the storage dtype (f32 for an fp8 checkpoint: e4m3 times a scale is not a bf16 number).
uint64_t MlaDerivedBytesPerLayer(const ModelConfig& c, const ParallelConfig& p) {
  const uint64_t heads = static_cast<uint64_t>(c.num_attention_heads / p.tp);
  const uint64_t rank = static_cast<uint64_t>(c.kv_lora_rank);
  const uint64_t rope = static_cast<uint64_t>(c.qk_rope_head_dim);
  const uint64_t nope = static_cast<uint64_t>(c.qk_nope_head_dim);
  const uint64_t v = static_cast<uint64_t>(c.v_head_dim);
  const uint64_t latent = rank + rope;
  const uint64_t elements =
      heads * (latent * (nope + rope) + v * latent) + latent * rank + latent * rope + latent;
  const bool f32 = c.fp8_quantization.has_value() || c.int4_quantization.has_value() ||
                   c.torch_dtype == DType::kF32;
  return elements * (f32 ? 4 : 2);
}

// Any tensor of MLA's kv_b_proj: its weight (plain, fp8 or packed int4) and quantization data.
bool IsMlaKvB(const ModelConfig& c, const std::string& name) {
  return c.UsesMla() && name.find("self_attn.kv_b_proj.") != std::string::npos;
}

// The tensor of a Linear that holds its weights (the one the derived projections replace).
bool IsWeightTensor(const std::string& name) {
  return name.ends_with(".weight") || name.ends_with(".weight_packed") ||
         name.ends_with(".qweight");
}

// Bytes of this rank's fp8 lm_head (WeightLoader::GetRowsQuantizedToFp8): its ceil(V / world)
// rows, one byte each, and f32 scales per 128 x 128 block, or per row and 128 columns when its
// rows start inside a block row.
uint64_t Fp8LmHeadBytes(const ModelConfig& c, const ParallelConfig& p) {
  const Fp8Quantization blocks;  // 128 x 128, as --quantize fp8 and the published files
  const uint64_t rows = static_cast<uint64_t>(p.VocabRowsPerRank(c.vocab_size));
  const uint64_t begin = static_cast<uint64_t>(p.VocabRows(c.vocab_size).begin);
  const uint64_t hidden = static_cast<uint64_t>(c.hidden_size);
  const uint64_t block_rows = static_cast<uint64_t>(blocks.block_rows);
  const uint64_t scale_rows = begin % block_rows == 0 ? CeilDiv(rows, block_rows) : rows;
  return rows * hidden + scale_rows * CeilDiv(hidden, static_cast<uint64_t>(blocks.block_cols)) * 4;
}

absl::StatusOr<RankMemoryPlan> PlanRankMemory(const ModelConfig& c, const ParallelConfig& p,
                                              DType kv_dtype, const LoadQuantization& at_load) {
  absl::Status status = ValidateParallelism(c, p);
  if (!status.ok()) return status;
  // The layout the loader keeps: the checkpoint's, or its linear weights quantized to fp8 as a
  // published FP8 checkpoint holds them (WeightLoader::QuantizeLinearWeightsToFp8).
  ModelConfig kept = c;
  if (at_load.fp8 && !c.fp8_quantization.has_value()) {
    if (c.int4_quantization.has_value()) {
      return absl::FailedPreconditionError("--quantize fp8 on int4 weights");
    }
    kept.fp8_quantization = Fp8Quantization{};
  }
  RankMemoryPlan plan;
  plan.parallel = p;
  plan.kv_dtype = kv_dtype;
  plan.experts = c.IsMoe() ? p.ExpertsOnRank(c.num_experts) : ExpertRange{};
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const uint64_t bytes =
        static_cast<uint64_t>(spec.NumElements()) * DTypeSize(CheckpointDType(spec, c.torch_dtype));
    const size_t role = static_cast<size_t>(ClassifyTensor(spec.name).role);
    plan.model_bytes_by_role[role] += bytes;
    plan.model_bytes += bytes;
  }
  bool plain_lm_head = c.tie_word_embeddings;
  for (const TensorSpec& spec : ExpectedTensors(kept)) {
    const ClassifiedTensor t = ClassifyTensor(spec.name);
    const uint64_t bytes = static_cast<uint64_t>(spec.NumElements()) *
                           DTypeSize(CheckpointDType(spec, kept.torch_dtype));
    // What the loader keeps: quantization scales as f32, no GPTQ metadata it folds away.
    const uint64_t loaded = spec.loaded_bytes.value_or(bytes);
    // kv_b_proj itself is read once at load and replaced by its derived projections.
    uint64_t on_rank = IsMlaKvB(c, spec.name)
                           ? (IsWeightTensor(spec.name) ? MlaDerivedBytesPerLayer(c, p) : 0)
                           : RankBytes(c, p, t, spec.name, loaded, plan.experts);
    if (t.role == TensorRole::kLmHead && at_load.fp8_lm_head) {
      plain_lm_head |= spec.name == "lm_head.weight";
      on_rank = 0;  // replaced by its fp8 copy below
    }
    plan.weight_bytes_by_role[static_cast<size_t>(t.role)] += on_rank;
    plan.weight_bytes += on_rank;
  }
  if (at_load.fp8_lm_head) {
    if (!plain_lm_head) {
      return absl::FailedPreconditionError(
          "--quantize-lm-head fp8: lm_head is int4 already and cannot be quantized to fp8");
    }
    const uint64_t fp8 = Fp8LmHeadBytes(c, p);
    plan.weight_bytes_by_role[static_cast<size_t>(TensorRole::kLmHead)] += fp8;
    plan.weight_bytes += fp8;
  }
  // As worker/models/decoder_model.cc builds it: a sliding window caps the positions served.
  plan.rope_positions = c.max_position_embeddings;
  if (c.sliding_window.has_value() && *c.sliding_window > 0) {
    plan.rope_positions = std::min(plan.rope_positions, *c.sliding_window);
  }
  const int64_t rotary_dim = c.UsesMla() ? c.qk_rope_head_dim : c.head_dim;
  plan.rope_table_bytes = static_cast<uint64_t>(plan.rope_positions * rotary_dim) * 4;
  const uint64_t layers = static_cast<uint64_t>(c.num_hidden_layers);
  const uint64_t elem = DTypeSize(kv_dtype);
  if (c.UsesMla()) {
    plan.kv_bytes_per_token =
        layers * static_cast<uint64_t>(c.kv_lora_rank + c.qk_rope_head_dim) * elem;
  } else {
    const int64_t kv_on_rank = std::max<int64_t>(1, c.num_key_value_heads / p.tp);
    plan.kv_bytes_per_token = layers * 2 * static_cast<uint64_t>(kv_on_rank * c.head_dim) * elem;
  }
  return plan;
}

std::string FormatCount(int64_t count) {
  static const char* const kUnits[] = {"", "K", "M", "B", "T"};
  return FormatScaled(static_cast<double>(count), kUnits, 5, 1000.0);
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {" B", "KiB", "MiB", "GiB", "TiB"};
  return FormatScaled(static_cast<double>(bytes), kUnits, 5, 1024.0);
}

}  // namespace expertmesh::model
