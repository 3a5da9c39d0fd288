// `expertmesh make-model`: flags -> MakeModelOptions; the work is in tools/make_model/.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/config/weight_layout.h"
#include "tools/cli/commands.h"
#include "tools/make_model/make_model.h"
#include "tools/make_model/model_shape.h"

namespace expertmesh::cli {
namespace {

struct MakeModelFlags {
  std::string arch = "qwen3-moe";
  std::string size = "tiny";
  std::string out;
  uint64_t seed = 0;
  std::string dtype = "bf16";
  int64_t group_size = 128;
  bool experts_only = false;
  bool quantize_lm_head = false;
  std::string shard_size;
  std::string corpus;
  bool force = false;
  std::vector<std::string> set;
  make_model::ShapeOverrides overrides;
};

void AddOverride(CLI::App* app, const std::string& name, std::optional<int64_t>& field,
                 const std::string& help) {
  app->add_option_function<int64_t>(
      name, [&field](const int64_t& value) { field = value; }, help);
}

absl::Status Run(const MakeModelFlags& flags) {
  make_model::MakeModelOptions options;
  ASSIGN_OR_RETURN(options.arch, make_model::ParseArchName(flags.arch));
  options.size = flags.size;
  options.overrides = flags.overrides;
  options.out_dir = flags.out;
  options.seed = flags.seed;
  if (flags.dtype == "bf16" || flags.dtype == "bfloat16") {
    options.dtype = DType::kBF16;
  } else if (flags.dtype == "f16" || flags.dtype == "float16") {
    options.dtype = DType::kF16;
  } else if (flags.dtype == "f32" || flags.dtype == "float32") {
    options.dtype = DType::kF32;
  } else if (flags.dtype == "fp8" || flags.dtype == "f8_e4m3") {
    options.dtype = DType::kF8E4M3;
  } else if (flags.dtype == "fp8-channel") {
    options.quantization = model::LinearFormat::kFp8Channel;
  } else if (flags.dtype == "int4-ct") {
    options.quantization = model::LinearFormat::kInt4CompressedTensors;
  } else if (flags.dtype == "int4-gptq") {
    options.dtype = DType::kF16;  // as Qwen's GPTQ-Int4 releases
    options.quantization = model::LinearFormat::kInt4Gptq;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype ", flags.dtype,
                     " not supported (bf16, f16, f32, fp8, fp8-channel, int4-ct or int4-gptq)"));
  }
  options.group_size = flags.group_size;
  options.experts_only = flags.experts_only;
  options.quantize_lm_head = flags.quantize_lm_head;
  if (!flags.shard_size.empty()) {
    ASSIGN_OR_RETURN(options.shard_size, make_model::ParseByteSize(flags.shard_size));
  }
  options.force = flags.force;
  options.corpus_dir = flags.corpus;
  for (const std::string& edit : flags.set) {
    const size_t eq = edit.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", edit, ": expected KEY=JSON"));
    }
    options.config_edits.emplace_back(edit.substr(0, eq), edit.substr(eq + 1));
  }
  ASSIGN_OR_RETURN(make_model::MakeModelResult result, make_model::MakeModel(options));
  std::printf("make-model: wrote %s (%s, %s)\n", options.out_dir.c_str(), flags.arch.c_str(),
              flags.size.c_str());
  std::printf("  parameters: %lld (%.1f MB of weights) in %.2f s\n",
              static_cast<long long>(result.num_parameters), result.weight_bytes / 1e6,
              result.weights_seconds);
  std::printf("  tokenizer: %lld tokens (%lld merges), vocab_size %lld, trained in %.2f s\n",
              static_cast<long long>(result.num_tokens), static_cast<long long>(result.num_merges),
              static_cast<long long>(result.vocab_size), result.tokenizer_seconds);
  std::printf("  files: %s\n", absl::StrJoin(result.files, " ").c_str());
  return absl::OkStatus();
}

}  // namespace

Command AddMakeModelCommand(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand("make-model",
                                        "Write a model with random weights in Hugging Face layout");
  auto flags = std::make_shared<MakeModelFlags>();
  app->add_option("--arch", flags->arch,
                  absl::StrCat("Architecture: ", absl::StrJoin(make_model::ArchNames(), ", ")))
      ->capture_default_str();
  app->add_option("--size", flags->size,
                  absl::StrCat("Size preset: ", absl::StrJoin(make_model::PresetNames(), ", ")))
      ->capture_default_str();
  app->add_option("--out", flags->out, "Output directory")->required();
  app->add_option("--seed", flags->seed, "Random seed")->capture_default_str();
  app->add_option("--dtype", flags->dtype,
                  "Weight dtype: bf16, f16, f32; or a quantized layout of the attention and "
                  "MLP/expert linear weights, the rest unquantized: fp8 (e4m3, 128x128 block "
                  "scales, as DeepSeek-V3 publishes), fp8-channel (compressed-tensors "
                  "float-quantized, e4m3 with per-row scales, llm-compressor FP8_DYNAMIC), "
                  "int4-ct (compressed-tensors pack-quantized int4, llm-compressor W4A16), "
                  "int4-gptq (GPTQ v1 int4, sym, as Qwen's GPTQ-Int4 releases; float16)")
      ->capture_default_str();
  app->add_option("--group-size", flags->group_size,
                  "int4-ct / int4-gptq: input features per scale group (32, 64 or 128); preset "
                  "widths are rounded up to multiples of it")
      ->capture_default_str();
  app->add_flag("--experts-only", flags->experts_only,
                "int4-ct / int4-gptq / fp8-channel: quantize only the routed experts");
  app->add_flag("--quantize-lm-head", flags->quantize_lm_head,
                "int4-ct / int4-gptq: quantize lm_head too (compressed-tensors: not in ignore; "
                "GPTQ: \"lm_head\": true), with or without --experts-only");
  app->add_option("--shard-size", flags->shard_size,
                  "Split weights into files of at most this size (e.g. 500MB)");
  app->add_option("--corpus", flags->corpus,
                  "Train the tokenizer on the files of this directory instead of the built-in "
                  "corpus");
  app->add_flag("--force", flags->force, "Write into a non-empty output directory");
  app->add_option("--set", flags->set,
                  "Edit config.json: KEY=JSON (e.g. --set rope_theta=1e6); repeatable");
  make_model::ShapeOverrides& o = flags->overrides;
  AddOverride(app, "--vocab-size", o.bpe_vocab_size, "BPE tokens to train (bytes included)");
  AddOverride(app, "--layers", o.num_layers, "Decoder layers");
  AddOverride(app, "--hidden", o.hidden_size, "Hidden size");
  AddOverride(app, "--heads", o.num_heads, "Attention heads");
  AddOverride(app, "--kv-heads", o.num_kv_heads, "Key/value heads");
  AddOverride(app, "--head-dim", o.head_dim, "Head dim (Qwen3-MoE)");
  AddOverride(app, "--intermediate", o.intermediate_size, "Dense MLP width");
  AddOverride(app, "--experts", o.num_experts, "Routed experts");
  AddOverride(app, "--top-k", o.num_experts_per_tok, "Experts per token");
  AddOverride(app, "--moe-intermediate", o.moe_intermediate_size, "Routed expert width");
  AddOverride(app, "--shared-experts", o.num_shared_experts, "Shared experts");
  AddOverride(app, "--max-positions", o.max_position_embeddings, "max_position_embeddings");
  AddOverride(app, "--kv-lora-rank", o.kv_lora_rank, "MLA kv_lora_rank (DeepSeek)");
  AddOverride(app, "--q-lora-rank", o.q_lora_rank, "MLA q_lora_rank (DeepSeek-V3)");
  AddOverride(app, "--qk-nope-head-dim", o.qk_nope_head_dim, "MLA qk_nope_head_dim");
  AddOverride(app, "--qk-rope-head-dim", o.qk_rope_head_dim, "MLA qk_rope_head_dim");
  AddOverride(app, "--v-head-dim", o.v_head_dim, "MLA v_head_dim");
  AddOverride(app, "--expert-groups", o.n_group, "n_group (DeepSeek)");
  AddOverride(app, "--topk-groups", o.topk_group, "topk_group (DeepSeek)");
  AddOverride(app, "--first-dense", o.first_k_dense, "first_k_dense_replace (DeepSeek)");
  return Command{app, [flags]() { return Run(*flags); }};
}

}  // namespace expertmesh::cli
