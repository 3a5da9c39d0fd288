// The text make-model trains its tokenizer on. The built-in corpus is the files of
// tools/make_model/corpus/, compiled into the binary so that make-model works from any
// directory; LoadCorpusDir reads another directory instead.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::make_model {

struct CorpusDocument {
  std::string name;  // file name
  std::string text;
};

// The built-in corpus, in file-name order.
std::vector<CorpusDocument> BuiltinCorpus();

// Every regular file of `dir` (not recursive), in file-name order. NOT_FOUND when `dir` does
// not exist, INVALID_ARGUMENT when it holds no files or a file is not valid UTF-8.
absl::StatusOr<std::vector<CorpusDocument>> LoadCorpusDir(const std::string& dir);

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_H_
