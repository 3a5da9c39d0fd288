// Runtime values of the chat-template interpreter, with Python/jinja2 semantics.
//
// A Value is cheap to copy: strings, lists and dicts are shared immutable payloads (jinja2's
// ImmutableSandboxedEnvironment forbids mutating them too). The only mutable payload is a
// namespace(), which `{% set ns.attr = ... %}` writes through.
//
// Dicts keep insertion order, as Python dicts do: tojson and items() must list keys in the order
// the caller supplied them, so the JSON boundary uses nlohmann::ordered_json.
#ifndef EXPERTMESH_MODEL_CHAT_VALUE_H_
#define EXPERTMESH_MODEL_CHAT_VALUE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace expertmesh::chat {

class Value;
struct Node;  // ast.h; a macro value points at its definition
using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;  // insertion ordered

class Value {
 public:
  enum class Kind {
    kUndefined,  // a missing variable/attribute: prints "", is falsy, errors on arithmetic
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,  // mutable attribute bag made by namespace(...)
    kBuiltin,    // a global function (range, namespace, raise_exception, strftime_now, ...)
    kMethod,     // a method bound to its receiver: "abc".upper, d.items, ...
    kMacro,      // a {% macro %} (or the caller of a {% call %} block) with its closure
  };

  Value() = default;  // undefined
  static Value Undefined(std::string name = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(ValueList items);
  static Value Dict(ValueDict items);
  static Value Namespace(ValueDict items);
  static Value Builtin(std::string name);
  static Value Method(Value receiver, std::string name);
  // `definition` is the kMacro/kCallBlock node, owned by the parsed template, which outlives
  // every render. `closure` holds the variables visible where a nested macro or a caller was
  // defined (empty for top-level macros, which see the template's top-level variables).
  static Value Macro(std::string name, const Node* definition, ValueDict closure);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python's numbers.Number includes bool.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const {
    return kind_ == Kind::kBuiltin || kind_ == Kind::kMethod || kind_ == Kind::kMacro;
  }
  bool is_macro() const { return kind_ == Kind::kMacro; }

  bool bool_value() const { return b_; }
  int64_t int_value() const { return i_; }  // REQUIRES: is_int() or is_bool()
  double float_value() const { return f_; }
  double as_double() const;              // REQUIRES: is_number()
  const std::string& str() const;        // REQUIRES: is_string(); also the undefined/builtin name
  const ValueList& list() const;         // REQUIRES: is_list()
  const ValueDict& dict() const;         // REQUIRES: is_dict() or is_namespace()
  ValueDict& mutable_namespace() const;  // REQUIRES: is_namespace()
  const Value& receiver() const;         // REQUIRES: kind() == kMethod
  const Node* macro() const { return macro_; }  // REQUIRES: is_macro(); closure in dict()

  // Python truthiness (undefined is false).
  bool Truthy() const;
  // Dict/namespace lookup; nullptr when the key is absent or this is not a mapping.
  const Value* Find(std::string_view key) const;
  // Python str(): what {{ value }} prints. Undefined prints "".
  std::string ToString() const;
  // Python repr(), used for containers printed by ToString.
  std::string Repr() const;
  // Python ==.
  bool Equals(const Value& other) const;
  // Python type name for error messages ("str", "int", "NoneType", "dict", ...).
  std::string TypeName() const;

  static Value FromJson(const nlohmann::ordered_json& json);

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;  // const for kDict by convention; written for kNamespace
  std::shared_ptr<const Value> receiver_;
  const Node* macro_ = nullptr;
};

// Python repr() of a float: shortest round-trip digits, "1.0", "1e+16", "inf", "nan".
std::string FormatPythonFloat(double value);

// json.dumps(value, ensure_ascii=False, indent=indent) as transformers' tojson filter calls it.
// indent < 0 means None (one line, ", " and ": " separators). Fails with InvalidArgument for
// values JSON cannot hold (undefined, functions), as json.dumps raises TypeError.
absl::StatusOr<std::string> ToJson(const Value& value, int indent);

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_VALUE_H_
