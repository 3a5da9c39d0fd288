// Renders a parsed template against a context, with jinja2 scoping (a for loop has its own
// scope; `set` inside it does not leak out, hence namespace()) and bounded resources.
#ifndef EXPERTMESH_MODEL_CHAT_EVALUATOR_H_
#define EXPERTMESH_MODEL_CHAT_EVALUATOR_H_

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/chat/ast.h"
#include "model/chat/value.h"

namespace expertmesh::chat {

// Bounds that make a hostile or buggy template fail instead of hanging or exhausting memory.
struct RenderLimits {
  size_t max_output_bytes = 16u << 20;      // rendered text, and any single string value
  int64_t max_loop_iterations = 1'000'000;  // summed over all loops (and range() sizes)
};

struct EvalOptions {
  RenderLimits limits;
  // The time strftime_now() formats; unset means the local time at render.
  std::optional<std::tm> now;
};

// Renders `body` (parsed from `source`, which error positions refer to) with the variables of
// `context` (a dict) plus the globals raise_exception, strftime_now, namespace, range and dict.
// Errors: InvalidArgument carrying exactly the message for raise_exception(msg);
// InvalidArgument "chat template error at line L, column C: ..." for runtime errors (undefined
// values in arithmetic, type errors, unknown filters or tests); ResourceExhausted when a
// RenderLimits bound is hit.
absl::StatusOr<std::string> Evaluate(const Body& body, std::string_view source,
                                     const Value& context, const EvalOptions& options);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_EVALUATOR_H_
