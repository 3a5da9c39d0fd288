// The built-in corpus files, generated at build time by embed_corpus.cmake.
#ifndef EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_DATA_H_
#define EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_DATA_H_

#include <cstddef>

namespace expertmesh::make_model {

struct BuiltinCorpusFile {
  const char* name;
  const unsigned char* data;
  size_t size;
};

extern const BuiltinCorpusFile kBuiltinCorpusFiles[];
extern const size_t kBuiltinCorpusFileCount;

}  // namespace expertmesh::make_model

#endif  // EXPERTMESH_TOOLS_MAKE_MODEL_CORPUS_DATA_H_
