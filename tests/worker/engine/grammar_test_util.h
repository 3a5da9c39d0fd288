// Grammars written by hand in GBNF for the worker's constrained-decoding tests, and the checks
// every constrained output must pass.
#ifndef EXPERTMESH_TESTS_WORKER_ENGINE_GRAMMAR_TEST_UTIL_H_
#define EXPERTMESH_TESTS_WORKER_ENGINE_GRAMMAR_TEST_UTIL_H_

#include <cstdint>
#include <span>
#include <string>

#include "model/tokenizer/tokenizer.h"

namespace expertmesh::testing {

// Any JSON object (OpenAI's json_object), in llama.cpp's json.gbnf style: recursive values,
// bounded whitespace.
inline constexpr char kJsonObjectGbnf[] = R"(root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]) )* "\"" ws
number ::= "-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? ws
ws ::= " "?
)";

// A small schema's grammar, as a router would send it for
// {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
//  "tags":{"type":"array","items":{"type":"string"}}},"required":["name","age","tags"]}.
inline constexpr char kPersonGbnf[] =
    R"(root ::= "{" ws "\"name\"" ws ":" ws string "," ws "\"age\"" ws ":" ws integer "," ws "\"tags\"" ws ":" ws tags ws "}"
tags ::= "[" ws ( string ( ws "," ws string )* )? ws "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt] )* "\""
integer ::= "-"? ("0" | [1-9] [0-9]*)
ws ::= [ ]?
)";

inline constexpr char kChoiceGbnf[] = R"(root ::= "yes" | "no" | "maybe" | "it depends")";

// The text of `tokens` (specials and all: a constrained output has none but its last token).
inline std::string TextOf(const tokenizer::Tokenizer& t, std::span<const int32_t> tokens) {
  std::string text;
  for (int32_t id : tokens) text += t.TokenBytes(id);
  return text;
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_WORKER_ENGINE_GRAMMAR_TEST_UTIL_H_
