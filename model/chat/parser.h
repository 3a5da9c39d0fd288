// Recursive-descent parser from tokens to the syntax tree, following jinja2's grammar and
// operator precedence (condexpr < or < and < not < compare < ~ < + - < * / // % < ** < unary,
// with filters and tests binding tighter than any binary operator).
#ifndef EXPERTMESH_MODEL_CHAT_PARSER_H_
#define EXPERTMESH_MODEL_CHAT_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat/ast.h"
#include "model/chat/lexer.h"

namespace expertmesh::chat {

// Fails with InvalidArgument "chat template syntax error at line L, column C: ..." for unknown
// or unclosed statements, unexpected tokens, and nesting deeper than a fixed bound (so hostile
// templates cannot overflow the stack).
absl::StatusOr<Body> Parse(const LexResult& lexed);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_PARSER_H_
