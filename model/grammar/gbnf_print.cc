// PrintGbnf: every character a literal or class can hold is written so that ParseGbnf reads the
// same code point back (gbnf.h).
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/grammar/gbnf.h"
#include "model/grammar/utf8.h"

namespace expertmesh::grammar {
namespace {

// How an expression is nested, which decides where it needs parentheses.
enum class Context { kTop, kChoiceItem, kSequenceItem, kRepeatItem };

void AppendLiteral(std::string_view text, std::string& out) {
  out.push_back('"');
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    const uint8_t byte = static_cast<uint8_t>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7F) {
      absl::StrAppendFormat(&out, "\\x%02X", byte);
    } else if (byte < 0x80) {
      out.push_back(c);
    } else {
      // Valid UTF-8 is copied as is (readable); an invalid byte has no GBNF spelling, and \xHH
      // would mean the code point U+00HH, so it is written that way as the closest equivalent.
      size_t next = i;
      if (DecodeUtf8(text, &next) < 0) {
        absl::StrAppendFormat(&out, "\\x%02X", byte);
      } else {
        out.append(text.substr(i, next - i));
      }
      i = next;
      continue;
    }
    ++i;
  }
  out.push_back('"');
}

void AppendClassChar(uint32_t cp, std::string& out) {
  if (cp == '\n') {
    out += "\\n";
  } else if (cp == '\r') {
    out += "\\r";
  } else if (cp == '\t') {
    out += "\\t";
  } else if (cp == '\\' || cp == ']' || cp == '[' || cp == '-' || cp == '^' || cp < 0x20 ||
             cp == 0x7F) {
    absl::StrAppendFormat(&out, "\\x%02X", cp);
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp <= 0xFFFF) {
    absl::StrAppendFormat(&out, "\\u%04X", cp);
  } else {
    absl::StrAppendFormat(&out, "\\U%08X", cp);
  }
}

void AppendExpr(const Expr& e, Context context, std::string& out) {
  switch (e.kind) {
    case Expr::Kind::kEmpty:
      out += "\"\"";
      return;
    case Expr::Kind::kLiteral:
      AppendLiteral(e.text, out);
      return;
    case Expr::Kind::kCharClass:
      if (e.negated && e.ranges.empty()) {
        out.push_back('.');
        return;
      }
      out += e.negated ? "[^" : "[";
      for (const CodePointRange& r : e.ranges) {
        AppendClassChar(r.lo, out);
        if (r.hi != r.lo) {
          out.push_back('-');
          AppendClassChar(r.hi, out);
        }
      }
      out.push_back(']');
      return;
    case Expr::Kind::kRuleRef:
      out += e.rule;
      return;
    case Expr::Kind::kSequence: {
      // A sequence inside a sequence keeps its parentheses, so that it parses back nested.
      const bool parens = context == Context::kSequenceItem || context == Context::kRepeatItem ||
                          e.items.size() < 2;
      if (parens) out.push_back('(');
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i > 0) out.push_back(' ');
        AppendExpr(e.items[i], Context::kSequenceItem, out);
      }
      if (parens) out.push_back(')');
      return;
    }
    case Expr::Kind::kChoice: {
      if (e.items.empty()) {  // matches nothing, as an empty class does
        out += "[]";
        return;
      }
      const bool parens = context != Context::kTop || e.items.size() < 2;
      if (parens) out.push_back('(');
      for (size_t i = 0; i < e.items.size(); ++i) {
        if (i > 0) out += " | ";
        AppendExpr(e.items[i], Context::kChoiceItem, out);
      }
      if (parens) out.push_back(')');
      return;
    }
    case Expr::Kind::kRepeat: {
      const bool parens = context == Context::kRepeatItem;
      if (parens) out.push_back('(');
      AppendExpr(e.items[0], Context::kRepeatItem, out);
      const int32_t lo = e.min_count;
      const int32_t hi = e.max_count;
      if (lo == 0 && hi == kUnbounded) {
        out.push_back('*');
      } else if (lo == 1 && hi == kUnbounded) {
        out.push_back('+');
      } else if (lo == 0 && hi == 1) {
        out.push_back('?');
      } else if (hi == kUnbounded) {
        absl::StrAppend(&out, "{", lo, ",}");
      } else if (lo == hi) {
        absl::StrAppend(&out, "{", lo, "}");
      } else {
        absl::StrAppend(&out, "{", lo, ",", hi, "}");
      }
      if (parens) out.push_back(')');
      return;
    }
  }
}

}  // namespace

std::string PrintGbnfExpr(const Expr& e) {
  std::string out;
  AppendExpr(e, Context::kTop, out);
  return out;
}

std::string PrintGbnf(const Grammar& g) {
  std::string out;
  if (g.root != "root") absl::StrAppend(&out, "root ::= ", g.root, "\n");
  for (const Rule& rule : g.rules) {
    absl::StrAppend(&out, rule.name, " ::= ");
    AppendExpr(rule.body, Context::kTop, out);
    out.push_back('\n');
  }
  return out;
}

}  // namespace expertmesh::grammar
