#include "tools/make_model/make_model.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/config/weight_layout.h"
#include "tools/make_model/checkpoint_writer.h"
#include "tools/make_model/corpus.h"
#include "tools/make_model/model_config_writer.h"
#include "tools/make_model/tokenizer_trainer.h"

namespace expertmesh::make_model {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::Status PrepareOutDir(const std::string& dir, bool force) {
  if (dir.empty()) return absl::InvalidArgumentError("no output directory given");
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::is_directory(dir, ec)) {
      return absl::FailedPreconditionError(absl::StrCat(dir, ": exists and is not a directory"));
    }
    if (!std::filesystem::is_empty(dir, ec) && !force) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, ": directory is not empty (pass --force to write into it)"));
    }
    return absl::OkStatus();
  }
  if (!std::filesystem::create_directories(dir, ec) && ec) {
    return absl::InternalError(absl::StrCat(dir, ": cannot create directory: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteJson(const std::string& dir, const std::string& name,
                       const nlohmann::ordered_json& json, std::vector<std::string>& files) {
  RETURN_IF_ERROR(WriteStringToFile(dir + "/" + name, json.dump(2) + "\n"));
  files.push_back(name);
  return absl::OkStatus();
}

absl::Status ApplyConfigEdits(const MakeModelOptions& options, nlohmann::ordered_json& config) {
  for (const auto& [key, text] : options.config_edits) {
    nlohmann::ordered_json value = nlohmann::ordered_json::parse(text, nullptr, false);
    if (value.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config edit ", key, "=", text, ": value is not JSON"));
    }
    config[key] = std::move(value);
  }
  return absl::OkStatus();
}

// The options' dtype and quantization, normalised (kF8E4M3 is kBF16 with fp8 blocks) and
// checked against each other.
struct WeightFormat {
  DType dtype = DType::kBF16;
  model::LinearFormat quantization = model::LinearFormat::kPlain;
};

bool IsInt4(model::LinearFormat f) {
  return f == model::LinearFormat::kInt4CompressedTensors || f == model::LinearFormat::kInt4Gptq;
}

absl::StatusOr<WeightFormat> ResolveFormat(const MakeModelOptions& o) {
  using model::LinearFormat;
  WeightFormat f{o.dtype, o.quantization};
  if (f.dtype == DType::kF8E4M3) {
    if (f.quantization != LinearFormat::kPlain && f.quantization != LinearFormat::kFp8Block) {
      return absl::InvalidArgumentError(
          "dtype fp8 means fp8 blocks: it cannot be combined with another quantization");
    }
    f = {DType::kBF16, LinearFormat::kFp8Block};
  }
  if (f.dtype != DType::kBF16 && f.dtype != DType::kF16 && f.dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("dtype ", std::string(DTypeName(f.dtype)),
                                                   " not supported (bf16, f16, f32 or fp8)"));
  }
  if (f.quantization == LinearFormat::kFp8Block && f.dtype != DType::kBF16) {
    return absl::InvalidArgumentError("fp8 block checkpoints keep their other tensors in bf16");
  }
  if (f.quantization == LinearFormat::kInt4Gptq && f.dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("int4-gptq checkpoints are float16 (as AutoGPTQ and Qwen's GPTQ-Int4 "
                     "releases store them), not ",
                     std::string(DTypeName(f.dtype))));
  }
  if (IsInt4(f.quantization) && o.group_size != 32 && o.group_size != 64 && o.group_size != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("int4 group size ", o.group_size, " not supported (32, 64 or 128)"));
  }
  if (o.quantize_lm_head && !IsInt4(f.quantization)) {
    return absl::InvalidArgumentError(
        "quantize-lm-head applies to int4-ct and int4-gptq checkpoints");
  }
  if (o.experts_only) {
    if (!IsInt4(f.quantization) && f.quantization != LinearFormat::kFp8Channel) {
      return absl::InvalidArgumentError(
          "experts-only applies to int4-ct, int4-gptq and fp8-channel checkpoints");
    }
    if (o.arch == model::Architecture::kLlama) {
      return absl::InvalidArgumentError("experts-only: llama has no routed experts to quantize");
    }
  }
  return f;
}

// A routed expert's projection ("model.layers.3.mlp.experts.7.down_proj", Mixtral's
// "block_sparse_moe.experts.7.w2"; not DeepSeek's "shared_experts").
bool IsRoutedExpert(const std::string& module) {
  return module.find(".experts.") != std::string::npos;
}

// The quantization_config that quantizes the Linear layers of `plain` (the same model without
// quantization) that `options` asks for: all but routers and lm_head, or the routed experts;
// and lm_head with quantize_lm_head.
nlohmann::ordered_json QuantizationFor(const model::ModelConfig& plain, model::LinearFormat format,
                                       const MakeModelOptions& options) {
  std::vector<std::string> ignore, gptq_modules;
  absl::flat_hash_set<std::string> seen;
  for (const model::LinearSpec& linear : model::LinearLayers(plain)) {
    const bool lm_head = linear.module == "lm_head";
    const bool quantize =
        lm_head ? options.quantize_lm_head
                : !linear.always_plain && (!options.experts_only || IsRoutedExpert(linear.module));
    if (!quantize) {
      // llm-compressor serialises every Linear it left alone by name; lm_head first, as in
      // tests/golden (LinearLayers lists it last).
      if (linear.module == "lm_head") {
        ignore.insert(ignore.begin(), linear.module);
      } else {
        ignore.push_back(linear.module);
      }
      continue;
    }
    if (options.experts_only && format == model::LinearFormat::kInt4Gptq && !lm_head) {
      // optimum's modules_in_block_to_quantize names modules relative to their decoder layer.
      constexpr std::string_view kLayers = "model.layers.";
      const size_t dot = linear.module.find('.', kLayers.size());
      std::string relative = linear.module.substr(dot + 1);
      if (seen.insert(relative).second) gptq_modules.push_back(std::move(relative));
    }
  }
  return QuantizationConfigJson(format, options.group_size, ignore, gptq_modules,
                                options.quantize_lm_head);
}

// Whether the parsed config (config edits applied) stores Linear weights as `format` asks.
absl::Status CheckConfigFormat(const model::ModelConfig& c, model::LinearFormat format) {
  using model::LinearFormat;
  bool ok = false;
  switch (format) {
    case LinearFormat::kPlain:
      ok = !c.fp8_quantization.has_value() && !c.int4_quantization.has_value();
      break;
    case LinearFormat::kFp8Block:
      ok = c.fp8_quantization.has_value() && !c.fp8_quantization->per_channel;
      break;
    case LinearFormat::kFp8Channel:
      ok = c.fp8_quantization.has_value() && c.fp8_quantization->per_channel;
      break;
    case LinearFormat::kInt4CompressedTensors:
    case LinearFormat::kInt4Gptq:
      ok = c.int4_quantization.has_value() &&
           (c.int4_quantization->format == model::Int4Quantization::Format::kGptq) ==
               (format == LinearFormat::kInt4Gptq);
      break;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "config.json's quantization_config (after --set edits) does not describe the checkpoint "
      "format asked for");
}

}  // namespace

const std::vector<std::string>& ArchNames() {
  static const std::vector<std::string> names = {"llama",     "mixtral",     "qwen2-moe",
                                                 "qwen3-moe", "deepseek-v2", "deepseek-v3"};
  return names;
}

absl::StatusOr<model::Architecture> ParseArchName(std::string_view name) {
  using model::Architecture;
  static const std::pair<const char*, Architecture> kNames[] = {
      {"llama", Architecture::kLlama},
      {"mixtral", Architecture::kMixtral},
      {"qwen2-moe", Architecture::kQwen2Moe},
      {"qwen3-moe", Architecture::kQwen3Moe},
      {"deepseek-v2", Architecture::kDeepseekV2},
      {"deepseek-v3", Architecture::kDeepseekV3}};
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  for (const auto& [cli_name, arch] : kNames) {
    if (lower == cli_name) return arch;
  }
  if (std::optional<model::Architecture> arch = model::ArchitectureFromName(name)) return *arch;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown architecture '", std::string(name),
                   "' (expected one of: ", absl::StrJoin(ArchNames(), ", "), ")"));
}

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  const std::string s = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(std::string(text)));
  double value = 0;
  const char* begin = s.data();
  auto [end, ec] = std::from_chars(begin, begin + s.size(), value);
  if (ec != std::errc() || end == begin || value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad size '", std::string(text), "' (e.g. 500MB, 2GB)"));
  }
  const std::string unit(end, begin + s.size());
  double multiplier = 0;
  if (unit.empty() || unit == "B") multiplier = 1;
  if (unit == "KB" || unit == "K") multiplier = 1e3;
  if (unit == "MB" || unit == "M") multiplier = 1e6;
  if (unit == "GB" || unit == "G") multiplier = 1e9;
  if (unit == "KIB") multiplier = 1024.0;
  if (unit == "MIB") multiplier = 1024.0 * 1024;
  if (unit == "GIB") multiplier = 1024.0 * 1024 * 1024;
  if (multiplier == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad size unit in '", std::string(text), "' (B, KB, MB, GB, KiB, MiB, GiB)"));
  }
  return static_cast<uint64_t>(std::llround(value * multiplier));
}

absl::StatusOr<MakeModelResult> MakeModel(const MakeModelOptions& options) {
  ASSIGN_OR_RETURN(const WeightFormat format, ResolveFormat(options));
  ASSIGN_OR_RETURN(ModelShape preset, PresetShape(options.size));
  ASSIGN_OR_RETURN(ModelShape shape, ApplyOverrides(preset, options.overrides));
  if (IsInt4(format.quantization)) {
    shape = Int4CompatibleShape(shape, options.overrides, options.group_size, options.experts_only);
  }
  std::vector<CorpusDocument> corpus;
  if (options.corpus_dir.empty()) {
    corpus = BuiltinCorpus();
  } else {
    ASSIGN_OR_RETURN(corpus, LoadCorpusDir(options.corpus_dir));
  }
  RETURN_IF_ERROR(PrepareOutDir(options.out_dir, options.force));
  const std::string& dir = options.out_dir;
  MakeModelResult result;

  // Tokenizer first: its size decides the embedding rows.
  const Clock::time_point tokenizer_start = Clock::now();
  const TokenizerFamily& family = FamilyFor(options.arch);
  ASSIGN_OR_RETURN(TrainedTokenizer tokenizer,
                   TrainTokenizer(corpus, family, static_cast<int>(shape.bpe_vocab_size),
                                  shape.max_position_embeddings));
  result.tokenizer_seconds = SecondsSince(tokenizer_start);
  result.num_tokens = tokenizer.files.num_tokens;
  result.num_merges = static_cast<int64_t>(tokenizer.bpe.merges.size());
  // The embedding keeps the requested size even when the corpus supported fewer merges, so a
  // benchmark model has the shape asked for; like published models (Qwen pads 151665 tokens to
  // 151936 rows), rows past the tokenizer are simply never produced by it.
  result.vocab_size = PaddedVocabSize(
      std::max(result.num_tokens,
               shape.bpe_vocab_size + static_cast<int64_t>(family.special_tokens.size())));

  SpecialTokenIds ids;
  ids.bos = tokenizer.files.bos_id;
  ids.eos = tokenizer.files.eos_id;
  ids.stop_ids = tokenizer.files.stop_ids;
  ids.pad = tokenizer.files.pad_id;
  const DType config_dtype =
      format.quantization == model::LinearFormat::kFp8Block ? DType::kF8E4M3 : format.dtype;
  nlohmann::ordered_json config =
      BuildConfigJson(options.arch, shape, result.vocab_size, ids, config_dtype);
  RETURN_IF_ERROR(ApplyConfigEdits(options, config));
  if (format.quantization != model::LinearFormat::kPlain &&
      format.quantization != model::LinearFormat::kFp8Block) {
    // Which modules a compressed-tensors or GPTQ config names follows from the model's Linear
    // layers, read from the unquantized config.
    ASSIGN_OR_RETURN(model::ModelConfig plain,
                     model::ParseModelConfig(nlohmann::json(config), "make-model config.json"));
    if (options.quantize_lm_head && plain.tie_word_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize-lm-head: ", std::string(model::ArchitectureName(options.arch)),
          " ties lm_head to the embedding table (tie_word_embeddings), which stays unquantized"));
    }
    config = BuildConfigJson(options.arch, shape, result.vocab_size, ids, config_dtype,
                             QuantizationFor(plain, format.quantization, options));
    RETURN_IF_ERROR(ApplyConfigEdits(options, config));
  }
  // The checkpoint is derived from the config exactly as a loader will derive it.
  ASSIGN_OR_RETURN(model::ModelConfig parsed,
                   model::ParseModelConfig(nlohmann::json(config), "make-model config.json"));
  RETURN_IF_ERROR(CheckConfigFormat(parsed, format.quantization));
  RETURN_IF_ERROR(CheckQuantizable(parsed));
  result.vocab_size = parsed.vocab_size;
  if (parsed.vocab_size < result.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("config vocab_size ", parsed.vocab_size,
                                                   " is smaller than the tokenizer's ",
                                                   result.num_tokens, " tokens"));
  }

  const Clock::time_point weights_start = Clock::now();
  const float init_std = config.value("initializer_range", 0.02f);
  ASSIGN_OR_RETURN(CheckpointSummary checkpoint,
                   WriteCheckpoint(dir, parsed, options.seed, init_std, options.shard_size));
  result.weights_seconds = SecondsSince(weights_start);
  result.files = checkpoint.files;
  result.weight_bytes = checkpoint.total_bytes;
  result.num_parameters = checkpoint.num_parameters;

  RETURN_IF_ERROR(WriteJson(dir, "config.json", config, result.files));
  RETURN_IF_ERROR(
      WriteJson(dir, "generation_config.json", BuildGenerationConfigJson(ids), result.files));
  RETURN_IF_ERROR(WriteJson(dir, "tokenizer.json", tokenizer.files.tokenizer, result.files));
  RETURN_IF_ERROR(
      WriteJson(dir, "tokenizer_config.json", tokenizer.files.tokenizer_config, result.files));
  return result;
}

}  // namespace expertmesh::make_model
