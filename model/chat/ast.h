// Syntax tree of a parsed chat template. Plain structs owned through unique_ptr; the tree is
// immutable after parsing, so one parsed template may be rendered from many threads at once.
#ifndef EXPERTMESH_MODEL_CHAT_AST_H_
#define EXPERTMESH_MODEL_CHAT_AST_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/chat/value.h"

namespace expertmesh::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,  // literal
  kName,     // name
  kList,     // children = items
  kTuple,    // children = items (rendered as a list)
  kDict,     // children = key0, value0, key1, value1, ...
  kGetAttr,  // children[0].name
  kGetItem,  // children[0][children[1]]
  kSlice,    // children[0][children[1]:children[2]:children[3]], absent parts are null
  kCall,     // children[0](children[1..], kwargs)
  kFilter,   // children[0] | name(children[1..], kwargs)
  kTest,     // children[0] is [not] name(children[1..])
  kUnary,    // op in {"-", "+", "not"} applied to children[0]
  kBinary,   // children[0] op children[1]; op in + - * / // % ** ~ and or
  kCompare,  // children[0] ops[0] children[1] ops[1] children[2] ...
  kCond,     // children[1] if children[0] else children[2] (children[2] may be null)
};

struct Expr {
  ExprKind kind;
  size_t offset = 0;  // source position for runtime errors
  Value literal;
  std::string name;              // variable, attribute, filter, test name; or the operator
  std::vector<std::string> ops;  // kCompare operators
  bool negated = false;          // kTest: "is not"
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

enum class NodeKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // branches (cond, body)..., else_body
  kFor,       // {% for targets in expr [if filter] %} body {% else %} else_body
  kSet,       // {% set targets = expr %} or {% set target.attr = expr %}
  kSetBlock,  // {% set target %} body {% endset %}
  kBreak,
  kContinue,
  kMacro,       // {% macro attr(targets = defaults) %} body {% endmacro %}
  kCallBlock,   // {% call(targets = defaults) expr %} body {% endcall %}: body is caller()
  kGeneration,  // {% generation %} body {% endgeneration %}: transformers' assistant-mask tag
};

struct IfBranch {
  ExprPtr condition;
  Body body;
};

struct Node {
  NodeKind kind;
  size_t offset = 0;
  std::string text;
  ExprPtr expr;                      // output value, for iterable, set value
  ExprPtr filter;                    // for ... if filter
  std::vector<std::string> targets;  // for/set target names; macro/caller parameter names
  std::vector<ExprPtr> defaults;     // macro/caller: one per parameter, null when it has none
  std::string attr;                  // set ns.attr: targets[0] is ns, attr the attribute;
                                     // kMacro: the macro's name
  std::vector<IfBranch> branches;
  Body body;
  Body else_body;
};

}  // namespace expertmesh::chat

#endif  // EXPERTMESH_MODEL_CHAT_AST_H_
