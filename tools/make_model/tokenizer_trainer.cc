#include "tools/make_model/tokenizer_trainer.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "utf8proc.h"

namespace expertmesh::make_model {

absl::StatusOr<std::string> NormalizeNfc(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &out,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("NFC normalization failed: ", utf8proc_errmsg(n)));
  }
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

absl::StatusOr<TrainedTokenizer> TrainTokenizer(const std::vector<CorpusDocument>& corpus,
                                                const TokenizerFamily& family, int bpe_vocab_size,
                                                int64_t model_max_length) {
  ASSIGN_OR_RETURN(PreTokenizer pre_tokenizer, PreTokenizer::Create(family.pattern));
  std::vector<std::string> documents;
  documents.reserve(corpus.size());
  for (const CorpusDocument& doc : corpus) {
    if (family.nfc) {
      absl::StatusOr<std::string> normalized = NormalizeNfc(doc.text);
      if (!normalized.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("corpus file ", doc.name, ": ", normalized.status().message()));
      }
      documents.push_back(*std::move(normalized));
    } else {
      documents.push_back(doc.text);
    }
  }
  BpeTrainerOptions options;
  options.vocab_size = bpe_vocab_size;
  TrainedTokenizer trained;
  ASSIGN_OR_RETURN(trained.bpe, TrainBpe(documents, pre_tokenizer, options));
  trained.files = BuildTokenizerFiles(trained.bpe, family, model_max_length);
  return trained;
}

}  // namespace expertmesh::make_model
