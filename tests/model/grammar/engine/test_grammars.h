// Grammars and a hand-made vocabulary shared by the engine tests, built directly from ast.h.
#ifndef EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_TEST_GRAMMARS_H_
#define EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_TEST_GRAMMARS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/grammar/ast.h"
#include "model/grammar/engine/token_vocabulary.h"

namespace expertmesh::grammar::testing {

struct NamedGrammar {
  std::string name;
  Grammar grammar;
};

// Any JSON value at the root object, in the style of llama.cpp's json.gbnf (recursive).
Grammar JsonGrammar();
// Arithmetic with nested parentheses (recursion through three rules).
Grammar ArithmeticGrammar();
// A regex-like grammar: bounded repeats, optional parts, overlapping alternatives.
Grammar RegexLikeGrammar();
// "A", then any text through the first "</t>" (a KMP automaton as right-recursive rules, as
// TextThrough writes it), then [a-z]* "!".
Grammar TextThroughGrammar();
// Multi-byte character classes (2-, 3- and 4-byte UTF-8) and a negated class.
Grammar Utf8Grammar();
// Any text without lowercase letters, then "x" (about half the vocabulary at every step).
Grammar NoLowercaseGrammar();
// A root that refers to itself, and a nullable right-recursive rule between calls.
Grammar NullableRecursionGrammar();
std::vector<NamedGrammar> AllTestGrammars();

struct SmallVocab {
  std::shared_ptr<const TokenVocabulary> vocab;
  int32_t eos = 0;      // special, EOS
  int32_t special = 0;  // special, not EOS
  int32_t empty = 0;    // not special, no bytes
  int32_t padding = 0;  // first id past the tokenizer
};
// Every single byte, multi-byte tokens that cross grammar boundaries and split UTF-8
// characters, two special tokens, an empty token and padding ids.
SmallVocab MakeSmallVocab();

// The directory of the real Qwen2 tokenizer ($EXPERTMESH_TOKENIZER_DIR/qwen2, else
// ${build}/test-data/tokenizers/qwen2), or empty when tokenizer.json is not there.
std::string Qwen2TokenizerDir();

}  // namespace expertmesh::grammar::testing

#endif  // EXPERTMESH_TESTS_MODEL_GRAMMAR_ENGINE_TEST_GRAMMARS_H_
