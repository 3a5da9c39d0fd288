// Byte-level BPE training (the algorithm of GPT-2 / Hugging Face `tokenizers` BpeTrainer):
// pre-tokenize, count distinct words, start from the 256 byte symbols and repeatedly merge the
// most frequent adjacent pair until the vocabulary reaches its target size. Deterministic: ties
// between pairs of equal count go to the pair with the smaller (left id, right id).
//
// Cost: pair counts are kept incrementally and a merge only revisits the words that contain the
// merged pair, so training 30k merges on a few hundred KB takes well under a second.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_BPE_TRAINER_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_BPE_TRAINER_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/make_model/pretokenizer.h"

namespace expertmesh::make_model {

struct BpeTrainerOptions {
  // Target number of BPE tokens, the 256 byte symbols included (special tokens come on top).
  int vocab_size = 2048;
  // Merging stops early when the best pair occurs fewer times than this. 1 (as Hugging Face's
  // default) lets a small corpus reach large vocabularies: once common pairs are used up, the
  // rarer words are merged whole, in a fixed order.
  int min_frequency = 1;
};

// A trained model. Tokens are ByteLevel strings (see byte_level.h); ids are vector indices:
// 0..255 are the single bytes in byte order, then one token per new merge result in the order
// learned.
struct BpeModel {
  std::vector<std::string> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in priority order
};

// Trains on `documents` pre-tokenized by `pre_tokenizer`. INVALID_ARGUMENT when vocab_size is
// below 256 or a document is not valid UTF-8.
absl::StatusOr<BpeModel> TrainBpe(const std::vector<std::string>& documents,
                                  const PreTokenizer& pre_tokenizer,
                                  const BpeTrainerOptions& options);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_BPE_TRAINER_H_
