#include "model/grammar/regex_grammar.h"

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/grammar/gbnf.h"
#include "tests/model/grammar/recognizer.h"
#include "tests/model/grammar/sampler.h"

namespace expertmesh::grammar {
namespace {

using ::testing::HasSubstr;

struct LanguageCase {
  std::string pattern;
  std::vector<std::string> accepted;
  std::vector<std::string> rejected;
};

class RegexLanguageTest : public ::testing::TestWithParam<LanguageCase> {};

TEST_P(RegexLanguageTest, MatchesExactlyTheWholeString) {
  const LanguageCase& c = GetParam();
  absl::StatusOr<Grammar> g = RegexToGrammar(c.pattern);
  ASSERT_TRUE(g.ok()) << g.status();
  for (const std::string& s : c.accepted) {
    EXPECT_TRUE(testing::Recognize(*g, s)) << "/" << c.pattern << "/ should accept '" << s << "'\n"
                                           << PrintGbnf(*g);
  }
  for (const std::string& s : c.rejected) {
    EXPECT_FALSE(testing::Recognize(*g, s)) << "/" << c.pattern << "/ should reject '" << s << "'\n"
                                            << PrintGbnf(*g);
  }
  absl::StatusOr<Grammar> back = ParseGbnf(PrintGbnf(*g));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *g);
}

INSTANTIATE_TEST_SUITE_P(
    Patterns, RegexLanguageTest,
    ::testing::Values(
        LanguageCase{"abc", {"abc"}, {"ab", "abcd", "xabc", ""}},
        LanguageCase{"^abc$", {"abc"}, {"abcc"}},
        LanguageCase{"a|bc|", {"a", "bc", ""}, {"abc", "b"}},
        LanguageCase{"\\d{3}-\\d{2,}", {"123-45", "000-123456"}, {"12-45", "123-4", "abc-12"}},
        LanguageCase{"[A-Z][a-z]*", {"A", "Hello"}, {"hello", "HeLLo", ""}},
        LanguageCase{"[^0-9\\s]+", {"abc", "é!"}, {"a1", "a b", ""}},
        LanguageCase{"\\s\\S", {" a", "\u00a0b", "\u3000c", "\nd"}, {"a ", "\u00a0\u00a0", "  "}},
        LanguageCase{"\\w+@\\w+\\.com", {"a_1@b.com"}, {"a@b.org", "a-b@c.com"}},
        LanguageCase{"(?:ab)+c?", {"ab", "ababc"}, {"abа", "a", "abcc"}},
        LanguageCase{"(?P<year>\\d{4})-(?<m>\\d\\d)", {"2024-01"}, {"2024-1"}},
        LanguageCase{
            "a{2}b{1,3}?c{0,}d*?e+?f??", {"aabcdef", "aabbbee", "aabe"}, {"abe", "aabbbbe"}},
        LanguageCase{"x.y", {"xay", "xéy", "x\"y"}, {"x\ny", "x\ry", "x\u2028y", "xy"}},
        LanguageCase{"\\.\\*\\\\\\(\\)\\[\\]\\{\\}\\|\\?\\+\\^\\$", {".*\\()[]{}|?+^$"}, {"a"}},
        LanguageCase{"\\x41\\u00e9\\u{1F600}\\t", {"Aé😀\t"}, {"Ae😀\t"}},
        LanguageCase{"[\\d\\-a-c]+", {"1-a", "cab9"}, {"d", "1_"}},
        LanguageCase{"[\\D]", {"a", "-"}, {"5"}},
        LanguageCase{"a{,3}", {"a{,3}"}, {"aaa"}},  // not a quantifier: literal braces (Python)
        LanguageCase{"(a|b)*c", {"c", "abbac"}, {"abba"}}, LanguageCase{"[]a]", {"]", "a"}, {"b"}},
        LanguageCase{"(true|false)", {"true", "false"}, {"truefalse"}},
        LanguageCase{"\\p{L}+ \\p{Nd}", {"Zoë 7", "中文 ٣", "Ωmega 0"}, {"a1 7", "abc x", " 7"}},
        LanguageCase{"\\p{Lu}\\p{Ll}*", {"Émile", "A"}, {"émile", "AB"}},
        LanguageCase{"[\\pL\\d_]+\\P{L}", {"ab_9!", "Ω1 "}, {"ab_9c", "!"}}));

// std::regex (ECMAScript) as an independent oracle, on ASCII patterns it understands: every random
// sentence of the grammar matches the pattern as a whole.
TEST(RegexGrammarTest, SentencesMatchStdRegex) {
  for (const char* pattern :
       {"\\d{3}-\\d{2,}", "[A-Z][a-z]*", "(?:ab)+c?", "a{2}b{1,3}?c{0,}d*?e+?f??", "(a|b)*c",
        "[\\w.%+-]+@[a-z0-9-]+(\\.[a-z]{2,4})+", "^#(?:[0-9a-fA-F]{3}){1,2}$", "x.y",
        "\\s\\S\\W\\D", "[^a-y]{2}|z+", "(true|false|null|-?(0|[1-9][0-9]*)(\\.[0-9]+)?)"}) {
    absl::StatusOr<Grammar> g = RegexToGrammar(pattern);
    ASSERT_TRUE(g.ok()) << g.status();
    const std::regex oracle(pattern, std::regex::ECMAScript);
    testing::GrammarSampler sampler(*g, /*seed=*/11);
    for (int i = 0; i < 200; ++i) {
      const std::string s = sampler.Sample();
      // std::regex works on bytes: only ASCII sentences are comparable.
      if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) >= 0x80; })) {
        continue;
      }
      ASSERT_TRUE(std::regex_match(s, oracle)) << "/" << pattern << "/ sentence '" << s << "'";
    }
  }
}

TEST(RegexGrammarTest, RefusesWhatHasNoGrammar) {
  const struct {
    const char* pattern;
    const char* error;
  } cases[] = {
      {"(a)\\1", "backreference"},
      {"(?P<x>a)(?P=x)", "backreference"},
      {"(?<x>a)\\k<x>", "backreference"},
      {"(?=a)a", "lookahead"},
      {"(?!a)b", "lookahead"},
      {"(?<=a)b", "lookbehind"},
      {"(?<!a)b", "lookbehind"},
      {"\\bword\\b", "word boundary"},
      {"a*+", "possessive"},
      {"a++b", "possessive"},
      {"(?i)abc", "inline flags"},
      {"(?>a)", "atomic"},
      {"a^b", "anchor '^'"},
      {"a$b", "anchor '$'"},
      {"(a", "unclosed '('"},
      {"a)", "unbalanced ')'"},
      {"[a-", "unterminated character class"},
      {"*a", "nothing to repeat"},
      {"a{3,1}", "n < m"},
      {"[z-a]", "out of order"},
      {"\\q", "unknown escape"},
      {"a{2000000}", "quantifier count above 1000000"},
      {"\\p{Greek}", "only general categories"},
      {"a**", "multiple repeat"},
      {"a{2}{3}", "multiple repeat"},
      {"a+?+", "multiple repeat"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<Grammar> g = RegexToGrammar(c.pattern);
    ASSERT_FALSE(g.ok()) << c.pattern;
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(g.status().message()), HasSubstr(c.error)) << c.pattern;
  }
}

TEST(RegexGrammarTest, DeepNestingIsRefusedNotACrash) {
  EXPECT_TRUE(RegexToGrammar(std::string(200, '(') + "a" + std::string(200, ')')).ok());
  absl::StatusOr<Grammar> deep =
      RegexToGrammar(std::string(100000, '(') + "a" + std::string(100000, ')'));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(std::string(deep.status().message()), HasSubstr("nested too deeply"));
}

TEST(RegexGrammarTest, ReportsAnchorsPerTopLevelBranch) {
  absl::StatusOr<std::vector<RegexBranch>> branches = ParseRegex("^ab|c$|(d|e)|^f$");
  ASSERT_TRUE(branches.ok()) << branches.status();
  ASSERT_EQ(branches->size(), 4u);
  EXPECT_TRUE((*branches)[0].anchored_start);
  EXPECT_FALSE((*branches)[0].anchored_end);
  EXPECT_FALSE((*branches)[1].anchored_start);
  EXPECT_TRUE((*branches)[1].anchored_end);
  EXPECT_FALSE((*branches)[2].anchored_start || (*branches)[2].anchored_end);
  EXPECT_TRUE((*branches)[3].anchored_start && (*branches)[3].anchored_end);
}

}  // namespace
}  // namespace expertmesh::grammar
