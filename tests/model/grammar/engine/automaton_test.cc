#include "model/grammar/engine/automaton.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/engine/utf8_ranges.h"
#include "model/grammar/engine/validate.h"
#include "tests/model/grammar/engine/test_grammars.h"

namespace expertmesh::grammar {
namespace {

using ::testing::HasSubstr;

Grammar Rules(std::vector<std::pair<std::string, Expr>> rules) {
  Grammar g;
  for (auto& [name, body] : rules) g.rules.push_back({name, std::move(body)});
  return g;
}

void ExpectInvalid(const Grammar& g, const std::string& substring) {
  const absl::Status s = ValidateGrammar(g);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(substring));
}

TEST(ValidateGrammarTest, AcceptsTheTestGrammars) {
  for (const testing::NamedGrammar& g : testing::AllTestGrammars()) {
    EXPECT_TRUE(ValidateGrammar(g.grammar).ok()) << g.name << ": " << ValidateGrammar(g.grammar);
  }
}

TEST(ValidateGrammarTest, RefusesUndefinedAndDuplicateRulesAndAMissingRoot) {
  ExpectInvalid(Rules({{"root", Expr::Ref("nowhere")}}), "undefined rule 'nowhere'");
  ExpectInvalid(Rules({{"root", Expr::Literal("a")}, {"root", Expr::Literal("b")}}),
                "defined twice");
  ExpectInvalid(Rules({{"start", Expr::Literal("a")}}), "root rule 'root' is not defined");
}

TEST(ValidateGrammarTest, RefusesLeftRecursion) {
  // Direct.
  ExpectInvalid(
      Rules({{"root", Expr::Choice({Expr::Sequence({Expr::Ref("root"), Expr::Literal("x")}),
                                    Expr::Literal("y")})}}),
      "left-recursive: root -> root");
  // Indirect.
  ExpectInvalid(Rules({{"root", Expr::Ref("a")},
                       {"a", Expr::Choice({Expr::Sequence({Expr::Ref("b"), Expr::Literal("x")}),
                                           Expr::Literal("y")})},
                       {"b", Expr::Sequence({Expr::Ref("a"), Expr::Literal("z")})}}),
                "left-recursive");
  // Through a rule that may match nothing.
  ExpectInvalid(Rules({{"root", Expr::Choice({Expr::Sequence({Expr::Ref("opt"), Expr::Ref("root"),
                                                              Expr::Literal("x")}),
                                              Expr::Literal("y")})},
                       {"opt", Expr::Repeat(Expr::Literal("o"), 0, 1)}}),
                "left-recursive: root -> root");
  // Right recursion is fine.
  EXPECT_TRUE(
      ValidateGrammar(
          Rules({{"root", Expr::Choice({Expr::Sequence({Expr::Literal("x"), Expr::Ref("root")}),
                                        Expr::Empty()})}}))
          .ok());
}

TEST(ValidateGrammarTest, RefusesAGrammarThatCanNeverComplete) {
  // Recursion without a base case.
  ExpectInvalid(
      Rules(
          {{"root", Expr::Sequence({Expr::Literal("("), Expr::Ref("root"), Expr::Literal(")")})}}),
      "can never complete");
  // An empty class (every code point excluded).
  ExpectInvalid(Rules({{"root", Expr::CharClass({{0, kMaxCodePoint}}, /*negated=*/true)}}),
                "can never complete");
  ExpectInvalid(Rules({{"root", Expr::Choice({})}}), "can never complete");
  // A dead alternative next to a live one is fine (it is pruned).
  EXPECT_TRUE(
      ValidateGrammar(Rules({{"root", Expr::Choice({Expr::Ref("dead"), Expr::Literal("ok")})},
                             {"dead", Expr::Sequence({Expr::Literal("d"), Expr::Ref("dead")})}}))
          .ok());
}

TEST(ValidateGrammarTest, RefusesMalformedClassesRepeatsAndHugeAutomata) {
  ExpectInvalid(Rules({{"root", Expr::CharClass({{'z', 'a'}})}}), "invalid character range");
  ExpectInvalid(Rules({{"root", Expr::Repeat(Expr::Literal("a"), 3, 2)}}), "invalid repetition");
  ExpectInvalid(Rules({{"root", Expr::Repeat(Expr::Literal("abcdefgh"), 0, 1 << 20)}}), "exceeds");
}

TEST(ValidateGrammarTest, RefusesExpressionsNestedTooDeeply) {
  Expr e = Expr::Literal("x");
  for (int i = 0; i < 1500; ++i) {
    Expr outer;
    outer.kind = Expr::Kind::kSequence;
    outer.items.push_back(Expr::Literal("("));
    outer.items.push_back(std::move(e));
    e = std::move(outer);
  }
  ExpectInvalid(Rules({{"root", std::move(e)}}), "nests expressions deeper than");
  Expr ok = Expr::Literal("x");
  for (int i = 0; i < 500; ++i) {
    Expr outer;
    outer.kind = Expr::Kind::kChoice;
    outer.items.push_back(Expr::Literal("a"));
    outer.items.push_back(std::move(ok));
    ok = std::move(outer);
  }
  EXPECT_TRUE(ValidateGrammar(Rules({{"root", std::move(ok)}})).ok());
}

TEST(AutomatonTest, TailCallsAreMarkedAndShortRulesInlined) {
  absl::StatusOr<engine_internal::Automaton> a =
      engine_internal::BuildAutomaton(testing::TextThroughGrammar());
  ASSERT_TRUE(a.ok()) << a.status();
  int tail = 0;
  int other = 0;
  for (const auto& n : a->nodes) {
    for (const auto& c : n.calls) (c.tail ? tail : other) += 1;
  }
  EXPECT_GT(tail, 0);
  EXPECT_EQ(other, 1);  // root's call of t0 returns into root
  // JSON's ws (at most 21 bytes) is inlined; string (unbounded) stays a rule.
  absl::StatusOr<engine_internal::Automaton> json =
      engine_internal::BuildAutomaton(testing::JsonGrammar());
  ASSERT_TRUE(json.ok()) << json.status();
  std::vector<bool> called(json->rule_names.size(), false);
  for (const auto& n : json->nodes) {
    for (const auto& c : n.calls) called[c.rule] = true;
  }
  for (size_t r = 0; r < called.size(); ++r) {
    if (json->rule_names[r] == "ws") {
      EXPECT_FALSE(called[r]);
    }
    if (json->rule_names[r] == "string") {
      EXPECT_TRUE(called[r]);
    }
  }
}

TEST(AutomatonTest, MinBytesAndFollowSets) {
  absl::StatusOr<engine_internal::Automaton> a =
      engine_internal::BuildAutomaton(testing::JsonGrammar());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->nodes[a->root_start()].min_bytes, 2);  // "{}"
  for (size_t r = 0; r < a->rule_names.size(); ++r) {
    if (a->rule_names[r] != "string") continue;
    EXPECT_EQ(a->rule_min_bytes[r], 2);
    // After a string: ':' ',' '}' ']' (whitespace is inside the rule).
    EXPECT_TRUE(a->follow[r].Has(':'));
    EXPECT_TRUE(a->follow[r].Has('}'));
    EXPECT_TRUE(a->follow[r].Has(']'));
    EXPECT_FALSE(a->follow[r].Has('a'));
    EXPECT_FALSE(a->follow_end[r]);
  }
}

// Every code point is matched by the byte sequences exactly when it is in the class.
TEST(Utf8RangesTest, SequencesMatchExactlyTheClassOverAllCodePoints) {
  using engine_internal::Utf8Sequence;
  const std::vector<std::pair<std::vector<CodePointRange>, bool>> classes = {
      {{{'a', 'z'}}, false},
      {{{'"', '"'}, {'\\', '\\'}, {0, 0x1F}}, true},
      {{{0x80, 0x10FFFF}}, false},
      {{{0x7F, 0x800}, {0xD000, 0xE100}, {0xFFFF, 0x10000}}, false},
      {{{0x4E00, 0x9FA5}, {0x1F600, 0x1F64F}}, true},
      {{}, true},
  };
  for (const auto& [ranges, negated] : classes) {
    const std::vector<Utf8Sequence> seqs =
        engine_internal::Utf8Sequences(engine_internal::NormalizeClass(ranges, negated));
    for (uint32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      bool in = false;
      for (const CodePointRange& r : ranges) in |= r.lo <= cp && cp <= r.hi;
      in ^= negated;
      uint8_t b[4];
      int n;
      if (cp < 0x80) {
        b[0] = cp, n = 1;
      } else if (cp < 0x800) {
        b[0] = 0xC0 | (cp >> 6), b[1] = 0x80 | (cp & 0x3F), n = 2;
      } else if (cp < 0x10000) {
        b[0] = 0xE0 | (cp >> 12), b[1] = 0x80 | ((cp >> 6) & 0x3F), b[2] = 0x80 | (cp & 0x3F);
        n = 3;
      } else {
        b[0] = 0xF0 | (cp >> 18), b[1] = 0x80 | ((cp >> 12) & 0x3F);
        b[2] = 0x80 | ((cp >> 6) & 0x3F), b[3] = 0x80 | (cp & 0x3F), n = 4;
      }
      int matches = 0;
      for (const Utf8Sequence& s : seqs) {
        if (static_cast<int>(s.size()) != n) continue;
        bool ok = true;
        for (int i = 0; i < n; ++i) ok &= s[i].lo <= b[i] && b[i] <= s[i].hi;
        matches += ok;
      }
      ASSERT_EQ(matches, in ? 1 : 0) << "code point " << cp;
    }
  }
}

}  // namespace
}  // namespace expertmesh::grammar
