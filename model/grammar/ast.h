// A context-free grammar over UTF-8 text: the form every constraint of constrained decoding takes
// (JSON schema, json_object, regex, choice list, tool calls, reasoning prefixes), and what the
// router sends the worker as GBNF text (gbnf.h). The engine (engine/) compiles it against a
// tokenizer's vocabulary into per-step token masks.
//
// Semantics are llama.cpp's GBNF: literals and character classes match Unicode code points
// (UTF-8 encoded), `root` is the start rule, rules may refer to each other (recursion allowed,
// left recursion refused by the engine).
#ifndef EXPERTMESH_MODEL_GRAMMAR_AST_H_
#define EXPERTMESH_MODEL_GRAMMAR_AST_H_

#include <cstdint>
#include <string>
#include <vector>

namespace expertmesh::grammar {

// Inclusive range of Unicode code points.
struct CodePointRange {
  uint32_t lo = 0;
  uint32_t hi = 0;
  bool operator==(const CodePointRange&) const = default;
};

// The largest code point (ranges are clipped to it; surrogates D800-DFFF never match).
inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;
// Repeat::max_count for an unbounded repetition.
inline constexpr int32_t kUnbounded = -1;

struct Expr {
  enum class Kind {
    kEmpty,      // matches the empty string
    kLiteral,    // `text` (UTF-8 bytes), matched exactly
    kCharClass,  // one code point in `ranges` (or, when `negated`, any code point outside them)
    kRuleRef,    // the rule named `rule`
    kSequence,   // `items` one after another
    kChoice,     // one of `items`
    kRepeat,     // items[0], min_count..max_count times (max_count kUnbounded: no limit)
  };
  Kind kind = Kind::kEmpty;
  std::string text;                    // kLiteral
  std::vector<CodePointRange> ranges;  // kCharClass
  bool negated = false;                // kCharClass
  std::string rule;                    // kRuleRef
  std::vector<Expr> items;             // kSequence, kChoice; kRepeat: exactly one
  int32_t min_count = 0;               // kRepeat
  int32_t max_count = kUnbounded;      // kRepeat

  bool operator==(const Expr&) const = default;

  static Expr Empty() { return {}; }
  static Expr Literal(std::string text) {
    Expr e;
    e.kind = Kind::kLiteral;
    e.text = std::move(text);
    return e;
  }
  static Expr CharClass(std::vector<CodePointRange> ranges, bool negated = false) {
    Expr e;
    e.kind = Kind::kCharClass;
    e.ranges = std::move(ranges);
    e.negated = negated;
    return e;
  }
  static Expr Ref(std::string rule) {
    Expr e;
    e.kind = Kind::kRuleRef;
    e.rule = std::move(rule);
    return e;
  }
  static Expr Sequence(std::vector<Expr> items) {
    Expr e;
    e.kind = Kind::kSequence;
    e.items = std::move(items);
    return e;
  }
  static Expr Choice(std::vector<Expr> items) {
    Expr e;
    e.kind = Kind::kChoice;
    e.items = std::move(items);
    return e;
  }
  static Expr Repeat(Expr item, int32_t min_count, int32_t max_count) {
    Expr e;
    e.kind = Kind::kRepeat;
    e.items.push_back(std::move(item));
    e.min_count = min_count;
    e.max_count = max_count;
    return e;
  }
};

struct Rule {
  std::string name;  // [A-Za-z0-9_-]+ (GBNF rule names)
  Expr body;
  bool operator==(const Rule&) const = default;
};

// Rules in definition order; `root` names the start rule.
struct Grammar {
  std::vector<Rule> rules;
  std::string root = "root";
  bool operator==(const Grammar&) const = default;
};

}  // namespace expertmesh::grammar

#endif  // EXPERTMESH_MODEL_GRAMMAR_AST_H_
