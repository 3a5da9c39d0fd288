// Which modules a quantized checkpoint leaves unquantized (quantization_config's
// `modules_to_not_convert`, e.g. Qwen3-FP8's routers and lm_head), matched the way transformers
// matches them (quantizers_utils.should_convert_module), so a checkpoint means the same here as
// there. A pattern excludes a module when
//   1. it matches the module's name from the start up to a module boundary, as a regex:
//      "model.layers.1" excludes "model.layers.1.self_attn.q_proj" but not
//      "model.layers.11.self_attn.q_proj"; "mlp.gate" is not a prefix of "mlp.gate_proj";
//      "model.layers.*.self_attn" excludes every layer's attention; or
//   2. the name ends with it: "o_proj" excludes every "...self_attn.o_proj".
#ifndef EXPERTMESH_MODEL_CONFIG_MODULE_FILTER_H_
#define EXPERTMESH_MODEL_CONFIG_MODULE_FILTER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::model {

class ModuleFilter {
 public:
  // An empty filter excludes nothing. INVALID_ARGUMENT naming the pattern when one is not a
  // regex PCRE2 compiles.
  static absl::StatusOr<ModuleFilter> Create(const std::vector<std::string>& patterns);
  ModuleFilter() = default;

  // `module_name` is the module's dotted name without ".weight"
  // ("model.layers.3.mlp.experts.7.down_proj").
  bool Excludes(std::string_view module_name) const;

 private:
  struct Pattern;
  std::vector<std::shared_ptr<const Pattern>> patterns_;
};

// compressed-tensors' matching of quantization_config `targets` and `ignore` entries (its
// utils/match.py, is_match): an entry "re:<regex>" matches a module whose name the regex matches
// from the start (Python's re.match: anchored at the start, not at the end, so "re:.*mlp.gate"
// also matches "...mlp.gate_proj"); any other entry matches a module whose name equals it or
// one of whose classes has that name. Linear layers are the only modules quantized here, so
// "Linear" is the one class name that can match.
class CompressedTensorsMatcher {
 public:
  // INVALID_ARGUMENT naming the entry when a "re:" pattern does not compile.
  static absl::StatusOr<CompressedTensorsMatcher> Create(const std::vector<std::string>& entries);
  CompressedTensorsMatcher() = default;

  // Whether some entry matches the module `module_name` ("model.layers.3.mlp.experts.7.down_proj",
  // no ".weight"); `is_linear`: the module is a torch.nn.Linear.
  bool Matches(std::string_view module_name, bool is_linear) const;

 private:
  struct Regex;
  std::vector<std::string> names_;  // exact module or class names
  std::vector<std::shared_ptr<const Regex>> regexes_;
};

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_CONFIG_MODULE_FILTER_H_
