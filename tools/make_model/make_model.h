// `expertmesh make-model`: writes a model with random (seeded, reproducible) weights in real
// Hugging Face layout: config.json, model.safetensors (or model-0000k-of-0000n.safetensors and
// model.safetensors.index.json), tokenizer.json, tokenizer_config.json and
// generation_config.json. The tokenizer is a byte-level BPE trained on the shipped corpus.
//
// The tensors written are exactly model::ExpectedTensors(ParseModelConfig(config.json)), so the
// checkpoint and the config cannot disagree. Weights stream to disk: memory stays at a few MB
// whatever the model size. The output is a pure function of the options (same bytes twice).
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_MAKE_MODEL_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_MAKE_MODEL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/config/model_config.h"
#include "tools/make_model/model_shape.h"

namespace expertmesh::make_model {

struct MakeModelOptions {
  model::Architecture arch = model::Architecture::kQwen3Moe;
  std::string size = "tiny";  // a PresetNames() entry
  ShapeOverrides overrides;
  std::string out_dir;
  uint64_t seed = 0;
  DType dtype = DType::kBF16;  // kBF16, kF32, or kF8E4M3 (fp8 linear weights, bf16 others)
  uint64_t shard_size = 0;     // max bytes per safetensors file; 0 = one model.safetensors
  bool force = false;          // write into a non-empty out_dir (files of the same name replaced)
  std::string corpus_dir;      // empty: the built-in corpus
  // Raw config.json edits applied last, as (key, JSON text) pairs, e.g. {"rope_theta", "1e6"}.
  std::vector<std::pair<std::string, std::string>> config_edits;
};

struct MakeModelResult {
  std::vector<std::string> files;  // written, relative to out_dir
  int64_t num_parameters = 0;
  uint64_t weight_bytes = 0;  // sum of tensor bytes
  int64_t num_tokens = 0;     // tokenizer size (BPE + special)
  int64_t num_merges = 0;
  // config.json vocab_size: the requested BPE size plus special tokens (or num_tokens when
  // larger), padded to a multiple of 64. num_tokens is smaller when the corpus cannot support
  // that many merges (the built-in corpus gives ~12.8k tokens at most).
  int64_t vocab_size = 0;
  double tokenizer_seconds = 0;
  double weights_seconds = 0;
};

// The architecture for a CLI name: llama, mixtral, qwen2-moe, qwen3-moe, deepseek-v2,
// deepseek-v3 (Hugging Face class names are accepted too). INVALID_ARGUMENT listing the names.
absl::StatusOr<model::Architecture> ParseArchName(std::string_view name);
const std::vector<std::string>& ArchNames();

// Parses "500MB", "2GB", "1.5GiB", "1048576" into bytes. INVALID_ARGUMENT otherwise.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// Writes the model. Errors: INVALID_ARGUMENT for bad options (unknown preset, inconsistent
// dims, a config edit that is not JSON, a dtype other than bf16/f32) naming the problem;
// FAILED_PRECONDITION when out_dir is non-empty and !force; INTERNAL for I/O failures, naming
// the file.
absl::StatusOr<MakeModelResult> MakeModel(const MakeModelOptions& options);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_MAKE_MODEL_H_
