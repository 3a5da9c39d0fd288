// `expertmesh make-model`: writes a model with random (seeded, reproducible) weights in real
// Hugging Face layout: config.json, model.safetensors (or model-0000k-of-0000n.safetensors and
// model.safetensors.index.json), tokenizer.json, tokenizer_config.json and
// generation_config.json. The tokenizer is a byte-level BPE trained on the shipped corpus.
//
// The tensors written are exactly model::ExpectedTensors(ParseModelConfig(config.json)) (less
// optional ones; checkpoint_writer.h), so the checkpoint and the config cannot disagree. Weights
// stream to disk: memory stays at a few MB whatever the model size, plus one weight matrix in
// f32 while a quantized one is made. The output is a pure function of the options.
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
#include "model/config/weight_layout.h"
#include "tools/make_model/model_shape.h"

namespace expertmesh::make_model {

struct MakeModelOptions {
  model::Architecture arch = model::Architecture::kQwen3Moe;
  std::string size = "tiny";  // a PresetNames() entry
  ShapeOverrides overrides;
  std::string out_dir;
  uint64_t seed = 0;
  // The dtype of the checkpoint's floating-point tensors (config.json torch_dtype): kBF16, kF16
  // or kF32; kF8E4M3 is short for kBF16 with `quantization` kFp8Block.
  DType dtype = DType::kBF16;
  // How the Linear weights of attention and of the (dense, shared and routed) MLPs are stored;
  // routers, embeddings and norms stay in `dtype`, and lm_head unless quantize_lm_head. Each
  // quantized format is written as its published tools write it (checkpoint_writer.h
  // WriteCheckpoint, tests/golden/README.md):
  //  - kFp8Block: DeepSeek-V3's fp8, e4m3 with 128 x 128 F32 block scales;
  //  - kFp8Channel: llm-compressor FP8_DYNAMIC (compressed-tensors float-quantized), e4m3 with
  //    a per-output-row scale in `dtype`; routers and lm_head named in `ignore`;
  //  - kInt4CompressedTensors: llm-compressor W4A16 (compressed-tensors pack-quantized,
  //    symmetric groups of `group_size`, scales in `dtype`); routers and lm_head (unless
  //    quantize_lm_head) in `ignore`;
  //  - kInt4Gptq: AutoGPTQ v1 as Qwen's GPTQ-Int4 releases (sym, desc_act false); needs
  //    `dtype` kF16, which those releases are.
  // Each equals the unquantized checkpoint of the same options (its "twin") quantized: int4
  // with model::QuantizeInt4Groups, as `--quantize int4` quantizes at load.
  model::LinearFormat quantization = model::LinearFormat::kPlain;
  int64_t group_size = 128;  // int4 groups: 32, 64 or 128
  // Quantize the routed experts only (the rest stays in `dtype`, listed in compressed-tensors'
  // ignore or left out of GPTQ's modules_in_block_to_quantize).
  bool experts_only = false;
  // int4 only: quantize lm_head too, in the layers' groups, as the published layouts do:
  // compressed-tensors by leaving it out of `ignore`, GPTQ with `"lm_head": true` (and
  // GPTQModel's `dynamic` override keeping it at 4 bits). With or without experts_only. Refused
  // for architectures whose lm_head is the embedding table (tie_word_embeddings: llama here).
  bool quantize_lm_head = false;
  uint64_t shard_size = 0;  // max bytes per safetensors file; 0 = one model.safetensors
  bool force = false;       // write into a non-empty out_dir (files of the same name replaced)
  std::string corpus_dir;   // empty: the built-in corpus
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

// Writes the model. With an int4 `quantization`, the preset's widths that the quantized layers
// read are first rounded up to multiples of the group (model_shape.h Int4CompatibleShape;
// overridden ones are kept). Errors: INVALID_ARGUMENT for bad options (unknown preset,
// inconsistent dims, a config edit that is not JSON, an unsupported dtype, quantization, group
// size or combination of them, a width the int4 group does not divide) naming the problem;
// FAILED_PRECONDITION when out_dir is non-empty and !force; INTERNAL for I/O failures, naming
// the file.
absl::StatusOr<MakeModelResult> MakeModel(const MakeModelOptions& options);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_MAKE_MODEL_H_
