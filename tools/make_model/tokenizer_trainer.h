// Trains make-model's tokenizer: the family's normalizer (NFC for Qwen) and pre-tokenizer
// applied to the corpus, a byte-level BPE learned to the target size, and the Hugging Face files.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_TRAINER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_TRAINER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/make_model/corpus.h"
#include "tools/make_model/tokenizer_family.h"
#include "tools/make_model/tokenizer_writer.h"

namespace expertmesh::make_model {

struct TrainedTokenizer {
  BpeModel bpe;
  TokenizerFiles files;
};

// INVALID_ARGUMENT when the corpus is not valid UTF-8 or bpe_vocab_size < 256.
absl::StatusOr<TrainedTokenizer> TrainTokenizer(const std::vector<CorpusDocument>& corpus,
                                                const TokenizerFamily& family, int bpe_vocab_size,
                                                int64_t model_max_length);

// NFC normalization with utf8proc. INVALID_ARGUMENT for invalid UTF-8.
absl::StatusOr<std::string> NormalizeNfc(std::string_view text);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_TOKENIZER_TRAINER_H_
