#include "model/grammar/gbnf.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/expr_util.h"
#include "model/grammar/utf8.h"
#include "tests/model/grammar/recognizer.h"

namespace expertmesh::grammar {
namespace {

using ::testing::HasSubstr;

Grammar ParseOrDie(std::string_view text) {
  absl::StatusOr<Grammar> g = ParseGbnf(text);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : Grammar{};
}

TEST(GbnfTest, ParsesRulesIntoTheirStructure) {
  const Grammar g = ParseOrDie(R"(root ::= "a" item* | [^x-z] "b"? # comment
item ::= ("c" | d){2,3} .
d ::= [0-9]{1,} "e"{4})");
  Grammar want;
  want.rules.push_back(
      {"root", Expr::Choice({Expr::Sequence({Expr::Literal("a"),
                                             Expr::Repeat(Expr::Ref("item"), 0, kUnbounded)}),
                             Expr::Sequence({Expr::CharClass({{'x', 'z'}}, true),
                                             Expr::Repeat(Expr::Literal("b"), 0, 1)})})});
  want.rules.push_back(
      {"item",
       Expr::Sequence({Expr::Repeat(Expr::Choice({Expr::Literal("c"), Expr::Ref("d")}), 2, 3),
                       Expr::CharClass({}, true)})});
  want.rules.push_back(
      {"d", Expr::Sequence({Expr::Repeat(Expr::CharClass({{'0', '9'}}), 1, kUnbounded),
                            Expr::Repeat(Expr::Literal("e"), 4, 4)})});
  EXPECT_EQ(g, want);
}

TEST(GbnfTest, RulesSpanLinesUntilTheNextDefinition) {
  // llama.cpp's json.gbnf layout: a body starting on the next line, alternatives on their own.
  const Grammar g = ParseOrDie(R"(
root   ::= object
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

value  ::= object | string
  | "null"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
ws ::= | " " | "\n" [ \t]{0,20}
)");
  ASSERT_EQ(g.rules.size(), 5u);
  EXPECT_EQ(g.rules[1].name, "object");
  EXPECT_EQ(g.rules[2].body.kind, Expr::Kind::kChoice);
  EXPECT_EQ(g.rules[2].body.items.size(), 3u);
  EXPECT_EQ(g.rules[4].body.items[0], Expr::Empty());
  EXPECT_TRUE(testing::Recognize(g, R"({"a": {"b": null}, "c\u00e9\n": "x"})"));
  EXPECT_FALSE(testing::Recognize(g, R"({"a": 1})"));
}

TEST(GbnfTest, LiteralAndClassEscapesAreCodePoints) {
  const Grammar g =
      ParseOrDie(R"(root ::= "\x41\u00e9\U0001F600\n\t\r\\\"\[\]" [\]\-\\a-c\u4E2D])");
  const Expr& seq = g.rules[0].body;
  ASSERT_EQ(seq.kind, Expr::Kind::kSequence);
  EXPECT_EQ(seq.items[0].text, "A\xC3\xA9\xF0\x9F\x98\x80\n\t\r\\\"[]");
  EXPECT_EQ(seq.items[1].ranges,
            (std::vector<CodePointRange>{
                {']', ']'}, {'-', '-'}, {'\\', '\\'}, {'a', 'c'}, {0x4E2D, 0x4E2D}}));
  EXPECT_EQ(ParseOrDie("root ::= \"\"").rules[0].body, Expr::Empty());
  // Raw UTF-8 in literals and classes.
  EXPECT_EQ(ParseOrDie("root ::= [é-ü]").rules[0].body.ranges,
            (std::vector<CodePointRange>{{0xE9, 0xFC}}));
}

TEST(GbnfTest, ErrorsNameLineAndColumn) {
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"root ::= \"abc", "line 1, column 10: unterminated string literal"},
      {"root ::= a\nb ::= \"x\" )", "line 2, column 11: unbalanced ')'"},
      {"root ::= x", "line 1, column 10: undefined rule 'x'"},
      {"a ::= \"x\"", "no 'root' rule"},
      {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
      {"root ::= [a-", "line 1, column 10: unterminated character class"},
      {"root ::= [z-a]", "line 1, column 11: character range with end before start"},
      {"root ::= \"a\"{3,2}", "line 1, column 13: repetition {3,2} has max < min"},
      {"root ::= \"\\q\"", "unknown escape '\\q'"},
      {"root ::= \"\\u12\"", "needs 4 hex digits"},
      {"root ::= (\"a\"", "line 1, column 10: unclosed '('"},
      {"root ::= \"a\" @", "line 1, column 14: unexpected character '@'"},
      {"root = \"a\"", "expected '::='"},
      {"root ::= \"\\U00110000\"", "above U+10FFFF"},
      {"root ::= \"a\"{x}", "expected a repetition count"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<Grammar> g = ParseGbnf(c.text);
    ASSERT_FALSE(g.ok()) << c.text;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(c.error)) << c.text;
  }
}

TEST(GbnfTest, DeepNestingIsRefusedNotACrash) {
  const auto nested = [](int depth) {
    return "root ::= " + std::string(depth, '(') + "\"a\"" + std::string(depth, ')');
  };
  EXPECT_TRUE(ParseGbnf(nested(200)).ok());
  absl::StatusOr<Grammar> deep = ParseGbnf(nested(100000));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(std::string(deep.status().message()), HasSubstr("nested too deeply"));
  absl::StatusOr<Grammar> stacked = ParseGbnf("root ::= \"a\"" + std::string(100000, '*'));
  ASSERT_FALSE(stacked.ok());
  EXPECT_THAT(std::string(stacked.status().message()), HasSubstr("too many repetition operators"));
}

TEST(GbnfTest, PrintsReadableText) {
  Grammar g;
  g.rules.push_back({"root", Seq({Lit("{\"a\":"), Rep(Expr::Ref("ws"), 0, 1),
                                  Alt({Lit("x"), Seq({Range('0', '9'), Lit("y")})}),
                                  Rep(Seq({Lit(","), Range('a', 'b')}), 2, kUnbounded)})});
  g.rules.push_back(
      {"ws", Alt({Expr::Empty(), Rep(Expr::CharClass({{' ', ' '}, {'\n', '\n'}}), 1, 3)})});
  EXPECT_EQ(PrintGbnf(g),
            "root ::= \"{\\\"a\\\":\" ws? (\"x\" | [0-9] \"y\") (\",\" [a-b]){2,}\n"
            "ws ::= \"\" | [ \\n]{1,3}\n");
}

// Every code point a class or literal can hold survives printing and parsing.
TEST(GbnfTest, RoundTripsEveryAwkwardCharacter) {
  std::vector<CodePointRange> ranges;
  std::string literal;
  for (uint32_t cp :
       {0u,    1u,    9u,    10u,   13u,   0x1Fu, 0x20u,   0x22u,   0x2Du,    0x5Bu,
        0x5Cu, 0x5Du, 0x5Eu, 0x7Fu, 0x80u, 0xFFu, 0x2028u, 0xFFFDu, 0x10000u, 0x10FFFFu}) {
    ranges.push_back({cp, cp});
    AppendUtf8(cp, literal);
  }
  ranges.push_back({0xD800, 0xDFFF});
  ranges.push_back({0, kMaxCodePoint});
  Grammar g;
  g.rules.push_back(
      {"root", Seq({Lit(literal), Expr::CharClass(ranges), Expr::CharClass(ranges, true),
                    Expr::CharClass({}, true), Expr::CharClass({})})});
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(g));
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << PrintGbnf(g);
  EXPECT_EQ(*back, g) << PrintGbnf(g);
}

// Random grammars in normal form (built with expr_util.h's builders, as the front ends build
// theirs) come back unchanged.
class RandomGrammar {
 public:
  explicit RandomGrammar(uint64_t seed) : rng_(seed) {}

  Grammar Make() {
    Grammar g;
    const int n = Int(1, 4);
    for (int i = 0; i < n; ++i) g.rules.push_back({i == 0 ? "root" : "r-" + std::to_string(i), {}});
    for (Rule& rule : g.rules) rule.body = Make(3, n);
    return g;
  }

 private:
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  uint32_t CodePoint() {
    switch (Int(0, 3)) {
      case 0:
        return Int(0, 0x7F);
      case 1:
        return Int(0x80, 0x7FF);
      case 2: {
        const uint32_t cp = Int(0x800, 0xFFFF);
        return cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp;
      }
      default:
        return Int(0x10000, kMaxCodePoint);
    }
  }
  Expr Make(int depth, int rules) {
    switch (depth == 0 ? Int(0, 3) : Int(0, 7)) {
      case 0: {
        std::string text;
        for (int i = Int(1, 4); i > 0; --i) AppendUtf8(CodePoint(), text);
        return Lit(text);
      }
      case 1: {
        std::vector<CodePointRange> ranges;
        for (int i = Int(0, 3); i > 0; --i) {
          const uint32_t a = CodePoint();
          const uint32_t b = CodePoint();
          ranges.push_back({std::min(a, b), std::max(a, b)});
        }
        return Expr::CharClass(ranges, Int(0, 1) == 1);
      }
      case 2: {
        const int i = Int(0, rules - 1);
        return Expr::Ref(i == 0 ? "root" : "r-" + std::to_string(i));
      }
      case 3:
        return Expr::Empty();
      case 4:
      case 5: {
        std::vector<Expr> items;
        for (int i = Int(2, 4); i > 0; --i) items.push_back(Make(depth - 1, rules));
        return Int(0, 1) == 0 ? Seq(std::move(items)) : Alt(std::move(items));
      }
      default: {
        const int lo = Int(0, 3);
        const int hi = Int(0, 2) == 0 ? kUnbounded : lo + Int(0, 3);
        return Rep(Make(depth - 1, rules), lo, hi);
      }
    }
  }
  std::mt19937_64 rng_;
};

TEST(GbnfTest, RandomGrammarsRoundTrip) {
  for (uint64_t seed = 0; seed < 500; ++seed) {
    const Grammar g = RandomGrammar(seed).Make();
    const std::string text = PrintGbnf(g);
    absl::StatusOr<Grammar> back = ParseGbnf(text);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
    ASSERT_EQ(*back, g) << "seed " << seed << ":\n" << text << "---\n" << PrintGbnf(*back);
    EXPECT_EQ(PrintGbnf(*back), text);
  }
}

TEST(GbnfTest, AnotherStartRuleGetsARootAlias) {
  Grammar g;
  g.root = "start";
  g.rules.push_back({"start", Lit("x")});
  EXPECT_EQ(PrintGbnf(g), "root ::= start\nstart ::= \"x\"\n");
}

}  // namespace
}  // namespace expertmesh::grammar
