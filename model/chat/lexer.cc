#include "model/chat/lexer.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>

#include "absl/status/status.h"
#include "model/chat/str_cat.h"

namespace expertmesh::chat {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string source) { result_.source = std::move(source); }

  absl::StatusOr<LexResult> Run() {
    const std::string& src = result_.source;
    size_t pos = 0;
    bool line_starting = true;  // the previous token ended a line (jinja2's lstrip rule)
    while (pos < src.size()) {
      const size_t start = FindTagStart(pos);
      std::string text = src.substr(pos, start - pos);
      if (start == src.size()) {
        Emit(TokenKind::kText, std::move(text), pos);
        break;
      }
      const char type = src[start + 1];  // '{', '%' or '#'
      const char sign = start + 2 < src.size() ? src[start + 2] : '\0';
      if (sign == '-') {
        text.erase(text.find_last_not_of(" \t\n\r\v\f") + 1);
        if (text.find_first_not_of(" \t\n\r\v\f") == std::string::npos) text.clear();
      } else if (sign != '+' && type != '{') {
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            std::all_of(text.begin() + line_start, text.end(), IsSpace)) {
          text.erase(line_start);
        }
      }
      Emit(TokenKind::kText, std::move(text), pos);
      size_t cursor = start + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (type == '#') {
        const size_t end = src.find("#}", cursor);
        if (end == std::string::npos) return Error(start, "unterminated comment");
        cursor = FinishTag(end, end + 2, /*trim=*/true);
      } else if (type == '{') {
        Emit(TokenKind::kVarBegin, "{{", start);
        auto end = LexExpression(cursor, "}}");
        if (!end.ok()) return end.status();
        Emit(TokenKind::kVarEnd, "}}", *end);
        cursor = FinishTag(*end, *end + 2, /*trim=*/false);
      } else {
        Emit(TokenKind::kBlockBegin, "{%", start);
        const size_t first_token = result_.tokens.size();
        auto end = LexExpression(cursor, "%}");
        if (!end.ok()) return end.status();
        Emit(TokenKind::kBlockEnd, "%}", *end);
        cursor = FinishTag(*end, *end + 2, /*trim=*/true);
        if (result_.tokens.size() == first_token + 2 &&
            result_.tokens[first_token].kind == TokenKind::kName &&
            result_.tokens[first_token].text == "raw") {
          auto after = LexRaw(start, cursor);
          if (!after.ok()) return after.status();
          cursor = *after;
        }
      }
      line_starting = cursor > 0 && src[cursor - 1] == '\n';
      pos = cursor;
    }
    Emit(TokenKind::kEof, "", src.size());
    return std::move(result_);
  }

 private:
  size_t FindTagStart(size_t pos) const {
    const std::string& src = result_.source;
    for (size_t i = src.find('{', pos); i != std::string::npos; i = src.find('{', i + 1)) {
      if (i + 1 < src.size() && (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#')) {
        return i;
      }
    }
    return src.size();
  }

  // `close` is the offset of the closing delimiter ("}}", "%}" or "#}") and `after` the offset
  // just past it. Applies "-" (strip all following whitespace) and trim_blocks (one newline).
  size_t FinishTag(size_t close, size_t after, bool trim) {
    const std::string& src = result_.source;
    const char modifier = close > 0 ? src[close - 1] : '\0';
    if (modifier == '-') {
      while (after < src.size() && IsSpace(src[after])) ++after;
    } else if (trim && modifier != '+' && after < src.size() && src[after] == '\n') {
      ++after;
    }
    return after;
  }

  // {% raw %} ... {% endraw %}: everything up to the endraw tag is literal text.
  absl::StatusOr<size_t> LexRaw(size_t raw_start, size_t body_start) {
    const std::string& src = result_.source;
    result_.tokens.resize(result_.tokens.size() - 3);  // drop {% raw %}
    for (size_t i = src.find("{%", body_start); i != std::string::npos; i = src.find("{%", i + 2)) {
      size_t j = i + 2;
      const bool strip_before = j < src.size() && src[j] == '-';
      if (j < src.size() && (src[j] == '-' || src[j] == '+')) ++j;
      while (j < src.size() && IsSpace(src[j])) ++j;
      if (src.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src.size() && IsSpace(src[j])) ++j;
      if (j < src.size() && (src[j] == '-' || src[j] == '+')) ++j;
      if (src.compare(j, 2, "%}") != 0) continue;
      std::string text = src.substr(body_start, i - body_start);
      if (strip_before) text.erase(text.find_last_not_of(" \t\n\r\v\f") + 1);
      Emit(TokenKind::kText, std::move(text), body_start);
      return FinishTag(j, j + 2, /*trim=*/true);
    }
    return Error(raw_start, "unterminated {% raw %} block (missing {% endraw %})");
  }

  // Lexes expression tokens from `pos` until the closing delimiter `close` at bracket depth 0.
  // Returns the offset of the delimiter, or of its '-'/'+' modifier.
  absl::StatusOr<size_t> LexExpression(size_t pos, std::string_view close) {
    const std::string& src = result_.source;
    int depth = 0;
    while (true) {
      while (pos < src.size() && IsSpace(src[pos])) ++pos;
      if (pos >= src.size()) {
        return Error(pos, Cat("unexpected end of template, expected '", close, "'"));
      }
      if (depth == 0) {
        if (src.compare(pos, close.size(), close) == 0) return pos;
        if ((src[pos] == '-' || src[pos] == '+') &&
            src.compare(pos + 1, close.size(), close) == 0) {
          return pos + 1;
        }
      }
      const char c = src[pos];
      if (IsNameStart(c)) {
        size_t end = pos;
        while (end < src.size() && (IsNameStart(src[end]) || IsDigit(src[end]))) ++end;
        Emit(TokenKind::kName, src.substr(pos, end - pos), pos);
        pos = end;
      } else if (IsDigit(c)) {
        auto end = LexNumber(pos);
        if (!end.ok()) return end.status();
        pos = *end;
      } else if (c == '\'' || c == '"') {
        auto end = LexString(pos);
        if (!end.ok()) return end.status();
        pos = *end;
      } else {
        static constexpr std::array<std::string_view, 25> kOps = {
            "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
            ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ".", ",", ":", "|"};
        std::string_view op;
        for (std::string_view candidate : kOps) {
          if (src.compare(pos, candidate.size(), candidate) == 0) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) return Error(pos, Cat("unexpected character '", src.substr(pos, 1), "'"));
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        Emit(TokenKind::kOp, std::string(op), pos);
        pos += op.size();
      }
    }
  }

  absl::StatusOr<size_t> LexNumber(size_t pos) {
    const std::string& src = result_.source;
    size_t end = pos;
    bool is_float = false;
    while (end < src.size() && (IsDigit(src[end]) || src[end] == '_')) ++end;
    if (end + 1 < src.size() && src[end] == '.' && IsDigit(src[end + 1])) {
      is_float = true;
      ++end;
      while (end < src.size() && (IsDigit(src[end]) || src[end] == '_')) ++end;
    }
    if (end < src.size() && (src[end] == 'e' || src[end] == 'E')) {
      size_t e = end + 1;
      if (e < src.size() && (src[e] == '+' || src[e] == '-')) ++e;
      if (e < src.size() && IsDigit(src[e])) {
        is_float = true;
        end = e;
        while (end < src.size() && IsDigit(src[end])) ++end;
      }
    }
    std::string digits;
    for (size_t i = pos; i < end; ++i) {
      if (src[i] != '_') digits.push_back(src[i]);
    }
    Token token{is_float ? TokenKind::kFloat : TokenKind::kInt, digits, 0, 0, pos};
    if (is_float) {
      token.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), token.int_value);
      if (ec != std::errc()) return Error(pos, "integer literal out of range");
    }
    result_.tokens.push_back(std::move(token));
    return end;
  }

  // Python string literal escapes, as jinja2 decodes them ("unicode-escape"); unknown escapes
  // keep their backslash.
  absl::StatusOr<size_t> LexString(size_t pos) {
    const std::string& src = result_.source;
    const char quote = src[pos];
    std::string value;
    size_t i = pos + 1;
    while (true) {
      if (i >= src.size()) return Error(pos, "unterminated string literal");
      const char c = src[i];
      if (c == quote) break;
      if (c != '\\' || i + 1 >= src.size()) {
        value.push_back(c);
        ++i;
        continue;
      }
      const char e = src[i + 1];
      i += 2;
      switch (e) {
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case '\\':
          value.push_back('\\');
          break;
        case '\'':
          value.push_back('\'');
          break;
        case '"':
          value.push_back('"');
          break;
        case 'a':
          value.push_back('\a');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          if (i + n > src.size()) return Error(i - 2, "truncated \\x/\\u escape");
          uint32_t cp = 0;
          auto [p, ec] = std::from_chars(src.data() + i, src.data() + i + n, cp, 16);
          if (ec != std::errc() || p != src.data() + i + n || cp > 0x10FFFF) {
            return Error(i - 2, "invalid \\x/\\u escape");
          }
          AppendUtf8(cp, &value);
          i += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < src.size() && src[i] >= '0' && src[i] <= '7'; ++k, ++i) {
              cp = cp * 8 + static_cast<uint32_t>(src[i] - '0');
            }
            AppendUtf8(cp, &value);
          } else {
            value.push_back('\\');
            value.push_back(e);
          }
      }
    }
    Emit(TokenKind::kString, std::move(value), pos);
    return i + 1;
  }

  void Emit(TokenKind kind, std::string text, size_t offset) {
    if (kind == TokenKind::kText && text.empty()) return;
    result_.tokens.push_back(Token{kind, std::move(text), 0, 0, offset});
  }

  absl::Status Error(size_t offset, std::string_view message) const {
    return absl::InvalidArgumentError(Cat("chat template syntax error at ",
                                          DescribePosition(result_.source, offset), ": ", message));
  }

  LexResult result_;
};

std::string Normalise(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

}  // namespace

absl::StatusOr<LexResult> Lex(std::string_view template_source) {
  return Lexer(Normalise(template_source)).Run();
}

std::string DescribePosition(std::string_view source, size_t offset) {
  offset = std::min(offset, source.size());
  const std::string_view before = source.substr(0, offset);
  const size_t line = static_cast<size_t>(std::count(before.begin(), before.end(), '\n')) + 1;
  const size_t last_newline = before.rfind('\n');
  const size_t column = last_newline == std::string_view::npos ? offset + 1 : offset - last_newline;
  return Cat("line ", line, ", column ", column);
}

}  // namespace expertmesh::chat
