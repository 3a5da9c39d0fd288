// config.json -> ModelConfig: every hyper-parameter a forward pass, a weight loader and a memory
// planner need, for the six supported Hugging Face architectures. The parser accepts both the
// published key style (rope_theta / rope_scaling / torch_dtype) and the style transformers 5
// writes (rope_parameters / dtype). After ParseModelConfig succeeds the value is validated, so
// consumers read plain fields without re-checking them.
#ifndef EXPERTMESH_MODEL_CONFIG_MODEL_CONFIG_H_
#define EXPERTMESH_MODEL_CONFIG_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "nlohmann/json.hpp"

namespace expertmesh::model {

enum class Architecture { kLlama, kMixtral, kQwen2Moe, kQwen3Moe, kDeepseekV2, kDeepseekV3 };

// The Hugging Face class name, e.g. "MixtralForCausalLM" (config.json `architectures[0]`).
std::string_view ArchitectureName(Architecture arch);
// Inverse of ArchitectureName; nullopt for a class expertmesh does not implement.
std::optional<Architecture> ArchitectureFromName(std::string_view name);
// All supported architectures, in enum order (for table-driven tests and tools).
const std::vector<Architecture>& AllArchitectures();

enum class RopeScalingType { kNone, kLinear, kDynamic, kYarn, kLlama3 };
std::string_view RopeScalingTypeName(RopeScalingType type);  // "none", "linear", ...

// RoPE frequency scaling. Fields irrelevant to `type` keep their defaults.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;  // yarn, llama3, dynamic (0 = not given)
  // YaRN (DeepSeek): ramp bounds and the attention magnitude correction.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  std::optional<double> attention_factor;  // explicit yarn attention factor, if given
  // Llama 3.1 smooth interpolation.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
};

// How router logits become expert weights.
enum class MoeScoring { kSoftmax, kSigmoid };
// How the top-k experts are selected.
//  kGreedy: plain top-k over all experts (Mixtral, Qwen, DeepSeek-V2-Lite).
//  kGroupLimitedGreedy: DeepSeek-V2: pick topk_group groups by their best score, then top-k.
//  kNoauxTc: DeepSeek-V3: scores + e_score_correction_bias pick groups (sum of top-2 per group)
//            and experts; the weights use the uncorrected scores.
enum class TopkMethod { kGreedy, kGroupLimitedGreedy, kNoauxTc };
std::string_view MoeScoringName(MoeScoring scoring);
std::string_view TopkMethodName(TopkMethod method);

// DeepSeek-style fp8 block quantization (quantization_config.quant_method == "fp8"): linear
// weights are F8_E4M3 with an F32 `<name>_scale_inv` tensor of shape
// [ceil(rows / block_rows), ceil(cols / block_cols)]; dequantized = fp8 * scale_inv.
struct Fp8Quantization {
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  // compressed-tensors `float-quantized` with strategy "channel" (llm-compressor's FP8_DYNAMIC):
  // one scale per output row, `<name>_scale` [out, 1] (dequantized = fp8 * scale), and
  // block_rows = 1, block_cols = the row length. Its dynamic per-token activation scales are
  // not applied: activations stay in the compute dtype (W8A16).
  bool per_channel = false;
  // per_channel (compressed-tensors) only: the Linear modules quantized are those a `targets`
  // entry matches and no `ignore` entry matches (model/config/module_filter.h,
  // CompressedTensorsMatcher).
  std::vector<std::string> targets;
  std::vector<std::string> ignore;
  std::string activation_scheme;  // "dynamic" in DeepSeek-V3
  // Modules whose weights stay in the checkpoint dtype (no scale), matched as transformers
  // does (model/config/module_filter.h). Published Qwen3-FP8 configs list their routers and
  // lm_head, which are never quantized anyway; a checkpoint may also keep whole layers in bf16.
  std::vector<std::string> modules_to_not_convert;
};

// 4-bit weight-only quantization as published: compressed-tensors `pack-quantized` (Kimi-K2,
// llm-compressor W4A16) or GPTQ (Qwen's GPTQ-Int4 releases). Weights are int4 in groups of
// group_size consecutive input features along each output row, each group with a scale (and,
// asymmetric, a zero point): dequantized = (q - zero) * scale.
struct Int4Quantization {
  enum class Format { kCompressedTensors, kGptq };
  Format format = Format::kCompressedTensors;
  int64_t group_size = 128;
  bool symmetric = true;
  // GPTQ desc_act: input features are assigned to groups by `g_idx`, not in order.
  bool act_order = false;
  // GPTQ checkpoint_format "gptq" (AutoGPTQ's v1): stored zero points are one less than the
  // real ones; "gptq_v2" stores them as they are.
  bool gptq_zero_minus_one = true;
  // compressed-tensors: the Linear modules quantized are those a `targets` entry matches and no
  // `ignore` entry matches (exact names, "re:" patterns or the class name "Linear";
  // model/config/module_filter.h, CompressedTensorsMatcher).
  std::vector<std::string> targets = {"Linear"};
  std::vector<std::string> ignore;
  // GPTQ: every Linear of the decoder layers (attention and MLP / expert projections, never the
  // routers) unless `modules_in_block_to_quantize` (optimum) names some, relative to the layer
  // ("self_attn.q_proj", "mlp.experts.0.down_proj"): then only those.
  std::vector<std::string> gptq_modules;
  // GPTQ `lm_head: true` (GPTQModel, AutoRound): lm_head is quantized too, in the same format
  // and groups, unless a negative `dynamic` rule ("-:lm_head") exempts it. Compressed-tensors
  // quantizes lm_head when its targets select it and ignore does not.
  bool gptq_lm_head = false;
  // GPTQ `dynamic` keys, as written ("lm_head", "+:.*lm_head.*"). Only overrides of lm_head
  // that keep its format (4 bits, the config's group size) are read: ParseModelConfig refuses
  // a key that does not match lm_head, and Validate one that also matches another Linear.
  std::vector<std::string> gptq_dynamic;
};

// The module pattern of a GPTQ `dynamic` key ("+:<regex>", "-:<regex>" or "<regex>") as a
// CompressedTensorsMatcher entry: vLLM and GPTQModel match it with Python's re.match, as
// compressed-tensors matches "re:" entries.
std::string GptqDynamicPattern(std::string_view key);

// Upper bounds ModelConfig::Validate() puts on sizes: well above every published model,
// far below what would make per-layer or per-expert tables exhaust memory.
inline constexpr int64_t kMaxConfigLayers = 1024;
inline constexpr int64_t kMaxConfigExperts = 16384;
inline constexpr int64_t kMaxConfigHeads = 4096;
inline constexpr int64_t kMaxConfigWidth = int64_t{1} << 20;
inline constexpr int64_t kMaxConfigVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxConfigContext = int64_t{1} << 27;

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string model_type;  // config.json model_type, e.g. "deepseek_v3" (informational)

  // ---- Shapes shared by every architecture.
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP width (Mixtral: each expert's width)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // == num_attention_heads when absent
  // Per-head query/key width. GQA: explicit `head_dim` or hidden_size / num_attention_heads.
  // MLA: qk_nope_head_dim + qk_rope_head_dim.
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";  // all supported architectures use SiLU-gated MLPs

  // ---- Attention details.
  bool qkv_bias = false;     // bias on q/k/v (DeepSeek: on q_a_proj and kv_a_proj_with_mqa)
  bool o_proj_bias = false;  // bias on o_proj
  bool qk_norm = false;      // Qwen3: per-head RMSNorm on q and k (q_norm / k_norm, [head_dim])
  // Sliding-window attention, only when the config enables it. Qwen applies it to layers
  // >= max_window_layers.
  std::optional<int64_t> sliding_window;
  int64_t max_window_layers = 0;

  // ---- Storage.
  DType torch_dtype = DType::kF32;  // `torch_dtype` / `dtype`; float32 when absent, as in HF
  std::optional<Fp8Quantization> fp8_quantization;
  std::optional<Int4Quantization> int4_quantization;  // never together with fp8_quantization
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // `eos_token_id` may be an int or a list

  // ---- Mixture of experts. num_experts == 0 means a dense model.
  int64_t num_experts = 0;  // num_local_experts / num_experts / n_routed_experts
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;  // each routed expert's width (Mixtral: intermediate_size)
  // Shared experts run on every token. Qwen2-MoE: one shared expert of
  // shared_expert_intermediate_size scaled by sigmoid(shared_expert_gate(x)).
  // DeepSeek: n_shared_experts fused into one MLP of n_shared_experts * moe_intermediate_size.
  int64_t n_shared_experts = 0;
  int64_t shared_expert_intermediate_size = 0;  // total width of the shared MLP (0 = none)
  bool shared_expert_gate = false;              // Qwen2-MoE sigmoid gate, weight [1, hidden]
  bool norm_topk_prob = false;                  // renormalise the top-k weights to sum to 1
  MoeScoring scoring_func = MoeScoring::kSoftmax;
  TopkMethod topk_method = TopkMethod::kGreedy;
  int64_t n_group = 1;                   // expert groups for group-limited routing
  int64_t topk_group = 1;                // groups kept per token
  double routed_scaling_factor = 1.0;    // multiplies the routed experts' combined output
  bool e_score_correction_bias = false;  // DeepSeek-V3: mlp.gate.e_score_correction_bias (fp32)
  // Which layers are MoE (see IsMoeLayer).
  int64_t first_k_dense_replace = 0;     // DeepSeek: the first k layers are dense
  int64_t moe_layer_freq = 1;            // DeepSeek: MoE when layer % freq == 0
  int64_t decoder_sparse_step = 1;       // Qwen: MoE when (layer + 1) % step == 0
  std::vector<int64_t> mlp_only_layers;  // Qwen: forced dense layers

  // ---- Multi-head latent attention (DeepSeek). kv_lora_rank == 0 means not MLA.
  std::optional<int64_t> q_lora_rank;  // nullopt: q_proj directly (DeepSeek-V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t num_nextn_predict_layers = 0;  // DeepSeek-V3 MTP layers stored after the last layer

  bool IsMoe() const { return num_experts > 0; }
  bool UsesMla() const { return kv_lora_rank > 0; }
  // Whether decoder layer `layer` (0-based) uses the sparse MoE block instead of a dense MLP.
  bool IsMoeLayer(int layer) const;
  // Number of layers for which IsMoeLayer is true.
  int64_t NumMoeLayers() const;
  // The per-head value width: v_head_dim for MLA, head_dim otherwise.
  int64_t ValueHeadDim() const { return UsesMla() ? v_head_dim : head_dim; }

  // Checks internal consistency (positive sizes, heads dividing hidden, kv heads dividing heads,
  // top-k <= experts, n_group dividing experts, topk_group <= n_group, ...). INVALID_ARGUMENT
  // naming `source_name` and the offending field.
  absl::Status Validate(std::string_view source_name = "config") const;
};

// Parses a config.json object. `source_name` (usually the file path) prefixes every error.
// Errors: INVALID_ARGUMENT for an unknown architecture, a missing required field, a wrong JSON
// type, an unsupported option (e.g. a non-fp8 quantization) or values failing Validate().
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& json,
                                             std::string_view source_name);

// Reads and parses `model_dir`/config.json. NOT_FOUND when the file is missing; otherwise the
// errors of ParseModelConfig.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_CONFIG_MODEL_CONFIG_H_
