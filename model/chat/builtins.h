// Filters (`x | name(...)`), tests (`x is name`), and methods of str/dict (`s.strip()`) with the
// semantics of jinja2 3.1 and Python 3 that Hugging Face chat templates rely on.
#ifndef EXPERTMESH_MODEL_CHAT_BUILTINS_H_
#define EXPERTMESH_MODEL_CHAT_BUILTINS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat/value.h"

namespace expertmesh::chat {

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;

  // Positional argument i, else keyword `name`, else nullptr.
  const Value* Get(size_t i, std::string_view name) const;
};

// Errors: InvalidArgument for an unknown filter ("no filter named 'x'") or arguments/inputs the
// filter rejects (as jinja2 raises TypeError/FilterArgumentError).
absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args);

// Errors: InvalidArgument for an unknown test.
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, const CallArgs& args);

// Whether `receiver.name` is a method (str: strip, split, ...; dict: items, get, ...).
bool HasMethod(const Value& receiver, std::string_view name);

// Calls a method found by HasMethod. Errors: InvalidArgument on bad arguments.
absl::StatusOr<Value> CallMethod(const Value& receiver, std::string_view name,
                                 const CallArgs& args);

// Items of an iterable as a for loop sees them: list items, dict keys, string characters
// (UTF-8 code points); undefined iterates as empty. InvalidArgument for non-iterables.
absl::StatusOr<ValueList> Iterate(const Value& value);

// Python `len()`; InvalidArgument for values without a length.
absl::StatusOr<int64_t> Length(const Value& value);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_BUILTINS_H_
