// tokenizer.json "post_processor" for single sequences: the special token ids placed before
// and after the encoded text when Encode(add_special_tokens=true). Supported: TemplateProcessing,
// ByteLevel (adds nothing), RobertaProcessing, BertProcessing, and a Sequence of them.
#ifndef EXPERTMESH_MODEL_TOKENIZER_POST_PROCESSOR_H_
#define EXPERTMESH_MODEL_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::tokenizer {

struct PostProcessor {
  std::vector<int32_t> prefix;  // ids before the sequence
  std::vector<int32_t> suffix;  // ids after it
};

// Parses `spec` (null means no post-processing). INVALID_ARGUMENT for unknown types or a
// template naming a special token it does not define.
absl::StatusOr<PostProcessor> PostProcessorFromJson(const nlohmann::json& spec);

}  // namespace expertmesh::tokenizer

#endif  // EXPERTMESH_MODEL_TOKENIZER_POST_PROCESSOR_H_
