// Splits a Jinja template into text and tag tokens with jinja2's whitespace rules as Hugging
// Face configures them: trim_blocks (drop the first newline after a block or comment tag),
// lstrip_blocks (drop spaces/tabs before a block or comment tag that starts a line), the
// `-`/`+` modifiers on tag delimiters, and keep_trailing_newline=False (one trailing newline of
// the template is dropped). Line endings are normalised to "\n" first, as jinja2 does.
#ifndef EXPERTMESH_MODEL_CHAT_LEXER_H_
#define EXPERTMESH_MODEL_CHAT_LEXER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace expertmesh::chat {

enum class TokenKind {
  kText,        // literal template text (already whitespace-processed)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // text holds the unescaped value
  kInt,
  kFloat,
  kOp,  // text holds the operator or punctuation
  kEof,
};

struct Token {
  TokenKind kind;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  size_t offset = 0;  // byte offset in the normalised source, for error positions
};

struct LexResult {
  std::string source;  // the normalised source the offsets refer to
  std::vector<Token> tokens;
};

// Fails with InvalidArgument "line L, column C: ..." on unterminated tags, comments, strings
// and characters that start no token.
absl::StatusOr<LexResult> Lex(std::string_view template_source);

// "line L, column C" of a byte offset in a normalised source (both 1-based).
std::string DescribePosition(std::string_view source, size_t offset);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_LEXER_H_
